"""Deterministic messy Zendesk dataset: the full JSON export as Zendesk hands it over, the state
its API serves (including a later delta), and `manifest.json`, the ground truth. Folder format:
`sim.synth.zendesk_dataset`; vendor facts: shared/vendor-apis/zendesk-freshdesk-gmail-exports.md §1.

The world: end users (requesters) and agents, organizations, and tickets created over the `days`
before `end` (UTC). Each ticket is a timeline of events (comments, a status change, a deletion)
replayed into ticket versions. The full export is taken at `exportedAt` (an hour after `end`);
everything that happens between then and `deltaAt` (a day after `end`) is the delta: new tickets,
new comments, closed and deleted tickets and a new user, visible only through the API once the
emulator's clock has moved.

Planted mess (each in the manifest's `mess` with an exact count and where it is): requesters
without email (one with a sender address on the email it came from, one chat without any),
invalid emails, two users sharing an email in different case, deleted users (soft: inactive,
still listed; permanent: referenced by tickets but absent from export and API), private comments,
HTML bodies with links, a body of 40,000+ characters, subjects over 100 characters, non-Latin and
empty subjects, `{{dc.*}}` raw subjects, tickets without comments, chat transcripts, automatic
comments (metadata.flags 4), literal `&nbsp;` in plain_body, attachments (inline images among
them), malformed export lines, and the delta.

Determinism: every draw comes from a `random.Random` seeded from (seed, purpose, index); ids are
sequential or derived from times; gzip and ZIP headers carry fixed times. Memory: one ticket's
timeline at a time (plus a small plan tuple per ticket).
"""

from __future__ import annotations

import gzip
import hashlib
import random
import re
import shutil
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from html import escape, unescape
from pathlib import Path
from typing import IO, Any, Literal

from sim.synth import content as C
from sim.synth.dataset import write_json
from sim.synth.generator import MessLog, derive_seed, dumps
from sim.synth.zendesk_dataset import COMMENT_MODES, EXPORT_TYPES, ZendeskLayout

FORMAT_VERSION = 1
SUBDOMAIN = "northwind"
BASE_URL = f"https://{SUBDOMAIN}.zendesk.com"
COMPANY = "Northwind Outfitters"
COMPANY_DOMAIN = "northwind-outfitters.com"
SUPPORT_ADDRESS = f"support@{COMPANY_DOMAIN}"
HELP_CENTER = f"https://help.{COMPANY_DOMAIN}/hc/en-us/articles"

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
EXPORT_AFTER_END = HOUR  # the full export runs an hour after the history window ends
DELTA_AFTER_END = DAY
# No change this close to exportedAt or deltaAt: the incremental API hides the last minute.
QUIET = 5 * MINUTE
CLOSE_AFTER_SOLVED = 4 * DAY
LONG_BODY_CHARS = 40_000

ORG_ID_BASE = 360_000_100_000
AGENT_ID_BASE = 371_000_000_000
USER_ID_BASE = 372_000_000_000
TICKET_ID_BASE = 1000
ATTACHMENT_ID_BASE = 380_000_000_000
ORDER_FIELD_ID = 360_012_345_678
BRAND_ID = 360_000_222_111
FORM_ID = 360_000_333_444
GROUP_ID = 360_000_444_555

ExportComments = Literal["embedded", "absent", "both"]

# Requesters with a fixed role, one each, so even the smallest dataset holds every kind of mess.
ROLES = ("showcase", "no_email_sender", "no_email_chat", "invalid_email", "shared_email_a", "shared_email_b",
         "soft_deleted", "permanently_deleted", "non_latin")
MIN_CUSTOMERS = len(ROLES)

NON_LATIN_SUBJECTS = (
    "注文した商品がまだ届きません（注文番号 {n}）",
    "Заказ {n} не пришёл, помогите пожалуйста",
    "طلبي رقم {n} لم يصل بعد",
    "ההזמנה שלי {n} עדיין לא הגיעה",
    "주문 {n} 배송 문의드립니다",
    "订单 {n} 的退款什么时候到账？",
)
LONG_SUBJECT = ("Re: Re: Fwd: URGENT - order #{n} arrived damaged AND I was charged twice AND the replacement "
                "you promised last week never shipped, please escalate to a supervisor today")
TAGS = ("shipping", "returns", "billing", "damaged", "login", "promo", "vip", "exchange", "refund")
LINK_TARGETS = (
    ("return policy", f"{HELP_CENTER}/360001234567-Return-policy"),
    ("tracking page", "https://www.ups.com/track?loc=en_US&tracknum=1Z999AA10123456784"),
    ("size guide", f"{HELP_CENTER}/360007654321-Size-guide?utm_source=zendesk&utm_medium=email"),
    ("refund status", f"https://{COMPANY_DOMAIN}/account/orders?tab=refunds&lang=en"),
)
CHANNEL_WEIGHTS = (("email", 0.6), ("web", 0.27), ("chat", 0.08), ("api", 0.05))

MESS_KINDS = (
    "requesters_without_email", "invalid_emails", "shared_emails", "deleted_users", "non_latin_names",
    "private_comments", "html_bodies_with_links", "long_bodies", "long_subjects", "non_latin_subjects",
    "empty_subjects", "dynamic_content_subjects", "tickets_without_comments", "chat_transcripts",
    "automatic_comments", "literal_nbsp_in_plain_body", "attachments", "inline_images", "malformed_lines",
    "delta_new_tickets", "delta_updated_tickets", "delta_new_comments", "delta_deleted_tickets", "delta_new_users",
)


# =========================================================================== small utilities


def fmt_s(seconds: int) -> str:
    """Zendesk's timestamps: UTC, whole seconds, `Z`."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day_start(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp())


def api_url(kind: str, object_id: int) -> str:
    return f"{BASE_URL}/api/v2/{kind}/{object_id}.json"


_DROP_BLOCKS = re.compile(r"<(head|style|script)\b[^>]*>.*?</\1>", re.S | re.I)
_LINE_BREAKS = re.compile(r"<br\s*/?>|</(?:p|div|li|h\d|blockquote|tr)>", re.I)
_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"[ \t\xa0]+")


def html_to_text(html: str) -> str:
    """The visible text of an HTML body, one line per block, as Zendesk's plain_body shows it."""
    text = unescape(_TAGS.sub("", _LINE_BREAKS.sub("\n", _DROP_BLOCKS.sub("", html))))
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _zd_html(inner: str) -> str:
    """How Zendesk wraps a comment's HTML."""
    return f'<div class="zd-comment" dir="auto">{inner}</div>'


def _paragraphs(text: str) -> str:
    return "".join(f"<p>{escape(block).replace(chr(10), '<br>')}</p>" for block in text.split("\n\n"))


def _email_inner(html: str) -> str:
    """A customer's email HTML as Zendesk keeps it: document wrappers and head dropped, rest as is."""
    html = _DROP_BLOCKS.sub("", html)
    return re.sub(r"</?(?:html|body)\b[^>]*>", "", html, flags=re.I)


# =========================================================================== the world


@dataclass
class Person:
    """A Zendesk user: an end user (requester) or an agent."""

    index: int
    id: int
    name: str
    email: str | None
    role: str  # end-user | agent | admin
    created_s: int
    phone: str | None = None
    organization_id: int | None = None
    kind: str = "normal"  # a ROLES entry, "delta_new" or "normal"
    active: bool = True
    sender_address: str | None = None  # the address mail from this email-less requester came from
    mess: list[str] = field(default_factory=list)

    @property
    def in_api(self) -> bool:
        """Permanently deleted users are gone from export and API alike (assumed: the facts only
        say deleted users can be missing)."""
        return self.kind != "permanently_deleted"

    def api(self) -> dict[str, Any]:
        return {
            "url": api_url("users", self.id), "id": self.id, "name": self.name, "email": self.email,
            "created_at": fmt_s(self.created_s), "updated_at": fmt_s(self.created_s),
            "time_zone": "Eastern Time (US & Canada)", "phone": self.phone,
            "shared_phone_number": False if self.phone else None, "locale": "en-US",
            "organization_id": self.organization_id, "role": self.role, "verified": self.email is not None,
            "external_id": None, "tags": [], "active": self.active, "suspended": False, "user_fields": {},
        }


@dataclass
class World:
    seed: int
    start_s: int
    end_s: int
    exported_s: int
    delta_s: int
    agents: list[Person]
    customers: list[Person]  # the delta's new requester last
    organizations: list[dict[str, Any]]

    def customer(self, index: int) -> Person:
        return self.customers[index]


def _phone(rng: random.Random) -> str:
    return f"+1{rng.randint(201, 989)}{rng.randint(200, 999)}{rng.randint(1000, 9999)}"


def _build_agents(seed: int, customers: int, start_s: int) -> list[Person]:
    rng = random.Random(derive_seed(seed, "zd-agents"))
    count = 3 + customers // 25
    agents = []
    for i in range(count):
        first, last = C.AGENT_FIRST[i % len(C.AGENT_FIRST)], rng.choice(C.AGENT_LAST)
        agents.append(Person(
            index=i, id=AGENT_ID_BASE + i, name=f"{first} {last}", email=f"{first.lower()}.{last.lower()}@{COMPANY_DOMAIN}",
            role="admin" if i == 0 else "agent", created_s=start_s - rng.randint(200, 900) * DAY,
        ))
    return agents


def _build_organizations(seed: int, customers: int, start_s: int) -> list[dict[str, Any]]:
    rng = random.Random(derive_seed(seed, "zd-orgs"))
    names = ("Acme Outdoor Club", "Blue Ridge Scouts", "Cascade Running Co", "Delta Ski School", "Evergreen Trails",
             "Foothill Climbing Gym", "Granite Peak Lodge", "Harbor Kayak Rentals")
    orgs = []
    for i in range(max(2, min(len(names), customers // 15))):
        org_id = ORG_ID_BASE + i
        created = fmt_s(start_s - rng.randint(100, 1500) * DAY)
        orgs.append({
            "url": api_url("organizations", org_id), "id": org_id, "name": names[i],
            "shared_tickets": False, "shared_comments": False, "external_id": None,
            "created_at": created, "updated_at": created,
            "domain_names": [names[i].lower().replace(" ", "") + ".example"], "details": "", "notes": "",
            "group_id": None, "tags": [], "organization_fields": {},
        })
    return orgs


def _build_customer(seed: int, index: int, kind: str, created_s: int, orgs: list[dict[str, Any]]) -> Person:
    """One end user; `kind` is a ROLES entry (fixed mess), "delta_new" or "normal" (random mess)."""
    rng = random.Random(derive_seed(seed, "zd-user", index))
    unicode_name = kind == "non_latin" or (kind == "normal" and rng.random() < 0.08)
    if unicode_name:
        name, local = rng.choice(C.UNICODE_NAMES)
    else:
        first, last = rng.choice(C.FIRST_NAMES), rng.choice(C.LAST_NAMES)
        name, local = f"{first} {last}", f"{first.lower()}.{last.lower()}"
    email: str | None = f"{local}{index}@{rng.choice(C.EMAIL_DOMAINS)}"
    person = Person(index=index, id=USER_ID_BASE + index, name=name, email=email, role="end-user",
                    created_s=created_s, kind=kind)
    if unicode_name:
        person.mess.append("non_latin_names")
    if rng.random() < 0.3:
        person.phone = _phone(rng)
    if orgs and rng.random() < 0.25:
        person.organization_id = orgs[rng.randrange(len(orgs))]["id"]
    roll = rng.random()
    if kind in ("no_email_sender", "no_email_chat") or (kind == "normal" and roll < 0.04):
        person.email = None
        person.phone = person.phone or _phone(rng)
        person.mess.append("requesters_without_email")
        if kind == "no_email_sender":
            person.sender_address = f"{local}.mail{index}@{rng.choice(C.EMAIL_DOMAINS)}"
    elif kind == "invalid_email" or (kind == "normal" and roll < 0.07):
        person.email = rng.choice(C.INVALID_EMAILS)
        person.mess.append("invalid_emails")
    elif kind == "shared_email_a":
        person.email = f"{local.title()}@{C.EMAIL_DOMAINS[0]}"
    elif kind == "soft_deleted":
        person.active = False  # assumed: a soft-deleted user stays listed (export and API), inactive
    return person


def build_world(seed: int, customers: int, days: int, end: date) -> World:
    end_s = _day_start(end)
    start_s = end_s - days * DAY
    orgs = _build_organizations(seed, customers, start_s)
    people: list[Person] = []
    for index in range(customers):
        kind = ROLES[index] if index < len(ROLES) else "normal"
        rng = random.Random(derive_seed(seed, "zd-user-created", index))
        people.append(_build_customer(seed, index, kind, start_s - rng.randint(1, 700) * DAY, orgs))
    # the two users sharing one address, differently cased (Zendesk compares emails case-insensitively)
    shared_a = next(p for p in people if p.kind == "shared_email_a")
    next(p for p in people if p.kind == "shared_email_b").email = shared_a.email.lower()  # type: ignore[union-attr]
    exported_s, delta_s = end_s + EXPORT_AFTER_END, end_s + DELTA_AFTER_END
    newcomer_at = exported_s + QUIET + random.Random(derive_seed(seed, "zd-newcomer")).randint(1, 6) * HOUR
    people.append(_build_customer(seed, customers, "delta_new", newcomer_at, orgs))
    return World(seed, start_s, end_s, exported_s, delta_s, _build_agents(seed, customers, start_s), people, orgs)


# =========================================================================== ticket plans


@dataclass(frozen=True, order=True)
class TicketPlan:
    """What a ticket will be, before its id is known (ids follow creation time)."""

    created_s: int
    seq: int
    requester: int  # index into World.customers
    script: str  # "normal" or a scripted mess ticket


def plan_tickets(world: World, tickets_per_customer: float) -> list[TicketPlan]:
    rng = random.Random(derive_seed(world.seed, "zd-plan"))
    span = world.end_s - world.start_s - 2 * HOUR
    plans: list[TicketPlan] = []

    def add(requester: int, script: str, created_s: int | None = None) -> None:
        at = created_s if created_s is not None else world.start_s + rng.randrange(span)
        plans.append(TicketPlan(at, len(plans), requester, script))

    customers = len(world.customers) - 1  # the last is the delta's newcomer
    extra = max(0.0, tickets_per_customer - 1.0)
    for index in range(customers):
        count = 1 + int(extra) + (rng.random() < extra - int(extra))
        for _ in range(count):
            add(index, "normal")
    # scripted mess, on the role users (index = position in ROLES)
    add(0, "long_body", world.start_s + HOUR)
    add(0, "long_subject")
    add(0, "no_comments")
    add(0, "empty_subject")
    add(0, "dynamic_subject")
    add(ROLES.index("non_latin"), "non_latin_subject")
    add(ROLES.index("no_email_sender"), "email_from_sender")
    add(ROLES.index("no_email_chat"), "chat")
    # the delta: new tickets, one of them by a user created after the export
    delta_rng = random.Random(derive_seed(world.seed, "zd-delta-plan"))
    window = world.delta_s - world.exported_s - 2 * QUIET - 2 * HOUR
    active = [i for i in range(customers) if world.customer(i).kind not in ("soft_deleted", "permanently_deleted")]
    for _ in range(max(2, len(plans) // 15)):
        add(delta_rng.choice(active), "delta_new", world.exported_s + QUIET + delta_rng.randrange(window))
    newcomer = world.customers[-1]
    add(len(world.customers) - 1, "delta_new", newcomer.created_s + 10 * MINUTE)
    return sorted(plans)


# =========================================================================== a ticket's timeline


@dataclass
class Event:
    at: int
    kind: str  # comment | status | delete
    comment: dict[str, Any] | None = None
    status: str | None = None
    by_agent: bool = False


@dataclass
class TicketBuild:
    """One ticket: its fixed fields, its events (in time order) and the mess it carries."""

    id: int
    plan: TicketPlan
    requester: Person
    assignee: Person
    subject: str
    raw_subject: str
    channel: str
    tags: list[str]
    priority: str
    type: str
    order_number: str
    events: list[Event] = field(default_factory=list)
    # (kind, comment it is about or None, extra fields): ids are read when recorded, after retiming
    mess: list[tuple[str, dict[str, Any] | None, dict[str, Any]]] = field(default_factory=list)
    solving_comment: dict[str, Any] | None = None  # the agent's reply that solved the ticket, if one did

    def comments(self, until_s: int | None = None) -> list[dict[str, Any]]:
        return [e.comment for e in self.events if e.comment is not None and (until_s is None or e.at <= until_s)]


class Timeline:
    """Builds one ticket's events from its own seeded random source."""

    def __init__(self, world: World, plan: TicketPlan, ticket_id: int, next_attachment: Callable[[], int]):
        self.w = world
        self.plan = plan
        self.rng = random.Random(derive_seed(world.seed, "zd-ticket", plan.seq))
        self.next_attachment = next_attachment
        requester = world.customer(plan.requester)
        rng = self.rng
        n = C.order_number(rng)
        subject, opener = rng.choice(C.TOPIC_OPENERS)
        subject = subject.format(n=n)
        raw_subject = subject
        channel = rng.choices([c for c, _ in CHANNEL_WEIGHTS], [w for _, w in CHANNEL_WEIGHTS])[0]
        script = plan.script
        if script == "long_subject":
            subject = raw_subject = LONG_SUBJECT.format(n=n)
        elif script == "non_latin_subject":
            subject = raw_subject = rng.choice(NON_LATIN_SUBJECTS).format(n=n)
        elif script == "empty_subject":
            subject = raw_subject = ""
            channel = "web"
        elif script == "dynamic_subject":
            raw_subject = "{{dc.order_question}}"
            subject = f"Question about order #{n}"
        elif script == "email_from_sender":
            channel = "email"
        elif script == "chat":
            channel = "chat"
        elif script == "long_body":
            channel = "email"
        if requester.email is None and channel == "email" and requester.sender_address is None:
            channel = "web"  # mail always has a sender address
        self.opener = opener.format(n=n)
        self.t = TicketBuild(
            id=ticket_id, plan=plan, requester=requester, assignee=world.agents[rng.randrange(len(world.agents))],
            subject=subject, raw_subject=raw_subject, channel=channel,
            tags=sorted(set(rng.sample(TAGS, rng.randint(0, 3)))), priority=rng.choice(("low", "normal", "normal", "high", "urgent")),
            type=rng.choice(("question", "incident", "problem", "task")), order_number=str(n),
        )

    # -- comments -------------------------------------------------------------------------

    def _via(self, channel: str, sender: Person | None) -> dict[str, Any]:
        if channel == "email" and sender is not None:
            address = sender.email if sender.email is not None else sender.sender_address
            return {"channel": "email", "source": {
                "from": {"address": address, "name": sender.name, "original_recipients": [SUPPORT_ADDRESS]},
                "to": {"name": COMPANY, "address": SUPPORT_ADDRESS}, "rel": None}}
        return {"channel": channel, "source": {"from": {}, "to": {}, "rel": None}}

    def _attachment(self, kind: int, inline: bool = False) -> dict[str, Any]:
        rng = self.rng
        content_type, pattern, _ = C.ATTACHMENT_KINDS[kind]
        attachment_id = self.next_attachment()
        name = pattern.format(n=rng.randint(1, 999))
        token = hashlib.blake2b(f"{self.w.seed}|{attachment_id}".encode(), digest_size=12).hexdigest()
        content_url = f"{BASE_URL}/attachments/token/{token}/?name={name.replace(' ', '+')}"
        image = content_type.startswith("image/")
        return {
            "url": api_url("attachments", attachment_id), "id": attachment_id, "file_name": name,
            "content_url": content_url, "mapped_content_url": content_url, "content_type": content_type,
            "size": rng.randint(2_000, 900_000), "width": rng.randint(200, 1600) if image else None,
            "height": rng.randint(200, 1200) if image else None, "inline": inline, "deleted": False,
            "malware_access_override": False, "malware_scan_result": "malware_not_found", "thumbnails": [],
        }

    def _comment(self, at: int, author: Person, *, public: bool, html: str, body: str, plain: str,
                 channel: str, attachments: list[dict[str, Any]] | None = None,
                 metadata_extra: dict[str, Any] | None = None) -> dict[str, Any]:
        # Ids grow with time across the account, as Zendesk's do; unique while tickets < 10^6.
        comment_id = at * 1_000_000 + self.t.id % 1_000_000
        metadata: dict[str, Any] = {"system": {"client": "Mozilla/5.0", "ip_address": None, "location": None}, "custom": {}}
        if channel == "email":
            metadata["system"]["message_id"] = f"<{comment_id:x}@mail.example.com>"
        metadata.update(metadata_extra or {})
        return {
            "id": comment_id, "type": "Comment", "author_id": author.id, "body": body, "html_body": html,
            "plain_body": plain, "public": public, "attachments": attachments or [], "audit_id": comment_id - 7,
            "via": self._via(channel, author if channel == "email" else None), "created_at": fmt_s(at),
            "metadata": metadata,
        }

    def _customer_comment(self, at: int, text: str, first: bool) -> dict[str, Any]:
        t, rng = self.t, self.rng
        requester = t.requester
        attachments: list[dict[str, Any]] = []
        if rng.random() < 0.08:
            attachments.append(self._attachment(rng.randrange(len(C.ATTACHMENT_KINDS))))
        if t.channel == "email":
            style = rng.choice(C.EMAIL_STYLES)
            mail = C.customer_email(rng, style, text, requester.name, None, False, rng.random() < 0.5)
            inner = _email_inner(mail.text) if mail.is_html else _paragraphs(mail.text)
            html = _zd_html(inner)
            plain = html_to_text(html)
            comment = self._comment(at, requester, public=True, html=html, body=plain, plain=plain,
                                    channel="email", attachments=attachments)
        else:
            html = _zd_html(_paragraphs(text))
            comment = self._comment(at, requester, public=True, html=html, body=text, plain=text,
                                    channel=t.channel if first else "web", attachments=attachments)
        if rng.random() < 0.05:
            comment["plain_body"] += "\n&nbsp;"  # as Zendesk's own fixtures show it
            t.mess.append(("literal_nbsp_in_plain_body", comment, {}))
        return comment

    def _agent_reply(self, at: int) -> dict[str, Any]:
        rng = self.rng
        text = C.agent_text(rng)
        html_inner, body, plain = _paragraphs(text), text, text
        links: list[str] = []
        if rng.random() < 0.35:
            label, url = rng.choice(LINK_TARGETS)
            html_inner += f'<p>See our <a href="{escape(url)}" rel="noopener noreferrer" target="_blank">{label}</a>.</p>'
            body += f"\n\nSee our [{label}]({url})."
            plain += f"\n\nSee our {label}."
            links.append(url)
        comment = self._comment(at, self.t.assignee, public=True, html=_zd_html(html_inner), body=body, plain=plain,
                                channel="web")
        if links:
            self.t.mess.append(("html_bodies_with_links", comment, {"links": links}))
        return comment

    def _note(self, at: int) -> dict[str, Any]:
        text = C.note_text(self.rng)
        agent = self.w.agents[self.rng.randrange(len(self.w.agents))]
        comment = self._comment(at, agent, public=False, html=_zd_html(_paragraphs(text)), body=text, plain=text,
                                channel="web")
        self.t.mess.append(("private_comments", comment, {}))
        return comment

    def _automatic(self, at: int) -> dict[str, Any]:
        text = f"Your request ({self.t.id}) has been received and is being reviewed by our support staff."
        comment = self._comment(at, self.t.assignee, public=True, html=_zd_html(_paragraphs(text)), body=text,
                                plain=text, channel="rule", metadata_extra={"flags": [4], "flags_options": {}})
        comment["via"] = {"channel": "rule", "source": {
            "from": {"id": 360001112223, "title": "Notify requester of received request"}, "to": {}, "rel": "trigger"}}
        self.t.mess.append(("automatic_comments", comment, {}))
        return comment

    def _chat_transcript(self, at: int) -> dict[str, Any]:
        t = self.t
        clock = datetime.fromtimestamp(at, tz=timezone.utc)
        lines = [f"Chat started: {clock:%Y-%m-%d %I:%M %p} UTC", ""]
        for i, (who, text) in enumerate(((t.requester.name, self.opener), (t.assignee.name, C.agent_text(self.rng)),
                                         (t.requester.name, "ok thanks"))):
            stamp = datetime.fromtimestamp(at + 40 * i, tz=timezone.utc)
            lines.append(f"({stamp:%I:%M:%S %p}) {who}: {text}")
        text = "\n".join(lines)
        comment = self._comment(at, t.requester, public=True, html=_zd_html(_paragraphs(text)), body=text, plain=text,
                                channel="chat")
        t.mess.append(("chat_transcripts", comment, {}))
        return comment

    def _long_body(self, at: int) -> dict[str, Any]:
        text = C.long_text(self.rng, LONG_BODY_CHARS)
        attachments = [self._attachment(1, inline=True), self._attachment(4), self._attachment(0)]
        inline = attachments[0]
        label, url = LINK_TARGETS[1]
        html = _zd_html(f'<p>Screenshot: <img src="{escape(inline["content_url"])}" alt="{escape(inline["file_name"])}"></p>'
                        f'<p>As on the <a href="{escape(url)}">{label}</a>:</p>{_paragraphs(text)}')
        body = f"Screenshot: ![]({inline['content_url']})\n\nAs on the [{label}]({url}):\n\n{text}"
        comment = self._comment(at, self.t.requester, public=True, html=html, body=body, plain=html_to_text(html),
                                channel="email", attachments=attachments)
        self.t.mess.append(("long_bodies", comment, {"chars": len(comment["body"])}))
        self.t.mess.append(("html_bodies_with_links", comment, {"links": [url]}))
        return comment

    # -- the timeline -------------------------------------------------------------------------

    def build(self) -> TicketBuild:
        """The events, from the ticket's creation on (some may fall past the windows: see
        `_fit_to_windows`)."""
        t, rng, script = self.t, self.rng, self.plan.script
        at = self.plan.created_s
        if script == "no_comments":
            return t
        first = {"long_body": self._long_body, "chat": self._chat_transcript}.get(script)
        self._add(at, first(at) if first else self._customer_comment(at, self.opener, first=True), by_agent=False)
        turns = 1 + min(10, int(rng.expovariate(0.45)))
        if script == "long_body":
            turns = max(turns, 3)
        if rng.random() < 0.1:
            self._add(at + 30, self._automatic(at + 30), by_agent=True)
        by_agent = True
        for _ in range(turns):
            at += rng.randint(10 * MINUTE, 20 * HOUR)
            if by_agent and rng.random() < 0.25:
                self._add(at, self._note(at), by_agent=True)
                at += rng.randint(2 * MINUTE, 2 * HOUR)
            if by_agent:
                self._add(at, self._agent_reply(at), by_agent=True)
            else:
                self._add(at, self._customer_comment(at, C.customer_text(rng), first=False), by_agent=False)
            by_agent = not by_agent
        if t.events[-1].by_agent and rng.random() < 0.7:
            t.solving_comment = t.events[-1].comment
            self._add(t.events[-1].at + CLOSE_AFTER_SOLVED, None, status="closed")
        return t

    def _add(self, at: int, comment: dict[str, Any] | None, *, by_agent: bool = False, status: str | None = None) -> None:
        self.t.events.append(Event(at, "comment" if comment else "status", comment, status, by_agent))


def _fit_to_windows(world: World, t: TicketBuild) -> None:
    """Move the events into the world's windows: an event of the quiet hour after `end` moves just
    past the export (so it is in the delta), nothing stays within QUIET of exportedAt or deltaAt,
    and what would come after the delta never happens. Order is kept."""
    kept: list[Event] = []
    last = -1
    for event in t.events:
        at = event.at
        if world.end_s <= at < world.exported_s + QUIET:
            at = world.exported_s + QUIET
        at = max(at, last + 1)
        if at > world.delta_s - QUIET:
            break
        if event.comment is not None and at != event.at:
            _retime(event.comment, at, t.id)
        event.at, last = at, at
        kept.append(event)
    t.events = kept


def _retime(comment: dict[str, Any], at: int, ticket_id: int) -> None:
    comment["id"] = at * 1_000_000 + ticket_id % 1_000_000
    comment["audit_id"] = comment["id"] - 7
    comment["created_at"] = fmt_s(at)


# =========================================================================== ticket versions


def _status_after(t: TicketBuild, upto: int) -> str:
    """The status after the first `upto` events."""
    status = "new"
    for event in t.events[:upto]:
        comment = event.comment
        if event.kind == "delete":
            status = "deleted"
        elif event.kind == "status":
            status = event.status or status
        elif comment is not None and (not comment["public"] or 4 in comment["metadata"].get("flags", ())):
            status = "open" if status == "new" else status  # notes and trigger mail leave it be
        elif event.by_agent:
            status = "solved" if comment is t.solving_comment else "pending"
        else:
            status = "open"
    return status


def ticket_version(t: TicketBuild, upto: int) -> dict[str, Any]:
    """The ticket as the API shows it after its first `upto` events (at least its creation)."""
    created = t.plan.created_s
    updated = t.events[upto - 1].at if upto else created
    comments = [e.comment for e in t.events[:upto] if e.comment is not None]
    first = t.events[0].comment if t.events and t.events[0].comment else None
    has_agent = any(e.by_agent for e in t.events[:upto])
    via: dict[str, Any] = first["via"] if first else {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}}
    fields = [{"id": ORDER_FIELD_ID, "value": t.order_number}]
    status = _status_after(t, upto)
    return {
        "url": api_url("tickets", t.id), "id": t.id, "external_id": None, "via": via,
        "created_at": fmt_s(created), "updated_at": fmt_s(updated), "type": t.type, "subject": t.subject,
        "raw_subject": t.raw_subject, "description": first["plain_body"] if first else "", "priority": t.priority,
        "status": status, "recipient": SUPPORT_ADDRESS if t.channel == "email" else None,
        "requester_id": t.requester.id, "submitter_id": t.requester.id,
        "assignee_id": t.assignee.id if has_agent else None, "organization_id": t.requester.organization_id,
        "group_id": GROUP_ID, "collaborator_ids": [], "follower_ids": [], "email_cc_ids": [], "problem_id": None,
        "has_incidents": False, "is_public": any(c["public"] for c in comments) or not comments, "due_at": None,
        "tags": list(t.tags), "custom_fields": fields, "fields": fields,
        "satisfaction_rating": {"score": "offered"} if status in ("solved", "closed") else None,
        "sharing_agreement_ids": [], "ticket_form_id": FORM_ID, "brand_id": BRAND_ID,
        "generated_timestamp": updated,
    }


# =========================================================================== writing


class LineFile:
    """An NDJSON file written line by line, counting lines and hashing bytes as it goes."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fh: IO[bytes] = path.open("wb")
        self.lines = 0
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        """Append one line (no newline in `data`); return its 1-based number."""
        chunk = data + b"\n"
        self.fh.write(chunk)
        self.sha.update(chunk)
        self.lines += 1
        return self.lines

    def close(self) -> None:
        self.fh.close()


class ExportFiles:
    """The plain export files of every comment mode written; gz and zip variants made at the end."""

    def __init__(self, layout: ZendeskLayout, modes: tuple[str, ...]):
        self.layout = layout
        self.modes = modes
        self.files = {(mode, kind): LineFile(layout.plain_export(mode, kind)) for mode in modes for kind in EXPORT_TYPES}

    def write(self, kind: str, lines: dict[str, bytes] | bytes) -> int:
        """One line in every mode's `kind` file (a dict gives each mode its own bytes); its number."""
        numbers = {self.files[(mode, kind)].write(lines[mode] if isinstance(lines, dict) else lines)
                   for mode in self.modes}
        assert len(numbers) == 1, "export files of the two comment modes must stay line-aligned"
        return numbers.pop()

    def finish(self, exported_s: int) -> list[dict[str, Any]]:
        """Close the plain files, write the .gz and .zip variants; describe every file."""
        for f in self.files.values():
            f.close()
        stamp = datetime.fromtimestamp(exported_s, tz=timezone.utc)
        described = []
        for mode in self.modes:
            plain = [self.layout.plain_export(mode, kind) for kind in EXPORT_TYPES]
            lines = {kind: self.files[(mode, kind)].lines for kind in EXPORT_TYPES}
            for kind, path in zip(EXPORT_TYPES, plain):
                described.append(self._describe(mode, "plain", path, {kind: lines[kind]}))
            for kind, path in zip(EXPORT_TYPES, plain):
                target = self.layout.gz_export(mode, kind)
                target.parent.mkdir(parents=True, exist_ok=True)
                with path.open("rb") as src, target.open("wb") as raw, \
                        gzip.GzipFile(filename=path.name, mode="wb", fileobj=raw, mtime=exported_s, compresslevel=6) as gz:
                    shutil.copyfileobj(src, gz, 1 << 20)
                described.append(self._describe(mode, "gz", target, {kind: lines[kind]}))
            target = self.layout.zip_export(mode)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(target, "w") as zf:
                for path in plain:
                    info = zipfile.ZipInfo(path.name, date_time=stamp.timetuple()[:6])
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    with path.open("rb") as src, zf.open(info, "w") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
            described.append(self._describe(mode, "zip", target, lines))
        return described

    def _describe(self, mode: str, fmt: str, path: Path, lines: dict[str, int]) -> dict[str, Any]:
        sha = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                sha.update(block)
        return {"comments": mode, "format": fmt, "path": str(path.relative_to(self.layout.root)),
                "bytes": path.stat().st_size, "sha256": sha.hexdigest(), "lines": lines}


class Ledger:
    """Counts and mess, accumulated as tickets are written; becomes the manifest."""

    def __init__(self) -> None:
        self.mess: dict[str, MessLog] = {k: MessLog() for k in MESS_KINDS}
        self.counts: Counter[str] = Counter()
        self.comments_per_day: Counter[str] = Counter()
        self.tickets_of: dict[int, list[int]] = {}  # requester id -> ticket ids (for user mess)


def _ticket_line(version: dict[str, Any], comments: list[dict[str, Any]] | None) -> bytes:
    line = {k: v for k, v in version.items() if k != "generated_timestamp"}
    if comments is not None:
        line["comments"] = comments
    return dumps(line).encode("utf-8")


def _write_ticket(world: World, t: TicketBuild, exports: ExportFiles, api_tickets: LineFile, api_comments: LineFile,
                  ledger: Ledger) -> None:
    exported = [e for e in t.events if e.at <= world.exported_s]
    in_export = t.plan.created_s <= world.exported_s
    ledger.tickets_of.setdefault(t.requester.id, []).append(t.id)
    if in_export:
        version = ticket_version(t, len(exported))
        comments = t.comments(world.exported_s)
        lines = {"embedded": _ticket_line(version, comments), "absent": _ticket_line(version, None)}
        _plant_ticket_line_mess(t, exports, lines, ledger)
        exports.write("tickets", lines)
        api_tickets.write(dumps(version).encode("utf-8"))
        ledger.counts["tickets"] += 1
        for c in comments:
            ledger.counts["comments"] += 1
            ledger.counts["publicComments" if c["public"] else "privateComments"] += 1
            ledger.counts["attachments"] += len(c["attachments"])
            ledger.comments_per_day[c["created_at"][:10]] += 1
    delta_events = t.events[len(exported):]
    for upto in range(len(exported) + 1, len(t.events) + 1):
        api_tickets.write(dumps(ticket_version(t, upto)).encode("utf-8"))
        ledger.counts["deltaTicketVersions"] += 1
    for event in t.events:
        if event.comment is not None:
            api_comments.write(dumps({"ticket_id": t.id, "comment": event.comment}).encode("utf-8"))
    _record_ticket_mess(world, t, in_export, delta_events, ledger)


def _plant_ticket_line_mess(t: TicketBuild, exports: ExportFiles, lines: dict[str, bytes], ledger: Ledger) -> None:
    """Before the long-subject ticket's line a truncated copy of it, before the empty-subject
    ticket's line a copy of it without `id`."""
    if t.plan.script == "long_subject":
        line = exports.write("tickets", {mode: data[: len(data) // 2] for mode, data in lines.items()})
        ledger.mess["malformed_lines"].add({"file": "tickets.json", "line": line, "reason": "truncated_json",
                                            "ticketId": t.id})
    if t.plan.script == "empty_subject":
        copy = {mode: re.sub(rb'"id":%d,' % t.id, b"", data, count=1) for mode, data in lines.items()}
        line = exports.write("tickets", copy)
        ledger.mess["malformed_lines"].add({"file": "tickets.json", "line": line, "reason": "missing_id",
                                            "ticketId": t.id})


def _record_ticket_mess(world: World, t: TicketBuild, in_export: bool, delta_events: list[Event], ledger: Ledger) -> None:
    where = {"ticketId": t.id}
    kept = {id(c) for c in t.comments()}
    for kind, comment, extra in t.mess:
        if comment is None:
            ledger.mess[kind].add({**where, **extra})
        elif id(comment) in kept:  # a comment past the delta never happened
            ledger.mess[kind].add({**where, "commentId": comment["id"], **extra})
    for c in t.comments():
        for a in c["attachments"]:
            entry = {**where, "commentId": c["id"], "attachmentId": a["id"], "fileName": a["file_name"]}
            ledger.mess["inline_images" if a["inline"] else "attachments"].add(entry)
    script = t.plan.script
    if len(t.subject) > 100:
        ledger.mess["long_subjects"].add({**where, "chars": len(t.subject)})
    if script == "non_latin_subject":
        ledger.mess["non_latin_subjects"].add({**where, "subject": t.subject})
    if script == "empty_subject":
        ledger.mess["empty_subjects"].add(where)
    if t.raw_subject != t.subject and t.raw_subject.startswith("{{dc."):
        ledger.mess["dynamic_content_subjects"].add({**where, "rawSubject": t.raw_subject, "subject": t.subject})
    if not t.comments():
        ledger.mess["tickets_without_comments"].add(where)
    if not in_export:
        ledger.mess["delta_new_tickets"].add({**where, "createdAt": fmt_s(t.plan.created_s)})
    elif delta_events:
        ledger.mess["delta_updated_tickets"].add({**where, "events": [e.kind for e in delta_events]})
    for e in delta_events:
        if e.comment is not None:
            ledger.mess["delta_new_comments"].add({**where, "commentId": e.comment["id"], "createdAt": e.comment["created_at"]})
        if e.kind == "delete":
            ledger.mess["delta_deleted_tickets"].add({**where, "deletedAt": fmt_s(e.at)})


def _add_followup(world: World, t: TicketBuild) -> None:
    """A follow-up from the requester in the delta, unless the ticket already changes there."""
    if not t.events or t.events[-1].at > world.exported_s:
        return
    rng = random.Random(derive_seed(world.seed, "zd-followup", t.id))
    at = max(world.exported_s + QUIET + rng.randrange((world.delta_s - world.exported_s) // 2), t.events[-1].at + 1)
    text = C.customer_text(rng)
    comment = {
        "id": 0, "type": "Comment", "author_id": t.requester.id, "body": text, "html_body": _zd_html(_paragraphs(text)),
        "plain_body": text, "public": True, "attachments": [], "audit_id": 0,
        "via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}}, "created_at": "",
        "metadata": {"system": {"client": "Mozilla/5.0", "ip_address": None, "location": None}, "custom": {}},
    }
    _retime(comment, at, t.id)
    t.events.append(Event(at, "comment", comment))


def _delete_in_delta(world: World, t: TicketBuild) -> None:
    """The ticket is deleted in the delta (whatever else would have happened to it there); the
    incremental export still lists it, with status `deleted` (assumed: facts unconfirmed)."""
    t.events = [e for e in t.events if e.at <= world.exported_s]
    t.events.append(Event(max(world.delta_s - QUIET - HOUR, t.events[-1].at + 1 if t.events else 0), "delete"))


# =========================================================================== entry point


def generate(out: Path, *, customers: int, days: int, seed: int = 0, end: date | None = None,
             export_comments: ExportComments = "both", tickets_per_customer: float = 1.5,
             progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write a messy Zendesk dataset for `customers` end users over the `days` before `end` (UTC).

    Same arguments, same bytes. `export_comments` says whether the export's ticket lines embed
    `comments` ("embedded"), leave them to the API ("absent") or both, as two deliveries.
    Returns the manifest (also written to `manifest.json`); `progress` receives tickets written.
    """
    if customers < MIN_CUSTOMERS or days < 1:
        raise ValueError(f"customers must be >= {MIN_CUSTOMERS} (one per planted role) and days >= 1")
    if export_comments not in ("embedded", "absent", "both"):
        raise ValueError(f"export_comments must be embedded, absent or both, not {export_comments!r}")
    end = end or datetime.now(timezone.utc).date()
    layout = ZendeskLayout(Path(out))
    if layout.zendesk.exists() or layout.manifest.exists():
        raise FileExistsError(f"{out} already holds a dataset; generate into an empty folder")
    modes = COMMENT_MODES if export_comments == "both" else (export_comments,)
    world = build_world(seed, customers, days, end)
    plans = plan_tickets(world, tickets_per_customer)
    ledger = Ledger()
    exports = ExportFiles(layout, modes)
    layout.api_dir.mkdir(parents=True, exist_ok=True)
    api_tickets, api_comments = LineFile(layout.api_tickets), LineFile(layout.api_comments)

    _write_users(world, exports, layout, ledger)
    for org in world.organizations:
        exports.write("organizations", dumps(org).encode("utf-8"))
    _plant_org_line_mess(world, exports, ledger)

    # The delta also changes exported tickets: the two newest get a follow-up, a middle one is deleted.
    normal = [p.seq for p in plans if p.script == "normal"]
    followups, victim = set(normal[-2:]), normal[len(normal) // 2]
    attachment_ids = iter(range(ATTACHMENT_ID_BASE, ATTACHMENT_ID_BASE + 10**9))
    for rank, plan in enumerate(plans):
        t = Timeline(world, plan, TICKET_ID_BASE + rank, lambda: next(attachment_ids)).build()
        _fit_to_windows(world, t)
        if plan.seq in followups:
            _add_followup(world, t)
        elif plan.seq == victim:
            _delete_in_delta(world, t)
        _write_ticket(world, t, exports, api_tickets, api_comments, ledger)
        if progress and (rank + 1) % 500 == 0:
            progress(rank + 1)
    api_tickets.close()
    api_comments.close()
    if progress:
        progress(len(plans))
    _record_user_mess(world, ledger)
    files = exports.finish(world.exported_s)
    return _finish(layout, world, ledger, files, seed, days, end, export_comments, tickets_per_customer)


def _write_users(world: World, exports: ExportFiles, layout: ZendeskLayout, ledger: Ledger) -> None:
    """users.json of the export (agents and end users known at export time, permanently deleted
    ones absent; with a truncated copy of the showcase requester's line before it) and the API's
    users (the delta's newcomer too)."""
    with layout.api_users.open("wb") as api:
        for person in [*world.agents, *world.customers]:
            line = dumps(person.api()).encode("utf-8")
            if person.in_api:
                api.write(line + b"\n")
            if not person.in_api or person.created_s > world.exported_s:
                continue
            if person.kind == "showcase":
                number = exports.write("users", line[: len(line) // 3])
                ledger.mess["malformed_lines"].add({"file": "users.json", "line": number, "reason": "truncated_json",
                                                    "userId": person.id})
            exports.write("users", line)
            ledger.counts["users"] += 1
            ledger.counts["agents" if person.role != "end-user" else "endUsers"] += 1


def _plant_org_line_mess(world: World, exports: ExportFiles, ledger: Ledger) -> None:
    """A copy of the first organization's line with a byte that is not UTF-8 in its name."""
    org = world.organizations[0]
    line = dumps(org).encode("utf-8").replace(org["name"].encode(), org["name"].encode() + b"\xff", 1)
    number = exports.write("organizations", line)
    ledger.mess["malformed_lines"].add({"file": "organizations.json", "line": number, "reason": "invalid_utf8",
                                        "organizationId": org["id"]})
    ledger.counts["organizations"] = len(world.organizations)


def _record_user_mess(world: World, ledger: Ledger) -> None:
    by_email: dict[str, list[Person]] = {}
    for person in world.customers:
        tickets = ledger.tickets_of.get(person.id, [])
        where = {"userId": person.id, "ticketIds": tickets}
        for kind in person.mess:
            if kind == "requesters_without_email":
                ledger.mess[kind].add({**where, "senderAddress": person.sender_address})
            elif kind == "invalid_emails":
                ledger.mess[kind].add({**where, "email": person.email})
            else:
                ledger.mess[kind].add({**where, "name": person.name})
        if person.kind in ("soft_deleted", "permanently_deleted"):
            ledger.mess["deleted_users"].add({**where, "deletion": "soft" if person.kind == "soft_deleted" else "permanent"})
        if person.kind == "delta_new":
            ledger.mess["delta_new_users"].add({**where, "createdAt": fmt_s(person.created_s)})
        if person.email:
            by_email.setdefault(person.email.strip().lower(), []).append(person)
    for email in sorted(by_email):
        if len(by_email[email]) > 1:
            ledger.mess["shared_emails"].add({"email": email, "userIds": [p.id for p in by_email[email]],
                                              "asWritten": [p.email for p in by_email[email]]})


def _finish(layout: ZendeskLayout, world: World, ledger: Ledger, files: list[dict[str, Any]], seed: int, days: int,
            end: date, export_comments: str, tickets_per_customer: float) -> dict[str, Any]:
    account = {"subdomain": SUBDOMAIN, "url": BASE_URL, "name": COMPANY,
               "exportedAt": fmt_s(world.exported_s), "deltaAt": fmt_s(world.delta_s)}
    write_json(layout.account, account)
    counts = dict(sorted(ledger.counts.items()))
    counts["commentsPerDay"] = dict(sorted(ledger.comments_per_day.items()))
    counts["deltaNewTickets"] = ledger.mess["delta_new_tickets"].count
    counts["deltaUpdatedTickets"] = ledger.mess["delta_updated_tickets"].count
    counts["deltaNewComments"] = ledger.mess["delta_new_comments"].count
    manifest = {
        "formatVersion": FORMAT_VERSION,
        "source": "zendesk",
        "params": {"seed": seed, "end": end.isoformat(), "days": days, "customers": len(world.customers) - 1,
                   "ticketsPerCustomer": tickets_per_customer, "exportComments": export_comments,
                   "startAt": fmt_s(world.start_s), "endAt": fmt_s(world.end_s), **account},
        "counts": counts,
        "exports": files,
        "mess": {k: v.to_json() for k, v in ledger.mess.items()},
        "notes": [
            "counts.tickets/comments/users describe the export (valid lines only; malformed lines are extra lines)",
            "malformed line numbers are the same in every delivery: the comment modes are line-aligned and gz/zip hold the same bytes",
            "the delta (mess.delta_*) is only in the API, from exportedAt on; move the emulator clock past deltaAt to see all of it",
            "mess.*.where is capped; count is exact; complete says whether where lists them all",
        ],
    }
    write_json(layout.manifest, manifest)
    return manifest

