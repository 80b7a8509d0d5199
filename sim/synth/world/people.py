"""The people of the synthetic world: customers (with the planted identity mess) and agents, and
the organizations customers belong to. Vendor-neutral: writers give them ids and shapes.

Small customer indexes carry fixed roles (`PLANTED`), so even the smallest world holds every kind
of people mess; larger indexes draw theirs at random. Everything about customer `i` is a pure
function of (seed, i) and the world's parameters.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from sim.synth import content as C
from sim.synth.world.common import DAY_MS, derive_seed

# index -> role: what the small indexes are guaranteed to be.
PLANTED: dict[int, str] = {
    0: "showcase",          # every channel, big attachments, a long body, odd subjects
    1: "no_email_sender",   # no email on the profile; their mail came from an address anyway
    2: "no_email_returning",  # no email at all; comes back after more than a week of silence
    3: "invalid_email",
    4: "mixed_case_email",  # the original of a duplicate record
    5: "duplicate_lower_case",  # the same person as 4, typed again in lower case
    6: "departed_soft",     # their account was deleted but is still listed
    7: "departed_permanent",  # their account is gone, their conversations are not
    8: "non_latin_name",    # an Arabic name (index 9: a Hebrew one, when the world has it)
}
MIN_PLANTED = len(PLANTED)
FIXED_NAMES = {8: 5, 9: 7}  # index -> content.UNICODE_NAMES entry: an Arabic and a Hebrew name
BUSY_INDEX = 10  # the customer with a thousand-message history, when the world plants one
BUSY_MIN_CUSTOMERS = 20
DORMANCY_MS = 7 * DAY_MS
ORGANIZATION_NAMES = ("Acme Outdoor Club", "Blue Ridge Scouts", "Cascade Running Co", "Delta Ski School",
                      "Evergreen Trails", "Foothill Climbing Gym", "Granite Peak Lodge", "Harbor Kayak Rentals")
REGION_LOCALES = {"US": "en-US", "GB": "en-GB", "AE": "ar-AE", "IL": "he-IL"}


@dataclass(frozen=True)
class Phone:
    original: str  # as typed
    e164: str
    region: str
    type: str  # MOBILE | HOME | OFFICE | "" (other)


@dataclass(frozen=True)
class Agent:
    """A support agent; `mailbox` is the local part of their work address."""

    index: int
    name: str
    mailbox: str
    active_from_ms: int
    active_until_ms: int | None  # None: still active

    def active_at(self, ms: int) -> bool:
        return self.active_from_ms <= ms and (self.active_until_ms is None or ms < self.active_until_ms)


@dataclass(frozen=True)
class Organization:
    index: int
    name: str
    domain: str
    created_ms: int


@dataclass(frozen=True)
class Customer:
    """One person who contacts support, as they typed themselves in."""

    index: int
    name: str
    unicode_name: bool
    emails: tuple[str, ...]  # originals, as typed; the first is the primary
    email_mess: str  # "" | none | invalid | mixed_case | duplicate_lower_case
    sender_address: str | None  # where mail came from when the profile has no email
    phones: tuple[Phone, ...]
    region: str
    locale: str
    organization: int | None
    created_ms: int
    address: str | None
    external_id: str | None
    attributes: dict[str, Any] = field(hash=False)
    mail_style: str = "plain"  # content.EMAIL_STYLES: how their mail client renders
    scenario: str = "normal"  # normal | showcase | busy | returning
    duplicate_of: int | None = None  # the same person as that customer (a second record)
    departed: str | None = None  # None | soft | permanent: the account was deleted
    late: bool = False  # first appears after the history ends
    swap_lines: bool = False  # a writer may write two of their records out of order
    long_body: bool = False  # one of their messages is a pasted log of 40,000+ characters

    @property
    def valid_email(self) -> str | None:
        return next((e for e in self.emails if C.is_valid_email(e)), None)

    @property
    def mail_address(self) -> str | None:
        """The address their mail comes from: a valid profile email, else the sender address."""
        return self.valid_email or self.sender_address

    def can_use(self, channel: str) -> bool:
        if channel == "email":
            return self.mail_address is not None
        if channel in ("sms", "phone", "voicemail", "whatsapp"):
            return bool(self.phones)
        return True


def build_agents(seed: int, count: int, start_ms: int, end_ms: int) -> list[Agent]:
    """`count` agents, including (when there are that many) two who left during the history and
    one hired part-way through."""
    rng = random.Random(derive_seed(seed, "agents"))
    span = end_ms - start_ms
    agents: list[Agent] = []
    for i in range(count):
        first = C.AGENT_FIRST[i % len(C.AGENT_FIRST)]
        last = C.AGENT_LAST[(i * 7 + i // len(C.AGENT_FIRST)) % len(C.AGENT_LAST)]
        suffix = "" if i < len(C.AGENT_FIRST) else str(i // len(C.AGENT_FIRST) + 1)
        active_from = start_ms - rng.randint(30, 900) * DAY_MS
        until: int | None = None
        if i == 1:
            until = start_ms + int(span * 0.4)
        elif i == 3:
            until = start_ms + int(span * 0.7)
        elif i >= 10 and i % 10 == 7:
            until = start_ms + rng.randint(int(span * 0.1), int(span * 0.9))
        if i == 2:
            active_from = start_ms + int(span * 0.3)
        agents.append(Agent(i, f"{first} {last}{suffix}", f"{first.lower()}.{last.lower()}{suffix}", active_from, until))
    return agents


def build_organizations(seed: int, customers: int, start_ms: int) -> list[Organization]:
    rng = random.Random(derive_seed(seed, "organizations"))
    return [Organization(i, name, name.lower().replace(" ", "") + ".example", start_ms - rng.randint(100, 1500) * DAY_MS)
            for i, name in enumerate(ORGANIZATION_NAMES[: max(2, min(len(ORGANIZATION_NAMES), customers // 15))])]


def duplicate_target(index: int, customers: int) -> int | None:
    """Which customer `index` is a second record of: the planted pair, and one in 37 beyond."""
    if PLANTED.get(index) == "duplicate_lower_case":
        return index - 1
    if index > BUSY_INDEX and index % 37 == 11 and index + 1 < customers:
        return index + 1
    return None


def _phone(rng: random.Random, region: str) -> Phone:
    if region == "AE":
        digits = f"5{rng.randint(10000000, 99999999)}"
        return Phone(f"0{digits[:2]} {digits[2:5]} {digits[5:]}", f"+971{digits}", "AE", "MOBILE")
    if region == "IL":
        digits = f"5{rng.randint(10000000, 99999999)}"
        return Phone(f"0{digits[:2]}-{digits[2:]}", f"+972{digits}", "IL", "MOBILE")
    if region == "GB":
        digits = f"7{rng.randint(100000000, 999999999)}"
        return Phone(f"0{digits[:4]} {digits[4:]}", f"+44{digits}", "GB", rng.choice(("MOBILE", "")))
    area, rest = rng.randint(201, 989), rng.randint(2000000, 9999999)
    s = f"{area}{rest}"
    original = rng.choice((f"({area}) {s[3:6]}-{s[6:]}", f"{area}.{s[3:6]}.{s[6:]}", f"+1 {area} {s[3:6]} {s[6:]}", s))
    return Phone(original, f"+1{s}", "US", rng.choice(("MOBILE", "MOBILE", "HOME", "OFFICE", "")))


def _mixed_case(local: str, domain: str) -> str:
    lp = local.replace(" ", "")
    parts = lp.split(".") if "." in lp else [lp]
    return ".".join(p[:1].upper() + p[1:] for p in parts) + f"@{domain[:1].upper()}{domain[1:]}"


def make_customer(seed: int, index: int, customers: int, start_ms: int, organizations: int, *,
                  busy: bool = False, created_ms: int | None = None, late: bool = False) -> Customer:
    """Customer `index` (a pure function of its arguments); `late` ones arrive after the history."""
    rng = random.Random(derive_seed(seed, "customer", index))
    role = PLANTED.get(index, "") if not late else ""
    scenario = "normal"
    if role == "showcase":
        scenario = "showcase"
    elif busy and index == BUSY_INDEX and customers >= BUSY_MIN_CUSTOMERS:
        scenario = "busy"
    elif role == "no_email_returning" or (index > BUSY_INDEX and rng.random() < 0.01):
        scenario = "returning"

    if index in FIXED_NAMES and not late:
        name, local = C.UNICODE_NAMES[FIXED_NAMES[index]]
        unicode_name = True
    elif rng.random() < 0.08:
        name, local = C.UNICODE_NAMES[rng.randrange(len(C.UNICODE_NAMES))]
        unicode_name = True
    else:
        first, last = rng.choice(C.FIRST_NAMES), rng.choice(C.LAST_NAMES)
        name, local = f"{first} {last}", f"{first}.{last}"
        unicode_name = False
        if rng.random() < 0.03:
            name = name.upper() if rng.random() < 0.5 else f"  {name.lower()} "  # messy casing/space

    forced = {"no_email_sender": "none", "no_email_returning": "none", "invalid_email": "invalid",
              "mixed_case_email": "mixed_case", "duplicate_lower_case": "duplicate_lower_case"}
    if role in forced:
        email_mess = forced[role]
    elif scenario in ("showcase", "busy") or role or late:
        email_mess = ""
    else:
        r = rng.random()
        email_mess = "none" if r < 0.07 else "invalid" if r < 0.10 else "mixed_case" if r < 0.25 else ""
    domain = rng.choice(C.EMAIL_DOMAINS)
    emails: tuple[str, ...]
    if email_mess == "none":
        emails = ()
    elif email_mess == "invalid":
        emails = (rng.choice(C.INVALID_EMAILS),)
    elif email_mess == "mixed_case":
        emails = (_mixed_case(local, domain),)
    elif email_mess == "duplicate_lower_case":
        original = make_customer(seed, index - 1, customers, start_ms, organizations)
        emails = (original.emails[0].lower(),)
    else:
        emails = (f"{local.lower().replace(' ', '')}{index}@{domain}",)
    if emails and email_mess != "duplicate_lower_case" and rng.random() < 0.1:
        emails = (*emails, f"{local.lower()}.work{index}@{rng.choice(C.EMAIL_DOMAINS)}")
    sender = f"{local.lower()}.mail{index}@{rng.choice(C.EMAIL_DOMAINS)}" if role == "no_email_sender" else None

    region = "AE" if unicode_name and "\u0600" <= name[0] <= "\u06ff" else \
        "IL" if unicode_name and "\u0590" <= name[0] <= "\u05ff" else "GB" if rng.random() < 0.08 else "US"
    need_phone = email_mess in ("none", "invalid") or scenario in ("showcase", "busy")
    phones = (_phone(rng, region),) if need_phone or rng.random() < 0.75 else ()
    if phones and rng.random() < 0.1:
        phones = (*phones, _phone(rng, "US"))

    external = str(rng.randint(10000, 99999)) if rng.random() < 0.3 else None
    attrs: dict[str, Any] = {}
    if rng.random() < 0.8:
        attrs = {"loyaltyTier": rng.choice(("bronze", "silver", "gold", "platinum")),
                 "lifetimeValue": f"{rng.uniform(10, 5000):.2f}", "marketingOptIn": rng.random() < 0.5}
        if rng.random() < 0.3:
            attrs["notes"] = rng.choice(("prefers SMS", "wholesale account", "", "do not call ☎️"))
    organization = rng.randrange(organizations) if organizations and rng.random() < 0.25 else None
    departed = {"departed_soft": "soft", "departed_permanent": "permanent"}.get(role)
    return Customer(
        index=index, name=name, unicode_name=unicode_name, emails=emails, email_mess=email_mess,
        sender_address=sender, phones=phones, region=region, locale=REGION_LOCALES[region],
        organization=organization,
        created_ms=created_ms if created_ms is not None else start_ms - rng.randint(1, 700) * DAY_MS,
        address=C.street_address(rng) if rng.random() < 0.6 else None, external_id=external, attributes=attrs,
        mail_style=rng.choices(C.EMAIL_STYLES, weights=(30, 35, 20, 15))[0], scenario=scenario,
        duplicate_of=None if late else duplicate_target(index, customers), departed=departed, late=late,
        swap_lines=index == 0 or rng.random() < 0.004, long_body=index == 0 or index % 5000 == 4999,
    )
