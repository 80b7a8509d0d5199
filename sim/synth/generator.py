"""Deterministic messy-data generator: writes a dataset folder (see `dataset.py`) that looks like
a real Gladly organization's export history, with every kind of mess a migration must survive.

What it produces, in one pass over the customers:

* export jobs as Gladly's scheduler makes them (one per day or per hour, COMPLETED, `updatedAt`
  about two hours after the window, some with nanosecond fractions), plus a Support-scheduled
  one-time job that re-covers the expired days with a deliberate one-day overlap, a FAILED attempt
  and an IN_PROGRESS re-export (both extra: no data depends on them), and one empty window whose
  job lists only agents/topics;
* each job's NDJSON files (agents/topics snapshots, the customers its items reference, the items
  whose timestamp falls in the window), with deliberate line-level mess;
* the REST side (profiles, merges, conversations, agents, topics, schedule, organization,
  transcripts, attachment and recording bytes) and the Unthread workspace seed;
* `manifest.json`: the ground truth (parameters, counts, jobs with line counts and sha256, and
  where every kind of mess is).

Determinism: every random draw comes from a `random.Random` seeded from (seed, purpose, index);
ids are hashes of (seed, kind, key); nothing iterates a set; the wall clock is only read for the
default `end`. Memory: one customer's timeline at a time, bounded per-job bookkeeping, and mess
lists capped at `MESS_EXAMPLES_CAP` entries (their `count` stays exact).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import IO, Any, Literal

from sim.synth import content as C
from sim.synth.dataset import EXPORT_FILES, FORMAT_VERSION, RETENTION_DAYS, DatasetLayout, write_json

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

DEFAULT_ITEMS_PER_CUSTOMER = 25.0
AS_OF_OFFSET_MS = 6 * HOUR_MS  # the instant the dataset depicts: `end` + 6 h, after the last daily job
MESS_EXAMPLES_CAP = 200
MEGA_MIN_ITEMS = 1000
DORMANCY_MS = 7 * DAY_MS
MAX_OPEN_FILES = 128
UNKNOWN_CONTENT_TYPE = "VIDEO_CALL"

# Required fields per content type, as bold in §3.4 of the Gladly notes (plus the ones this
# generator always writes because the pipeline depends on them, e.g. PHONE_CALL recording fields
# on answered, recorded calls are checked separately).
REQUIRED_CONTENT_FIELDS: dict[str, tuple[str, ...]] = {
    "CHAT_MESSAGE": ("type", "sessionId", "content", "messageType"),
    "CONVERSATION_STATUS_CHANGE": ("type", "status"),
    "CUSTOMER_ACTIVITY": ("type", "activityType"),
    "EMAIL": ("type", "from", "to", "subject", "content"),
    "FACEBOOK_MESSAGE": ("type", "pageId", "userId", "content"),
    "CONVERSATION_NOTE": ("type",),
    "PHONE_CALL": ("type", "from", "to", "startedAt"),
    "SMS": ("type", "from", "to", "content"),
    "TOPIC_CHANGE": ("type",),
    "VOICEMAIL": ("type",),
    "INSTAGRAM_DIRECT": ("type", "content"),
    "WHATSAPP": ("type", "content"),
}
CONTENT_TYPES: tuple[str, ...] = tuple(REQUIRED_CONTENT_FIELDS)
REQUIRED_ITEM_FIELDS = ("id", "customerId", "timestamp", "content")

Frequency = Literal["daily", "hourly"]


# =========================================================================== small utilities


def make_id(seed: int, *parts: object) -> str:
    """A 22-character URL-safe id (like Gladly's), a hash of the seed and the parts."""
    key = "|".join([str(seed), *map(str, parts)]).encode("utf-8")
    return base64.urlsafe_b64encode(hashlib.blake2b(key, digest_size=16).digest()).decode("ascii")[:22]


def derive_seed(seed: int, *parts: object) -> int:
    """An integer seed for a purpose-specific `random.Random`, independent of other purposes."""
    key = "|".join([str(seed), *map(str, parts)]).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def fmt_ms(ms: int) -> str:
    """RFC3339 UTC with milliseconds, as Gladly items use: 2019-07-01T11:46:45.010Z."""
    sec, milli = divmod(ms, 1000)
    t = time.gmtime(sec)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"
            f"{t.tm_sec:02d}.{milli:03d}Z")


def fmt_nanos(ms: int, extra_nanos: int) -> str:
    """RFC3339 with nanosecond digits, trailing zeros dropped, like '2019-02-21T07:15:19.07272933Z'."""
    sec, milli = divmod(ms, 1000)
    t = time.gmtime(sec)
    frac = f"{milli * 1_000_000 + extra_nanos:09d}".rstrip("0") or "0"
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{frac}Z"


def human_when(ms: int) -> str:
    """How mail clients print a date in a quote header."""
    return time.strftime("%a, %b %d, %Y at %I:%M %p", time.gmtime(ms // 1000))


def date_ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()) * 1000


def dumps(value: Any) -> str:
    """One NDJSON line body: compact, UTF-8 kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# =========================================================================== the organization


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    email: str
    active_from_ms: int
    active_until_ms: int | None  # None: still active

    def active_at(self, ms: int) -> bool:
        return self.active_from_ms <= ms and (self.active_until_ms is None or ms < self.active_until_ms)

    def export(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "emailAddress": self.email}


@dataclass(frozen=True)
class Topic:
    id: str
    name: str
    disabled: bool
    parent_id: str | None

    def export(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "disabled": self.disabled}
        if self.parent_id:
            out["parentId"] = self.parent_id
        return out


# (parent, [children]); names starting with "~" are disabled.
TOPIC_TREE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Orders", ("Order Status", "Cancel Order")),
    ("Shipping", ("Delayed", "Damaged in Transit")),
    ("Returns", ("Exchange", "Refund Status", "~Legacy Warranty")),
    ("Billing", ("Double Charge", "Promo Code")),
    ("Account", ("Password Reset",)),
    ("Product Questions", ("Sizing",)),
    ("~Holiday 2023 Promo", ()),
    ("Feedback", ()),
)

CHANNEL_INBOX = {"EMAIL": "Email Support", "CHAT": "Chat", "SMS": "SMS", "PHONE": "Phone",
                 "VOICEMAIL": "Phone", "FACEBOOK": "Social", "INSTAGRAM": "Social", "WHATSAPP": "SMS"}
CHANNEL_WEIGHTS = (("EMAIL", 30), ("CHAT", 30), ("SMS", 12), ("PHONE", 10), ("VOICEMAIL", 3),
                   ("FACEBOOK", 5), ("INSTAGRAM", 5), ("WHATSAPP", 5))
PHONE_CHANNELS = frozenset({"SMS", "PHONE", "VOICEMAIL", "WHATSAPP"})


@dataclass
class World:
    """Everything shared by all customers: org, agents, topics, inboxes, the clock."""

    seed: int
    start_ms: int
    end_ms: int
    as_of_ms: int
    quiet_day_ms: int | None  # start of the deliberately empty day, or None
    items_per_customer: float
    customers: int
    agents: list[Agent]
    topics: list[Topic]
    inboxes: dict[str, str]  # inbox name -> id
    merges: dict[int, int]  # merged-away customer index -> surviving index
    company: str = "Northwind Outfitters"
    domain: str = "northwindoutfitters.com"
    company_phone: str = "+18005550123"
    facebook_page_id: str = "104857362910234"
    api_user_id: str = ""
    automation_id: str = ""

    @property
    def support_email(self) -> str:
        return f"support@{self.domain}"

    @property
    def virtual_span_ms(self) -> int:
        """History length without the quiet day: timelines are laid out on this axis."""
        span = self.end_ms - self.start_ms
        return span - DAY_MS if self.quiet_day_ms is not None else span

    def real_ms(self, virtual_ms: int) -> int:
        """Map the virtual axis to real time, skipping the quiet day (monotone, gap-preserving)."""
        ms = self.start_ms + virtual_ms
        if self.quiet_day_ms is not None and ms >= self.quiet_day_ms:
            ms += DAY_MS
        return ms

    def agents_at(self, ms: int) -> list[Agent]:
        return [a for a in self.agents if a.active_at(ms)]

    def customer_id(self, index: int) -> str:
        return make_id(self.seed, "customer", index)


def build_agents(seed: int, customers: int, start_ms: int, end_ms: int) -> list[Agent]:
    """Agents, including two who left during the history and one hired part-way through."""
    rng = random.Random(derive_seed(seed, "agents"))
    span = end_ms - start_ms
    n = min(80, max(6, customers // 50))
    agents: list[Agent] = []
    for i in range(n):
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
        agents.append(Agent(make_id(seed, "agent", i), f"{first} {last}{suffix}",
                            f"{first.lower()}.{last.lower()}{suffix}@northwindoutfitters.com", active_from, until))
    return agents


def build_topics(seed: int) -> list[Topic]:
    topics: list[Topic] = []
    for parent, children in TOPIC_TREE:
        pname = parent.lstrip("~")
        pid = make_id(seed, "topic", pname)
        topics.append(Topic(pid, pname, parent.startswith("~"), None))
        for child in children:
            cname = child.lstrip("~")
            topics.append(Topic(make_id(seed, "topic", pname, cname), cname, child.startswith("~"), pid))
    return topics


def build_merges(customers: int) -> dict[int, int]:
    """Which customer profiles were merged into which (index -> index); never chained."""
    merges: dict[int, int] = {}
    for i in range(customers):
        if i == 3 or (i >= 11 and i % 37 == 11):
            target = i + 1 if i + 1 < customers else i - 1
            if target >= 0 and target != i and target not in merges:
                merges[i] = target
    return {k: v for k, v in merges.items() if v not in merges}


# =========================================================================== customers


@dataclass(frozen=True)
class Phone:
    original: str
    e164: str
    region: str
    type: str  # MOBILE | HOME | OFFICE | "" (other)


@dataclass(frozen=True)
class Persona:
    """One customer profile and the scenario its timeline plays out; a pure function of its index."""

    index: int
    id: str
    name: str
    address: str | None
    emails: tuple[str, ...]  # originals, as typed
    email_kind: str  # normal | none | invalid | mixed_case
    phones: tuple[Phone, ...]
    external_ids: dict[str, str]
    custom_attributes: dict[str, Any]
    mail_style: str
    unicode_name: bool
    script: str  # normal | showcase | mega | reopen
    swap_lines: bool  # deliberately write two lines of one conversation out of order
    long_body: bool
    merged_into: int | None
    facebook_user_id: str

    @property
    def valid_email(self) -> str | None:
        for e in self.emails:
            if C.is_valid_email(e):
                return e
        return None

    def export_line(self) -> dict[str, Any]:
        """The export `customers.jsonl` shape (§3.3): flat strings, original casing."""
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.address:
            out["address"] = self.address
        out["emailAddresses"] = list(self.emails)
        out["phoneNumbers"] = [p.e164 for p in self.phones]
        if self.external_ids:
            out["externalCustomerIds"] = dict(self.external_ids)
        return out


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


def make_persona(world: World, index: int) -> Persona:
    """Build customer `index`. Small indexes carry the guaranteed scenarios so tiny runs have them."""
    rng = random.Random(derive_seed(world.seed, "persona", index))
    script = "normal"
    if index == 0:
        script = "showcase"
    elif index == 1 and world.customers >= 20:
        script = "mega"
    elif index == 2 or (index > 2 and rng.random() < 0.01):
        script = "reopen"

    unicode_name = index in (9, 10) or rng.random() < 0.08
    if unicode_name:
        name, local = C.UNICODE_NAMES[(index if index in (9, 10) else rng.randrange(len(C.UNICODE_NAMES))) % len(C.UNICODE_NAMES)]
        if index == 9:
            name, local = C.UNICODE_NAMES[5]  # Arabic
        elif index == 10:
            name, local = C.UNICODE_NAMES[7]  # Hebrew
    else:
        first, last = rng.choice(C.FIRST_NAMES), rng.choice(C.LAST_NAMES)
        name, local = f"{first} {last}", f"{first}.{last}"
        if rng.random() < 0.03:
            name = name.upper() if rng.random() < 0.5 else f"  {name.lower()} "  # messy casing/space

    # email kind: forced for the small indexes so tiny runs have each kind
    forced = {5: "none", 6: "invalid", 7: "mixed_case", 8: "mixed_case"}
    if script in ("showcase", "mega"):
        email_kind = "normal"
    elif index in forced:
        email_kind = forced[index]
    else:
        r = rng.random()
        email_kind = "none" if r < 0.07 else "invalid" if r < 0.10 else "mixed_case" if r < 0.25 else "normal"
    domain = rng.choice(C.EMAIL_DOMAINS)
    emails: tuple[str, ...]
    if email_kind == "none":
        emails = ()
    elif email_kind == "invalid":
        emails = (rng.choice(C.INVALID_EMAILS),)
    elif email_kind == "mixed_case":
        lp = local.replace(" ", "")
        emails = (f"{lp[:1].upper()}{lp[1:]}@{domain[:1].upper()}{domain[1:]}",)
        if "." in lp:
            emails = (".".join(p[:1].upper() + p[1:] for p in lp.split(".")) + f"@{domain[:1].upper()}{domain[1:]}",)
    else:
        emails = (f"{local.lower().replace(' ', '')}{rng.randint(1, 999) if rng.random() < 0.5 else ''}@{domain}",)
    if emails and rng.random() < 0.1:
        emails = (*emails, f"{local.lower()}.work@{rng.choice(C.EMAIL_DOMAINS)}")

    region = "US"
    if unicode_name and "\u0600" <= name[0] <= "\u06ff":
        region = "AE"
    elif unicode_name and "\u0590" <= name[0] <= "\u05ff":
        region = "IL"
    elif rng.random() < 0.08:
        region = "GB"
    need_phone = email_kind in ("none", "invalid") or script in ("showcase", "mega")
    phones = (_phone(rng, region),) if need_phone or rng.random() < 0.75 else ()
    if phones and rng.random() < 0.1:
        phones = (*phones, _phone(rng, "US"))

    external = {"ABC12345": str(rng.randint(10000, 99999))} if rng.random() < 0.3 else {}
    attrs: dict[str, Any] = {}
    if rng.random() < 0.8:
        attrs = {"loyaltyTier": rng.choice(("bronze", "silver", "gold", "platinum")),
                 "lifetimeValue": f"{rng.uniform(10, 5000):.2f}",
                 "marketingOptIn": rng.random() < 0.5}
        if rng.random() < 0.3:
            attrs["notes"] = rng.choice(("prefers SMS", "wholesale account", "", "do not call ☎️"))
    style = rng.choices(C.EMAIL_STYLES, weights=(30, 35, 20, 15))[0]
    return Persona(
        index=index, id=world.customer_id(index), name=name,
        address=C.street_address(rng) if rng.random() < 0.6 else None,
        emails=emails, email_kind=email_kind, phones=phones, external_ids=external,
        custom_attributes=attrs, mail_style=style, unicode_name=unicode_name, script=script,
        swap_lines=index == 0 or rng.random() < 0.004,
        long_body=index == 0 or (index > 0 and index % 5000 == 7),
        merged_into=world.merges.get(index),
        facebook_user_id=str(rng.randint(10**15, 10**16 - 1)),
    )


# =========================================================================== timelines


class TimelineFull(Exception):
    """Raised when the next item would fall after the end of history; the timeline stops there."""


@dataclass
class Conversation:
    id: str
    customer_id: str
    created_ms: int
    inbox_id: str
    status: str = "OPEN"
    topic_ids: list[str] = field(default_factory=list)
    agent_id: str | None = None
    closed_ms: int | None = None
    last_by_customer: bool = True
    custom_attributes: list[dict[str, str]] = field(default_factory=list)
    item_count: int = 0

    def rest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "customerId": self.customer_id, "createdAt": fmt_ms(self.created_ms),
                               "inboxId": self.inbox_id, "status": self.final_status(),
                               "topicIds": list(self.topic_ids), "customAttributes": list(self.custom_attributes)}
        if self.agent_id:
            out["agentId"] = self.agent_id
        if self.status == "CLOSED" and self.closed_ms is not None:
            out["closedAt"] = fmt_ms(self.closed_ms)
        return out

    def final_status(self) -> str:
        if self.status == "CLOSED":
            return "CLOSED"
        return "OPEN" if self.last_by_customer else "WAITING"


@dataclass
class EmailThread:
    subject: str
    last_body: C.EmailBody | None = None
    last_sender_name: str = ""
    last_sender_email: str = ""
    last_ms: int = 0


@dataclass(frozen=True)
class AttachmentSpec:
    id: str
    size: int
    magic: bytes
    seed: int


class TimelineBuilder:
    """Builds one customer's items in timestamp order, episode by episode.

    An episode is one contact: an inbound message on a channel, replies, maybe a note, a topic
    change, a channel switch, and usually a close. Later episodes mostly continue the same
    conversation (reopening it), as Gladly keeps one lifelong conversation per customer.
    """

    def __init__(self, world: World, persona: Persona):
        self.w = world
        self.p = persona
        self.rng = random.Random(derive_seed(world.seed, "timeline", persona.index))
        self.items: list[dict[str, Any]] = []
        self.ts: list[int] = []
        self.conversations: list[Conversation] = []
        self.conv: Conversation | None = None
        self.vt = 0
        self.agent: Agent = world.agents[0]
        self.mess: list[tuple[str, Any]] = []
        self.attachments: list[AttachmentSpec] = []
        self.recordings: list[tuple[str, int]] = []
        self.transcripts: list[dict[str, Any]] = []
        self.thread: EmailThread | None = None
        self.session: str = ""
        self.customer_ref = {"id": persona.id, "type": "CUSTOMER"}
        self.long_body_done = not persona.long_body
        channels = ["CHAT", "FACEBOOK", "INSTAGRAM"]
        if persona.valid_email:
            channels.append("EMAIL")
        if persona.phones:
            channels.extend(("SMS", "PHONE", "VOICEMAIL", "WHATSAPP"))
        weights = dict(CHANNEL_WEIGHTS)
        self.channels = [c for c, _ in CHANNEL_WEIGHTS if c in channels]
        self.channel_weights = [weights[c] for c in self.channels]

    # ----------------------------------------------------------------- primitives

    def _now(self) -> int:
        return self.w.real_ms(self.vt)

    def _add(self, gap_ms: int, initiator: dict[str, str], content: dict[str, Any],
             responder: dict[str, str] | None = None, in_conversation: bool = True) -> dict[str, Any]:
        """Append one item `gap_ms` after the previous one; raise TimelineFull past the end."""
        vt = self.vt + max(0, int(gap_ms))
        if vt >= self.w.virtual_span_ms:
            raise TimelineFull
        self.vt = vt
        ts = self.w.real_ms(vt)
        item: dict[str, Any] = {"id": make_id(self.w.seed, "item", self.p.index, len(self.items)),
                                "customerId": self.p.id}
        if in_conversation:
            conv = self._conversation(ts, content)
            item["conversationId"] = conv.id
            conv.item_count += 1
        item["timestamp"] = fmt_ms(ts)
        item["initiator"] = dict(initiator)
        if responder:
            item["responder"] = dict(responder)
        item["content"] = content
        self.items.append(item)
        self.ts.append(ts)
        return item

    def _conversation(self, ts: int, content: dict[str, Any]) -> Conversation:
        if self.conv is None:
            channel = self._channel_of(content)
            self.conv = Conversation(
                id=make_id(self.w.seed, "conversation", self.p.index, len(self.conversations)),
                customer_id=self.w.customer_id(self.p.merged_into) if self.p.merged_into is not None else self.p.id,
                created_ms=ts, inbox_id=self.w.inboxes[CHANNEL_INBOX.get(channel, "Email Support")])
            if self.rng.random() < 0.15:
                self.conv.custom_attributes.append({"id": "orderNumber", "value": str(C.order_number(self.rng))})
            self.conversations.append(self.conv)
        return self.conv

    @staticmethod
    def _channel_of(content: dict[str, Any]) -> str:
        return {"EMAIL": "EMAIL", "CHAT_MESSAGE": "CHAT", "SMS": "SMS", "PHONE_CALL": "PHONE",
                "VOICEMAIL": "VOICEMAIL", "FACEBOOK_MESSAGE": "FACEBOOK", "INSTAGRAM_DIRECT": "INSTAGRAM",
                "WHATSAPP": "WHATSAPP"}.get(content["type"], "EMAIL")

    def _agent_ref(self) -> dict[str, str]:
        return {"id": self.agent.id, "type": "AGENT"}

    def _pick_agent(self) -> None:
        active = self.w.agents_at(self._now())
        self.agent = self.rng.choice(active) if active else self.w.agents[0]

    def _gap(self, channel: str) -> int:
        mean = {"CHAT": 60 * SECOND_MS, "EMAIL": 4 * HOUR_MS, "PHONE": 10 * MINUTE_MS,
                "VOICEMAIL": 30 * MINUTE_MS}.get(channel, 12 * MINUTE_MS)
        return SECOND_MS + int(self.rng.expovariate(1 / mean))

    def _attachments(self, rate: float, large: int = 0) -> list[dict[str, Any]] | None:
        if not large and self.rng.random() >= rate:
            return None
        kind = self.rng.choice(C.ATTACHMENT_KINDS)
        att_id = make_id(self.w.seed, "attachment", self.p.index, len(self.items), len(self.attachments))
        size = large or self.rng.randint(180, 4096)
        self.attachments.append(AttachmentSpec(att_id, size, kind[2], derive_seed(self.w.seed, "att", att_id)))
        n = C.order_number(self.rng)
        return [{"id": att_id, "contentType": kind[0], "filename": kind[1].format(n=n), "fileSize": size}]

    def _text(self, by_customer: bool) -> str:
        if by_customer:
            return C.customer_text(self.rng, 0.5 if self.p.unicode_name else 0.06)
        return C.agent_text(self.rng)

    # ----------------------------------------------------------------- item kinds

    def message(self, channel: str, by_customer: bool, gap: int | None = None, *, text: str | None = None,
                attachment_size: int = 0, inline_image: bool | None = None) -> dict[str, Any]:
        """One message on `channel` from the customer or the current agent."""
        gap = self._gap(channel) if gap is None else gap
        body = text if text is not None else self._text(by_customer)
        who = self.customer_ref if by_customer else self._agent_ref()
        if not by_customer and channel == "CHAT" and self.rng.random() < 0.1:
            who = {"id": "SIDEKICK_V2", "type": "SYSTEM"}
        if channel == "EMAIL":
            item = self._email(gap, by_customer, body, attachment_size, inline_image)
        elif channel == "CHAT":
            c: dict[str, Any] = {"type": "CHAT_MESSAGE", "sessionId": self.session or self._new_session(),
                                 "content": body, "messageType": "TEXT"}
            att = self._attachments(0.015, attachment_size)
            if att:
                c["attachments"] = att
            item = self._add(gap, who, c)
        elif channel == "SMS":
            c = {"type": "SMS", "from": self.p.phones[0].e164 if by_customer else self.w.company_phone,
                 "to": self.w.company_phone if by_customer else self.p.phones[0].e164, "content": body}
            att = self._attachments(0.01, attachment_size)
            if att:
                c["attachments"] = att
            item = self._add(gap, who, c)
        elif channel == "PHONE":
            item = self.phone_call(gap, inbound=by_customer)
        elif channel == "VOICEMAIL":
            item = self.voicemail(gap) if by_customer else self.phone_call(gap, inbound=False)
        elif channel == "FACEBOOK":
            c = {"type": "FACEBOOK_MESSAGE", "pageId": self.w.facebook_page_id, "userId": self.p.facebook_user_id,
                 "content": body}
            att = self._attachments(0.015, attachment_size)
            if att:
                c["attachments"] = att
            item = self._add(gap, who, c)
        elif channel == "INSTAGRAM":
            item = self._add(gap, who, {"type": "INSTAGRAM_DIRECT", "content": body})
        else:  # WHATSAPP
            c = {"type": "WHATSAPP", "content": body}
            att = self._attachments(0.015, attachment_size)
            if att:
                c["attachments"] = att
            item = self._add(gap, who, c)
        if self.conv is not None:
            self.conv.last_by_customer = by_customer
            if not by_customer:
                self.conv.agent_id = self.agent.id
        self._note_mess(item)
        return item

    def _new_session(self) -> str:
        self.session = make_id(self.w.seed, "session", self.p.index, len(self.items))
        return self.session

    def _email(self, gap: int, by_customer: bool, text: str, attachment_size: int,
               inline_image: bool | None) -> dict[str, Any]:
        if self.thread is None:
            subject, opener = self.rng.choice(C.TOPIC_OPENERS)
            n = C.order_number(self.rng)
            self.thread = EmailThread(subject.format(n=n))
            if by_customer:
                text = opener.format(n=n)
        th = self.thread
        if not self.long_body_done and by_customer:
            text = C.long_text(self.rng)
            self.long_body_done = True
        quoted = None
        if th.last_body is not None and self.rng.random() < (0.8 if by_customer else 0.6):
            quoted = C.Quoted(th.last_sender_name, th.last_sender_email, human_when(th.last_ms), th.subject,
                              C.strip_for_quote(th.last_body))
        customer_email = self.p.valid_email or ""
        if by_customer:
            img = self.rng.random() < 0.12 if inline_image is None else inline_image
            body = C.customer_email(self.rng, self.p.mail_style, text, self.p.name.strip(), quoted, img,
                                    self.rng.random() < 0.7)
            c: dict[str, Any] = {"type": "EMAIL", "from": customer_email, "to": [self.w.support_email],
                                 "subject": th.subject if th.last_body is None else f"RE: {th.subject}",
                                 "content": body.text}
            if self.rng.random() < 0.08:
                c["cc"] = [f"partner{self.rng.randint(1, 99)}@{self.rng.choice(C.EMAIL_DOMAINS)}"]
            who = self.customer_ref
        else:
            body = C.agent_email(text, self.agent.name, self.w.company, quoted)
            c = {"type": "EMAIL", "from": self.w.support_email, "to": [customer_email],
                 "subject": f"RE: {th.subject}", "content": body.text}
            if self.rng.random() < 0.03:
                c["bcc"] = [f"escalations@{self.w.domain}"]
            who = self._agent_ref()
        att = self._attachments(0.03, attachment_size)
        if att:
            c["attachments"] = att
        item = self._add(gap, who, c)
        th.last_body, th.last_ms = body, self.ts[-1]
        th.last_sender_name = self.p.name.strip() if by_customer else f"{self.w.company} Support"
        th.last_sender_email = customer_email if by_customer else self.w.support_email
        if body.has_signature and body.is_html:
            self.mess.append(("html_with_signature", {"itemId": item["id"], "style": body.style}))
        if body.has_quote:
            self.mess.append(("html_with_quoted_reply" if body.is_html or body.style == "gladly" else "plain_with_quoted_reply",
                              {"itemId": item["id"], "style": body.style}))
        if body.has_inline_image:
            self.mess.append(("inline_base64_images", {"itemId": item["id"], "style": body.style}))
        return item

    def phone_call(self, gap: int, inbound: bool, *, force_recording: bool = False) -> dict[str, Any]:
        cust_phone = self.p.phones[0].e164 if self.p.phones else "+10000000000"
        c: dict[str, Any] = {"type": "PHONE_CALL",
                             "from": cust_phone if inbound else self.w.company_phone,
                             "to": self.w.company_phone if inbound else cust_phone}
        initiator, responder = (self.customer_ref, self._agent_ref()) if inbound else (self._agent_ref(), self.customer_ref)
        item = self._add(gap, initiator, c, responder)
        ts = self.ts[-1]
        c["startedAt"] = fmt_ms(ts)
        missed = not force_recording and self.rng.random() < 0.08
        if missed:
            item.pop("responder", None)
            c["completedAt"] = fmt_ms(ts + self.rng.randint(5, 40) * SECOND_MS)
            return item
        answered = ts + self.rng.randint(3, 40) * SECOND_MS
        duration = self.rng.randint(20, 1500)
        c["answeredAt"] = fmt_ms(answered)
        c["completedAt"] = fmt_ms(answered + duration * SECOND_MS)
        self._recording(item, c, duration, force_recording)
        if self.conv is not None:
            self.conv.agent_id = self.agent.id
            self.conv.last_by_customer = False
        return item

    def voicemail(self, gap: int) -> dict[str, Any]:
        c: dict[str, Any] = {"type": "VOICEMAIL"}
        item = self._add(gap, self.customer_ref, c)
        c["startedAt"] = fmt_ms(self.ts[-1])
        self._recording(item, c, self.rng.randint(5, 120), True)
        return item

    def _recording(self, item: dict[str, Any], c: dict[str, Any], duration: int, force: bool) -> None:
        r = 0.0 if force else self.rng.random()
        if r < 0.8:
            c["recordingStatus"] = "AVAILABLE"
            c["recordingUrl"] = f"/api/v1/conversation-items/{item['id']}/media/recording"
            c["recordingDuration"] = str(duration) if self.rng.random() < 0.02 else duration
            status = "READY" if force or self.rng.random() < 0.85 else self.rng.choice(("PENDING", "FAILED", "REDACTED"))
            summary: dict[str, Any] = {"status": status, "language": "en-US"}
            if status == "READY":
                summary["summary"] = self.rng.choice(C.CALL_SUMMARIES)
            c["recordingSummary"] = summary
            self.recordings.append((item["id"], duration))
            if c["type"] == "PHONE_CALL" and (force or self.rng.random() < 0.3):
                self._transcript(item, duration)
        elif r < 0.9:
            c["recordingStatus"] = "DELETED"
        else:
            c["recordingStatus"] = "ERROR"

    def _transcript(self, item: dict[str, Any], duration: int) -> None:
        paragraphs = []
        t = 0.0
        for k in range(self.rng.randint(2, 6)):
            length = round(self.rng.uniform(2, max(3.0, duration / 6)), 1)
            speaker = "AGENT" if k % 2 == 0 else "CUSTOMER"
            text = C.agent_text(self.rng) if speaker == "AGENT" else C.customer_text(self.rng, 0.0)
            paragraphs.append({"transcript": text, "speaker": speaker, "startTime": round(t, 1),
                               "endTime": round(t + length, 1)})
            t += length + 0.4
        created = fmt_ms(self.ts[-1] + (duration + 90) * SECOND_MS)
        self.transcripts.append({"itemId": item["id"], "paragraphs": paragraphs, "customerId": self.p.id,
                                 "numberOfSpeakers": 2, "language": "en-US", "createdAt": created, "updatedAt": created})

    def note(self, gap: int | None = None, attachment_size: int = 0) -> None:
        c: dict[str, Any] = {"type": "CONVERSATION_NOTE", "body": C.note_text(self.rng)}
        if not self.long_body_done and self.rng.random() < 0.5:
            c["body"] = C.long_text(self.rng)
            self.long_body_done = True
        att = self._attachments(0.05, attachment_size)
        if att:
            c["attachments"] = att
        item = self._add(self._gap("PHONE") if gap is None else gap, self._agent_ref(), c)
        self._note_mess(item)

    def topic_change(self, gap: int | None = None) -> None:
        conv = self.conv
        if conv is None:
            return
        in_early_history = self._now() < self.w.start_ms + (self.w.end_ms - self.w.start_ms) // 2
        candidates = [t for t in self.w.topics if (not t.disabled or in_early_history) and t.id not in conv.topic_ids]
        if not candidates:
            return
        added = sorted({self.rng.choice(candidates).id for _ in range(self.rng.randint(1, 2))})
        removed: list[str] = []
        if conv.topic_ids and self.rng.random() < 0.15:
            removed = [conv.topic_ids[0]]
        self._add(self._gap("CHAT") if gap is None else gap, self._agent_ref(),
                  {"type": "TOPIC_CHANGE", "addedTopicIds": added, "removedTopicIds": removed})
        conv.topic_ids = [t for t in conv.topic_ids if t not in removed] + added

    def status_change(self, status: str, gap: int, by_agent: bool = True) -> dict[str, Any]:
        who = self._agent_ref() if by_agent else {"id": self.w.automation_id, "type": "AUTOMATION"}
        item = self._add(gap, who, {"type": "CONVERSATION_STATUS_CHANGE", "status": status})
        if self.conv is not None:
            self.conv.status = status
            if status == "CLOSED":
                self.conv.closed_ms = self.ts[-1]
        return item

    def activity(self, in_conversation: bool) -> None:
        kind, title, body = self.rng.choice(C.ACTIVITY_TITLES)
        c: dict[str, Any] = {"type": "CUSTOMER_ACTIVITY", "activityType": kind, "title": title, "body": body,
                             "sourceName": "Order Management"}
        if self.rng.random() < 0.5:
            c["link"] = {"url": f"https://oms.{self.w.domain}/orders/{C.order_number(self.rng)}", "text": "Open in OMS"}
        c["expandByDefault"] = self.rng.random() < 0.2
        item = self._add(self._gap("SMS"), {"id": self.w.api_user_id, "type": "API"}, c,
                         in_conversation=in_conversation)
        c["occurredAt"] = fmt_ms(self.ts[-1] - self.rng.randint(0, 3600) * SECOND_MS)
        c["receivedAt"] = item["timestamp"]
        if not in_conversation:
            self.mess.append(("items_without_conversation", {"itemId": item["id"]}))

    def video_call(self) -> None:
        """A content type from the future the pipeline has never seen: it must keep, not crash."""
        c: dict[str, Any] = {"type": UNKNOWN_CONTENT_TYPE}
        item = self._add(self._gap("PHONE"), self._agent_ref(), c, self.customer_ref)
        c.update({"startedAt": item["timestamp"], "durationSeconds": self.rng.randint(60, 1800),
                  "provider": "Zoom", "joinUrl": f"https://zoom.us/j/{self.rng.randint(10**9, 10**10 - 1)}"})
        self.mess.append(("unknown_content_types", {"itemId": item["id"], "type": UNKNOWN_CONTENT_TYPE}))

    def _note_mess(self, item: dict[str, Any]) -> None:
        c = item["content"]
        text = c.get("content") if c["type"] != "CONVERSATION_NOTE" else c.get("body")
        if isinstance(text, str):
            if len(text) > 25_000:
                self.mess.append(("bodies_over_25000_chars", {"itemId": item["id"], "type": c["type"], "length": len(text)}))
            if C.has_unicode_mess(text):
                self.mess.append(("unicode_emoji_rtl", {"itemId": item["id"], "type": c["type"]}))
        for att in c.get("attachments") or ():
            self.mess.append(("attachments", {"itemId": item["id"], "attachmentId": att["id"], "fileSize": att["fileSize"]}))

    # ----------------------------------------------------------------- episodes

    def _open_for_inbound(self, channel: str, first_text: str | None = None) -> None:
        """The customer writes in: continue (reopening) the lifelong conversation, or start anew."""
        if self.conv is not None and self.conv.status == "CLOSED":
            if self.p.script not in ("mega", "reopen") and self.rng.random() < 0.12:
                self.conv = None  # a fresh conversation
            else:
                closed_at = self.conv.closed_ms or 0
                self.message(channel, True, text=first_text)
                reopen = self.status_change("OPEN", 0 if self.rng.random() < 0.7 else self.rng.randint(1, 900),
                                            by_agent=False)
                if self.ts[-1] - closed_at > DORMANCY_MS:
                    self.mess.append(("reopen_after_dormancy", {
                        "conversationId": self.conv.id, "reopenItemId": reopen["id"],
                        "silentDays": round((self.ts[-1] - closed_at) / DAY_MS, 2)}))
                return
        self.message(channel, True, text=first_text)

    def episode(self, budget: int, channel: str | None = None, force_close: bool | None = None,
                allow_switch: bool = True) -> None:
        """A contact of roughly `budget` items on one channel (sometimes switching channels)."""
        rng = self.rng
        channel = channel or rng.choices(self.channels, weights=self.channel_weights)[0]
        self._pick_agent()
        self.thread = None
        self.session = ""
        start_count = len(self.items)
        self._open_for_inbound(channel)
        sequence = [channel]
        if self.conv is not None and (not self.conv.topic_ids and rng.random() < 0.85 or rng.random() < 0.1):
            self.topic_change()
        n_msgs = max(1, budget - 2)
        switch_at = rng.randint(1, n_msgs) if allow_switch and n_msgs >= 3 and rng.random() < 0.06 else -1
        by_customer = False
        for k in range(n_msgs - 1):
            if k == switch_at:
                others = [c for c in self.channels if c != channel]
                if others:
                    channel = rng.choice(others)
                    self.thread, self.session = None, ""
                    sequence.append(channel)
            if channel == "CHAT" and not by_customer and rng.random() < 0.08:
                self.quick_reply_pair()
                by_customer = True
                continue
            self.message(channel, by_customer)
            by_customer = not by_customer if rng.random() < 0.85 else by_customer
        if rng.random() < 0.12:
            self.note()
        if rng.random() < 0.04:
            self.activity(in_conversation=rng.random() < 0.6)
        if rng.random() < 0.0015:
            self.video_call()
        close = rng.random() < 0.75 if force_close is None else force_close
        if close:
            self.status_change("CLOSED", 0 if rng.random() < 0.3 else rng.randint(1, 600) * SECOND_MS)
        if len(sequence) > 1 and self.conv is not None:
            self.mess.append(("channel_switches", {"conversationId": self.conv.id, "channels": sequence,
                                                   "fromItemId": self.items[start_count]["id"]}))

    def quick_reply_pair(self) -> None:
        prompt, labels = self.rng.choice(C.QUICK_REPLY_PROMPTS)
        options = [{"id": make_id(self.w.seed, "qr", self.p.index, len(self.items), i), "label": lab}
                   for i, lab in enumerate(labels)]
        session = self.session or self._new_session()
        req = self._add(self._gap("CHAT"), self._agent_ref(), {
            "type": "CHAT_MESSAGE", "sessionId": session, "content": prompt, "messageType": "QUICK_REPLY_REQUEST",
            "messageData": {"options": options}})
        chosen = self.rng.choice(options)
        self._add(self._gap("CHAT"), self.customer_ref, {
            "type": "CHAT_MESSAGE", "sessionId": session, "content": chosen["label"],
            "messageType": "QUICK_REPLY_RESPONSE",
            "messageData": {"quickReplyRequest": {"options": options}, "selectedOptionId": chosen["id"],
                            "requestMessageId": req["id"]}})
        if self.conv is not None:
            self.conv.last_by_customer = True

    def _episode_gap(self, remaining_items: int) -> int:
        remaining_span = self.w.virtual_span_ms - self.vt
        episodes_left = max(1.0, remaining_items / 6)
        mean = max(HOUR_MS, remaining_span / (episodes_left + 1))
        return HOUR_MS // 2 + int(self.rng.expovariate(1 / mean))

    # ----------------------------------------------------------------- scripts

    def build(self) -> None:
        """Play the persona's script; stop quietly when history ends."""
        rng = self.rng
        span = self.w.virtual_span_ms
        target = max(1, round(rng.expovariate(1 / max(self.w.items_per_customer, 1.0))))
        target = min(target, int(self.w.items_per_customer * 20) + 1)
        try:
            if self.p.script == "showcase":
                self.vt = rng.randint(0, max(1, span // 20))
                self.showcase()
            elif self.p.script == "mega":
                self.vt = rng.randint(0, max(1, span // 50))
                target = MEGA_MIN_ITEMS + rng.randint(60, 160)
                self._fill(target, channels=("CHAT", "CHAT", "SMS"), chat_mega=True)
                return
            elif self.p.script == "reopen" and span > DORMANCY_MS + DAY_MS:
                self.vt = rng.randint(HOUR_MS, 6 * HOUR_MS)
                self.episode(4, channel="CHAT", force_close=True, allow_switch=False)
                slack = span - self.vt - DORMANCY_MS - 2 * HOUR_MS
                if slack > HOUR_MS:
                    self.vt += DORMANCY_MS + rng.randint(HOUR_MS // 2, min(slack, 2 * DAY_MS))
                    self.episode(4)
            else:
                self.vt = rng.randint(0, int(span * 0.85))
            self._fill(target)
        except TimelineFull:
            pass

    def _fill(self, target: int, channels: tuple[str, ...] | None = None, chat_mega: bool = False) -> None:
        while len(self.items) < target:
            remaining = target - len(self.items)
            if self.items:
                self.vt += self._episode_gap(remaining) if not chat_mega else rng_gap(self.rng, span=self.w.virtual_span_ms - self.vt, left=remaining)
            budget = max(1, min(remaining, 1 + int(self.rng.expovariate(1 / 5))))
            if chat_mega:
                budget = max(1, min(remaining, self.rng.randint(8, 30)))
            channel = self.rng.choice(channels) if channels else None
            if channel and channel not in self.channels:
                channel = None
            try:
                self.episode(budget, channel=channel, force_close=False if chat_mega and self.rng.random() < 0.7 else None,
                             allow_switch=not chat_mega)
            except TimelineFull:
                return

    def showcase(self) -> None:
        """Customer 0: every content type, a channel switch email → chat → phone, big attachments,
        inline images, a >25,000-character body, RTL and emoji text, an unknown content type."""
        self._pick_agent()
        self.thread = None
        self.long_body_done = True  # the long body comes last, in its own email
        self.message("EMAIL", True, gap=0, attachment_size=1_200_000, inline_image=True)
        self.topic_change()
        self.message("EMAIL", False)
        self.message("EMAIL", True, attachment_size=2_400_000)
        self.session = ""
        self.message("CHAT", True, text=C.UNICODE_TEXTS[3].format(n=C.order_number(self.rng)))
        self.quick_reply_pair()
        self.message("CHAT", False)
        self.phone_call(self._gap("PHONE"), inbound=False, force_recording=True)
        self.note(attachment_size=2048)
        self.status_change("CLOSED", 0)
        if self.conv is not None:
            self.mess.append(("channel_switches", {"conversationId": self.conv.id,
                                                   "channels": ["EMAIL", "CHAT", "PHONE"],
                                                   "fromItemId": self.items[0]["id"]}))
        self.vt += 3 * HOUR_MS
        self._open_for_inbound("SMS", first_text=C.UNICODE_TEXTS[4])
        self.message("SMS", False)
        self.voicemail(self._gap("PHONE"))
        self.phone_call(self._gap("PHONE"), inbound=False, force_recording=True)
        self.message("FACEBOOK", True)
        self.message("FACEBOOK", False)
        self.message("INSTAGRAM", True, text="Hi! 👋 is this in stock? 😍")
        self.message("WHATSAPP", True, attachment_size=900)
        self.message("WHATSAPP", False)
        self.activity(in_conversation=False)
        self.activity(in_conversation=True)
        self.video_call()
        self.thread = None
        self.long_body_done = False
        self.message("EMAIL", True)  # the >25,000-character body (persona.long_body)
        self.topic_change()
        self.status_change("CLOSED", self._gap("CHAT"))


def rng_gap(rng: random.Random, span: int, left: int) -> int:
    """Gap between the mega conversation's episodes: spread what is left over the time left."""
    episodes_left = max(1.0, left / 18)
    mean = max(5 * MINUTE_MS, span / (episodes_left + 1) / 3)  # leave room for the episodes themselves
    return MINUTE_MS + int(rng.expovariate(1 / mean))


# =========================================================================== export jobs


@dataclass
class Job:
    id: str
    kind: str  # scheduled | one_time | failed | in_progress
    start_ms: int
    end_ms: int
    updated_ms: int
    updated_at: str
    status: str
    schedule_id: str
    has_items: bool = False

    def files(self) -> list[str]:
        if self.status != "COMPLETED":
            return []
        if self.has_items:
            return list(EXPORT_FILES)
        return ["agents.jsonl", "topics.jsonl"]

    def api(self) -> dict[str, Any]:
        """The Export Job as `GET /export/jobs/{id}` returns it (§2.3)."""
        return {"id": self.id, "scheduleId": self.schedule_id, "status": self.status, "updatedAt": self.updated_at,
                "parameters": {"type": "CONVERSATIONS", "startAt": fmt_ms(self.start_ms), "endAt": fmt_ms(self.end_ms)},
                "files": self.files()}

    def expired(self, as_of_ms: int) -> bool:
        return self.updated_ms <= as_of_ms - RETENTION_DAYS * DAY_MS


@dataclass
class JobPlan:
    scheduled: list[Job]
    window_ms: int
    one_time: Job | None
    extras: list[Job]

    def all(self) -> list[Job]:
        jobs = [*self.scheduled, *([self.one_time] if self.one_time else []), *self.extras]
        return sorted(jobs, key=lambda j: (j.updated_ms, j.id))


def _stamp(rng: random.Random, ms: int, nanos: bool) -> tuple[int, str]:
    return ms, fmt_nanos(ms, rng.randrange(1_000_000)) if nanos else fmt_ms(ms)


def plan_jobs(seed: int, start_ms: int, end_ms: int, as_of_ms: int, frequency: Frequency,
              one_time_job: bool) -> JobPlan:
    """The jobs Gladly would have made: the schedule's, Support's one-time job, and the mishaps."""
    rng = random.Random(derive_seed(seed, "jobs"))
    window = DAY_MS if frequency == "daily" else HOUR_MS
    schedule_id = make_id(seed, "schedule")
    scheduled: list[Job] = []
    for k, ws in enumerate(range(start_ms, end_ms, window)):
        jitter = rng.randrange(55 * MINUTE_MS) if frequency == "daily" else rng.randrange(10 * MINUTE_MS)
        ms, stamp = _stamp(rng, ws + window + 2 * HOUR_MS + jitter, k % 3 == 0)
        scheduled.append(Job(make_id(seed, "job", "scheduled", ws), "scheduled", ws, ws + window, ms, stamp,
                             "COMPLETED", schedule_id))
    one_time = None
    if one_time_job and scheduled:
        first_visible = next((j for j in scheduled if not j.expired(as_of_ms)), scheduled[-1])
        ot_end = min(end_ms, first_visible.start_ms + DAY_MS)
        ms, stamp = _stamp(rng, end_ms - DAY_MS + 3 * HOUR_MS + rng.randrange(HOUR_MS), True)
        one_time = Job(make_id(seed, "job", "one_time", start_ms), "one_time", start_ms, ot_end, ms, stamp,
                       "COMPLETED", schedule_id)
    extras: list[Job] = []
    if scheduled:
        target = scheduled[-2] if len(scheduled) >= 2 else scheduled[-1]
        ms, stamp = _stamp(rng, target.updated_ms - 25 * MINUTE_MS, False)
        extras.append(Job(make_id(seed, "job", "failed", target.start_ms), "failed", target.start_ms, target.end_ms,
                          ms, stamp, "FAILED", schedule_id))
        last = scheduled[-1]
        ms, stamp = _stamp(rng, end_ms + 3 * HOUR_MS + rng.randrange(HOUR_MS), True)
        extras.append(Job(make_id(seed, "job", "in_progress", last.start_ms), "in_progress", last.start_ms,
                          last.end_ms, ms, stamp, "IN_PROGRESS", schedule_id))
    return JobPlan(scheduled, window, one_time, extras)


# =========================================================================== writing


class JobFileWriter:
    """Appends lines to per-job files through a small LRU of open handles, counting lines and
    hashing bytes as they go, so the manifest needs no second read of the files."""

    def __init__(self, layout: DatasetLayout, max_open: int = MAX_OPEN_FILES):
        self.layout = layout
        self.max_open = max_open
        self.handles: OrderedDict[tuple[str, str], IO[bytes]] = OrderedDict()
        self.lines: dict[tuple[str, str], int] = {}
        self.hashes: dict[tuple[str, str], Any] = {}
        self.bytes_written = 0

    def write(self, job_id: str, name: str, lines: Iterable[str]) -> int:
        """Append lines (no trailing newline in each); return the 1-based number of the first."""
        key = (job_id, name)
        fh = self.handles.get(key)
        if fh is None:
            path = self.layout.job_file(job_id, name)
            if key not in self.lines:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.lines[key] = 0
                self.hashes[key] = hashlib.sha256()
                fh = path.open("wb")
            else:
                fh = path.open("ab")
            self.handles[key] = fh
            if len(self.handles) > self.max_open:
                _, old = self.handles.popitem(last=False)
                old.close()
        else:
            self.handles.move_to_end(key)
        first = self.lines[key] + 1
        data_lines = list(lines)
        data = ("\n".join(data_lines) + "\n").encode("utf-8")
        fh.write(data)
        self.hashes[key].update(data)
        self.lines[key] += len(data_lines)
        self.bytes_written += len(data)
        return first

    def close(self) -> None:
        for fh in self.handles.values():
            fh.close()
        self.handles.clear()


class MessLog:
    """One kind of mess: an exact count and up to `cap` concrete locations."""

    def __init__(self, cap: int = MESS_EXAMPLES_CAP):
        self.cap = cap
        self.count = 0
        self.where: list[Any] = []

    def add(self, entry: Any) -> None:
        self.count += 1
        if len(self.where) < self.cap:
            self.where.append(entry)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "complete": self.count == len(self.where), "where": self.where}


MESS_KINDS = (
    "merged_profiles", "customers_without_email", "invalid_emails", "mixed_case_emails",
    "conversations_over_1000_items", "identical_timestamps", "out_of_order_lines", "malformed_lines",
    "unknown_content_types", "bodies_over_25000_chars", "html_with_signature", "html_with_quoted_reply",
    "plain_with_quoted_reply", "inline_base64_images", "attachments", "unicode_emoji_rtl", "unicode_names",
    "reopen_after_dormancy", "channel_switches", "hierarchical_topics", "disabled_topics", "inactive_agents",
    "items_without_conversation", "empty_jobs", "job_status_mess", "overlapping_jobs",
    "recording_duration_as_string", "sidekick_items",
)


class Ledger:
    """Counts and mess, accumulated as customers are written; becomes the manifest."""

    def __init__(self) -> None:
        self.mess: dict[str, MessLog] = {k: MessLog() for k in MESS_KINDS}
        self.content_examples: dict[str, list[str]] = {}
        self.by_type: Counter[str] = Counter()
        self.by_day: Counter[str] = Counter()
        self.items_total = 0
        self.conversations = 0
        self.attachments = 0
        self.attachment_bytes = 0
        self.recordings = 0
        self.transcripts = 0

    def count_item(self, item: dict[str, Any]) -> None:
        ctype = item["content"]["type"]
        self.items_total += 1
        self.by_type[ctype] += 1
        self.by_day[item["timestamp"][:10]] += 1
        examples = self.content_examples.setdefault(ctype, [])
        if len(examples) < 5:
            examples.append(item["id"])
        c = item["content"]
        if ctype in ("PHONE_CALL", "VOICEMAIL") and isinstance(c.get("recordingDuration"), str):
            self.mess["recording_duration_as_string"].add({"itemId": item["id"]})
        if item["initiator"].get("id") == "SIDEKICK_V2":
            self.mess["sidekick_items"].add({"itemId": item["id"]})


def _write_lines(fh: IO[str], values: Iterable[Any]) -> None:
    for v in values:
        fh.write(dumps(v))
        fh.write("\n")


def _rest_profile(world: World, persona: Persona, first_ms: int, last_ms: int) -> dict[str, Any]:
    """The REST customer profile (§4.1); a surviving profile also carries its merged-away emails/phones."""
    rng = random.Random(derive_seed(world.seed, "profile", persona.index))
    emails = [{"original": e, "normalized": e.strip().lower(), "primary": i == 0} for i, e in enumerate(persona.emails)]
    phones = [{"original": p.original, "normalized": p.e164, "regionCode": p.region, "primary": i == 0, "type": p.type}
              for i, p in enumerate(persona.phones)]
    for idx in sorted(k for k, v in world.merges.items() if v == persona.index):
        other = make_persona(world, idx)
        seen = {e["normalized"] for e in emails}
        emails += [{"original": e, "normalized": e.strip().lower(), "primary": False}
                   for e in other.emails if e.strip().lower() not in seen]
        seen_p = {p["normalized"] for p in phones}
        phones += [{"original": p.original, "normalized": p.e164, "regionCode": p.region, "primary": False, "type": ""}
                   for p in other.phones if p.e164 not in seen_p]
    created = first_ms - rng.randint(1, 700) * DAY_MS if rng.random() < 0.7 else first_ms - rng.randint(1, 3600) * SECOND_MS
    updated = max(created + SECOND_MS, last_ms + rng.randint(0, 3600) * SECOND_MS)
    out: dict[str, Any] = {"id": persona.id, "name": persona.name}
    if persona.address:
        out["address"] = persona.address
    out["emails"] = emails
    out["phones"] = phones
    if persona.external_ids:
        out["externalCustomerIds"] = dict(persona.external_ids)
    out["customAttributes"] = dict(persona.custom_attributes)
    out["createdAt"] = fmt_ms(created)
    out["updatedAt"] = fmt_nanos(updated, rng.randrange(1_000_000)) if rng.random() < 0.2 else fmt_ms(updated)
    return out


def _customer_mess(ledger: Ledger, persona: Persona, world: World) -> None:
    if persona.email_kind == "none":
        ledger.mess["customers_without_email"].add({"customerId": persona.id})
    elif persona.email_kind == "invalid":
        ledger.mess["invalid_emails"].add({"customerId": persona.id, "email": persona.emails[0]})
    elif persona.email_kind == "mixed_case":
        ledger.mess["mixed_case_emails"].add({"customerId": persona.id, "email": persona.emails[0]})
    if persona.unicode_name:
        ledger.mess["unicode_names"].add({"customerId": persona.id, "name": persona.name})
    if persona.merged_into is not None:
        ledger.mess["merged_profiles"].add({"mergedId": persona.id,
                                            "survivingId": world.customer_id(persona.merged_into)})


def _route(world: World, plan: JobPlan, ts: list[int]) -> list[tuple[Job, list[int]]]:
    """Which job files each item of a timeline goes to: (job, item positions), in job order."""
    groups: list[tuple[Job, list[int]]] = []
    last: Job | None = None
    for pos, ms in enumerate(ts):
        job = plan.scheduled[(ms - world.start_ms) // plan.window_ms]
        if job is not last:
            groups.append((job, []))
            last = job
        groups[-1][1].append(pos)
    ot = plan.one_time
    if ot is not None:
        positions = [pos for pos, ms in enumerate(ts) if ot.start_ms <= ms < ot.end_ms]
        if positions:
            groups.append((ot, positions))
    return groups


def _serialize(item: dict[str, Any], rng: random.Random) -> str:
    """An item line; now and then with another key order (it carries no meaning, §3.4)."""
    if rng.random() < 0.02:
        item = {k: item[k] for k in ("content", *[k for k in item if k != "content"])}
    return dumps(item)


def _write_customer(world: World, plan: JobPlan, persona: Persona, b: TimelineBuilder, writer: JobFileWriter,
                    ledger: Ledger) -> None:
    """Write one customer's items (with the line-level mess its persona carries) into job files.

    Line-level mess, all recorded with job, file and line number:
    * out of order: in the persona's first scheduled job, two adjacent lines of one conversation
      swapped, so the later line has the earlier timestamp;
    * the showcase customer's first job gets a truncated copy of its first item line and of its
      customer line (the intact lines follow), and its last scheduled job an extra item line
      without `customerId` (not an item: the pipeline must quarantine it).
    """
    rng = random.Random(derive_seed(world.seed, "lines", persona.index))
    customer_line = dumps(persona.export_line())
    groups = _route(world, plan, b.ts)
    last_scheduled = max((g for g, (job, _) in enumerate(groups) if job.kind == "scheduled"), default=-1)
    # Line-level mess goes where the pipeline can still download it: the last group whose job is
    # not yet expired (an expired job's lines would only be reachable through the one-time job).
    mess_group = max(
        (g for g, (job, _) in enumerate(groups) if not job.expired(world.as_of_ms)), default=last_scheduled
    )
    showcase = persona.script == "showcase"
    swapped = False
    for g, (job, positions) in enumerate(groups):
        job.has_items = True
        order = list(positions)
        moved: tuple[int, str] | None = None  # (index in order, item id) of the out-of-order line
        if persona.swap_lines and not swapped and job.kind == "scheduled":
            for k in range(len(order) - 1):
                a, c = b.items[order[k]], b.items[order[k + 1]]
                if (a.get("conversationId") and a.get("conversationId") == c.get("conversationId")
                        and b.ts[order[k]] < b.ts[order[k + 1]]):
                    order[k], order[k + 1] = order[k + 1], order[k]
                    moved, swapped = (k + 1, a["id"]), True
                    break
        lines = [_serialize(b.items[pos], rng) for pos in order]
        cust_lines = [customer_line]
        malformed: list[tuple[int, str, str, str | None]] = []  # (index in lines, file, reason, itemId)
        shift = 0
        if showcase and g == mess_group:
            lines.insert(0, lines[0][: len(lines[0]) // 2])
            malformed.append((0, "conversation_items.jsonl", "truncated_json", b.items[order[0]]["id"]))
            cust_lines.insert(0, customer_line[: len(customer_line) // 2])
            malformed.append((0, "customers.jsonl", "truncated_json", None))
            shift = 1
        if showcase and g == mess_group:
            orphan = dict(b.items[order[-1]])
            orphan.pop("customerId")
            orphan.pop("conversationId", None)
            orphan["id"] = make_id(world.seed, "malformed", persona.index)
            lines.append(dumps(orphan))
            malformed.append((len(lines) - 1, "conversation_items.jsonl", "missing_required_field:customerId",
                              orphan["id"]))
        first_cust = writer.write(job.id, "customers.jsonl", cust_lines)
        first_item = writer.write(job.id, "conversation_items.jsonl", lines)
        for idx, fname, reason, item_id in malformed:
            line_no = (first_item if fname == "conversation_items.jsonl" else first_cust) + idx
            entry: dict[str, Any] = {"job": job.id, "file": fname, "line": line_no, "reason": reason}
            if item_id:
                entry["itemId"] = item_id
            ledger.mess["malformed_lines"].add(entry)
        if moved is not None:
            ledger.mess["out_of_order_lines"].add({"job": job.id, "file": "conversation_items.jsonl",
                                                   "line": first_item + moved[0] + shift, "itemId": moved[1]})


def _timeline_mess(ledger: Ledger, b: TimelineBuilder) -> None:
    """Mess that is a property of the finished timeline: identical timestamps, huge conversations."""
    last: dict[str, tuple[int, str]] = {}
    for item, ms in zip(b.items, b.ts):
        cid = item.get("conversationId")
        if not cid:
            continue
        prev = last.get(cid)
        if prev is not None and prev[0] == ms:
            ledger.mess["identical_timestamps"].add({"conversationId": cid, "itemIds": [prev[1], item["id"]],
                                                     "timestamp": item["timestamp"]})
        last[cid] = (ms, item["id"])
    for conv in b.conversations:
        if conv.item_count > 1000:
            ledger.mess["conversations_over_1000_items"].add({"conversationId": conv.id, "items": conv.item_count})
    for kind, entry in b.mess:
        ledger.mess[kind].add(entry)


def _write_binaries(layout: DatasetLayout, b: TimelineBuilder, ledger: Ledger) -> None:
    for spec in b.attachments:
        rng = random.Random(spec.seed)
        data = C.attachment_bytes(rng, spec.magic, spec.size)
        (layout.attachments_dir / spec.id).write_bytes(data)
        ledger.attachments += 1
        ledger.attachment_bytes += len(data)
    for item_id, seconds in b.recordings:
        (layout.recordings_dir / f"{item_id}.mp3").write_bytes(C.recording_bytes(seconds))
        ledger.recordings += 1


# =========================================================================== entry point


def generate(out: Path, *, customers: int, days: int, seed: int = 0, end: date | None = None,
             frequency: Frequency = "daily", one_time_job: bool | None = None,
             items_per_customer: float = DEFAULT_ITEMS_PER_CUSTOMER,
             progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write a messy Gladly dataset for `customers` customers over the `days` before `end` (UTC).

    Same arguments, same bytes. Returns the manifest (also written to `manifest.json`).
    `one_time_job` defaults to `days > 13`; `progress` receives the number of items written.
    """
    if customers < 0 or days < 1:
        raise ValueError("customers must be >= 0 and days >= 1")
    if frequency not in ("daily", "hourly"):
        raise ValueError(f"frequency must be 'daily' or 'hourly', not {frequency!r}")
    end = end or datetime.now(timezone.utc).date()
    one_time_job = days > 13 if one_time_job is None else one_time_job
    end_ms = date_ms(end)
    start_ms = end_ms - days * DAY_MS
    as_of_ms = end_ms + AS_OF_OFFSET_MS
    layout = DatasetLayout(Path(out))
    for path in (layout.gladly, layout.attachments_dir, layout.recordings_dir, layout.jobs_dir,
                 layout.unthread_workspace.parent):
        path.mkdir(parents=True, exist_ok=True)
    if any(layout.jobs_dir.iterdir()) or layout.customers.exists():
        raise FileExistsError(f"{out} already holds a dataset; generate into an empty folder")

    world = World(
        seed=seed, start_ms=start_ms, end_ms=end_ms, as_of_ms=as_of_ms,
        quiet_day_ms=start_ms + (days - 3) * DAY_MS if days >= 5 else None,
        items_per_customer=items_per_customer, customers=customers,
        agents=build_agents(seed, customers, start_ms, end_ms), topics=build_topics(seed),
        inboxes={name: make_id(seed, "inbox", name) for name in ("Email Support", "Chat", "SMS", "Phone", "Social")},
        merges=build_merges(customers), api_user_id=make_id(seed, "api-user"), automation_id=make_id(seed, "rule", "reopen"),
    )
    plan = plan_jobs(seed, start_ms, end_ms, as_of_ms, frequency, one_time_job)
    writer = JobFileWriter(layout)
    ledger = Ledger()
    _write_snapshots(world, plan, writer)

    reported = 0
    with layout.customers.open("w", encoding="utf-8", newline="\n") as rest_customers, \
            layout.conversations.open("w", encoding="utf-8", newline="\n") as rest_conversations, \
            layout.transcripts.open("w", encoding="utf-8", newline="\n") as rest_transcripts:
        for index in range(customers):
            persona = make_persona(world, index)
            b = TimelineBuilder(world, persona)
            b.build()
            if not b.items:  # every customer has at least one item: a lone inbound message
                b.vt = random.Random(derive_seed(seed, "fallback", index)).randrange(world.virtual_span_ms)
                b.message(b.channels[0], True, gap=0)
            _write_customer(world, plan, persona, b, writer, ledger)
            for item in b.items:
                ledger.count_item(item)
            _timeline_mess(ledger, b)
            _customer_mess(ledger, persona, world)
            if persona.merged_into is None:
                _write_lines(rest_customers, [_rest_profile(world, persona, b.ts[0], b.ts[-1])])
            _write_lines(rest_conversations, (conv.rest() for conv in b.conversations))
            ledger.conversations += len(b.conversations)
            _write_lines(rest_transcripts, b.transcripts)
            ledger.transcripts += len(b.transcripts)
            _write_binaries(layout, b, ledger)
            if progress and ledger.items_total - reported >= 1000:
                reported = ledger.items_total
                progress(reported)
    writer.close()
    if progress:
        progress(ledger.items_total)

    manifest = _finish(layout, world, plan, writer, ledger, frequency, one_time_job, end)
    return manifest


def _write_snapshots(world: World, plan: JobPlan, writer: JobFileWriter) -> None:
    """Every COMPLETED job's agents/topics snapshot: agents who were active at some point in the
    job's window (so agents who left later are in old snapshots, and absent from agents.json), and
    all topics, disabled ones included."""
    topic_lines = [dumps(t.export()) for t in world.topics]
    for job in plan.all():
        if job.status != "COMPLETED":
            continue
        at = job.end_ms
        writer.write(job.id, "agents.jsonl", [dumps(a.export()) for a in world.agents
                                              if a.active_from_ms <= at and (a.active_until_ms is None or a.active_until_ms > job.start_ms)])
        writer.write(job.id, "topics.jsonl", topic_lines)


def _finish(layout: DatasetLayout, world: World, plan: JobPlan, writer: JobFileWriter, ledger: Ledger,
            frequency: Frequency, one_time_job: bool, end: date) -> dict[str, Any]:
    """Write job.json files, the REST singletons, the Unthread seed and the manifest."""
    seed = world.seed
    jobs_out = []
    for job in plan.all():
        write_json(layout.job_dir(job.id) / "job.json", job.api())
        files = job.files()
        jobs_out.append({
            "id": job.id, "kind": job.kind, "startAt": fmt_ms(job.start_ms), "endAt": fmt_ms(job.end_ms),
            "updatedAt": job.updated_at, "status": job.status, "files": files,
            "expired": job.expired(world.as_of_ms),
            "lines": {f: writer.lines.get((job.id, f), 0) for f in files},
            "sha256": {f: writer.hashes[(job.id, f)].hexdigest() for f in files if (job.id, f) in writer.hashes},
        })
        if job.status == "COMPLETED" and not job.has_items:
            ledger.mess["empty_jobs"].add({"job": job.id, "files": files})
        if job.status != "COMPLETED":
            ledger.mess["job_status_mess"].add({"job": job.id, "status": job.status, "files": files,
                                                "dataAlsoIn": next(s.id for s in plan.scheduled if s.start_ms == job.start_ms)})
    if plan.one_time is not None:
        ot = plan.one_time
        overlap = [s.id for s in plan.scheduled if s.start_ms < ot.end_ms and not s.expired(world.as_of_ms)]
        ledger.mess["overlapping_jobs"].add({"job": ot.id, "overlapsVisibleJobs": overlap,
                                             "coversExpiredJobs": [s.id for s in plan.scheduled if s.expired(world.as_of_ms)]})

    for t in world.topics:
        if t.parent_id:
            ledger.mess["hierarchical_topics"].add({"topicId": t.id, "parentId": t.parent_id})
        if t.disabled:
            ledger.mess["disabled_topics"].add({"topicId": t.id})
    for a in world.agents:
        if a.active_until_ms is not None and a.active_until_ms <= world.as_of_ms:
            ledger.mess["inactive_agents"].add({"agentId": a.id, "deactivatedAt": fmt_ms(a.active_until_ms)})

    current_agents = [a for a in world.agents if a.active_at(world.as_of_ms)]
    write_json(layout.agents, [a.export() for a in current_agents])
    write_json(layout.topics, [t.export() for t in world.topics])
    write_json(layout.merges, {world.customer_id(k): world.customer_id(v) for k, v in world.merges.items()})
    write_json(layout.schedule, [{"id": make_id(seed, "schedule"), "frequency": frequency.upper(), "type": "CONVERSATIONS",
                                  "nextStartAt": fmt_ms(world.end_ms), "updatedAt": fmt_nanos(world.start_ms - 90 * DAY_MS, 4321)}])
    write_json(layout.organization, {"id": make_id(seed, "organization"), "name": world.company,
                                     "loginDomain": "northwind-outfitters", "timezone": "America/New_York",
                                     "gladlyUrl": "https://northwind-outfitters.gladly.com"})
    write_json(layout.unthread_workspace, _unthread_workspace(world, current_agents))

    manifest = {
        "formatVersion": FORMAT_VERSION,
        "params": {"seed": seed, "end": end.isoformat(), "days": (world.end_ms - world.start_ms) // DAY_MS,
                   "customers": world.customers, "frequency": frequency, "itemsPerCustomer": world.items_per_customer,
                   "oneTimeJob": one_time_job, "startAt": fmt_ms(world.start_ms), "endAt": fmt_ms(world.end_ms),
                   "asOf": fmt_ms(world.as_of_ms), "retentionDays": RETENTION_DAYS,
                   "quietDay": fmt_ms(world.quiet_day_ms)[:10] if world.quiet_day_ms is not None else None},
        "counts": {
            "customers": world.customers, "survivingCustomers": world.customers - len(world.merges),
            "mergedCustomers": len(world.merges), "agents": len(world.agents), "currentAgents": len(current_agents),
            "topics": len(world.topics), "conversations": ledger.conversations, "items": ledger.items_total,
            "itemsByContentType": dict(sorted(ledger.by_type.items())), "itemsPerDay": dict(sorted(ledger.by_day.items())),
            "attachments": ledger.attachments, "attachmentBytes": ledger.attachment_bytes,
            "recordings": ledger.recordings, "transcripts": ledger.transcripts, "jobs": len(jobs_out),
            "exportBytes": writer.bytes_written,
        },
        "jobs": jobs_out,
        "mess": {**{k: v.to_json() for k, v in ledger.mess.items()},
                 "content_types": {k: ledger.content_examples[k] for k in sorted(ledger.content_examples)}},
        "notes": [
            "items counts are distinct valid items; malformed lines (mess.malformed_lines) are extra lines, not items",
            "job files group lines by customer; within one conversation lines are in timestamp order except mess.out_of_order_lines",
            "a job is expired when updatedAt <= asOf - retentionDays; the one-time job re-covers expired windows and overlaps the first visible one by a day",
            "merged-away customers keep their own items and export lines; their conversations belong to the surviving profile in conversations.jsonl",
            "mess.*.where is capped at %d entries; count is exact; complete says whether where lists them all" % MESS_EXAMPLES_CAP,
        ],
    }
    write_json(layout.manifest, manifest)
    return manifest


def _unthread_workspace(world: World, current_agents: list[Agent]) -> dict[str, Any]:
    """Unthread users for most (not all) current agents, some emails in other casing."""
    rng = random.Random(derive_seed(world.seed, "unthread"))
    users = []
    for i, a in enumerate(current_agents):
        if i % 7 == 6 or (len(current_agents) > 1 and i == len(current_agents) - 1):
            continue  # this agent has no Unthread account yet
        email = a.email
        if i % 4 == 1:
            local, _, dom = email.partition("@")
            email = f"{local.title()}@{dom}" if i % 8 == 1 else email.upper()
        user: dict[str, Any] = {"id": _uuid(world.seed, "unthread-user", a.id), "name": a.name, "email": email}
        if rng.random() < 0.8:
            user["slackId"] = "U0" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(9))
        users.append(user)
    users.append({"id": _uuid(world.seed, "unthread-user", "admin"), "name": "Workspace Admin",
                  "email": f"admin@{world.domain}", "slackId": "U0ADMIN0001"})
    return {
        "users": users,
        "triageChannels": [{"id": "C0TRIAGE001", "name": "support-triage"}],
        "emailInboxes": [{"id": _uuid(world.seed, "unthread-inbox", "support"), "email": world.support_email}],
        "slackChannels": [{"id": "C0SUPPORT01", "name": "support"}],
    }


def _uuid(seed: int, *parts: object) -> str:
    h = hashlib.blake2b("|".join([str(seed), *map(str, parts)]).encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
