"""The Gladly side of the world: the organization (agents with Gladly ids, topics, inboxes,
merged profiles) and `TimelineBuilder`, which renders one customer's episodes as Gladly's
lifelong timeline of conversation items.

Gladly keeps one conversation per customer for life: a new episode usually reopens it (an
automation's OPEN status change right after the customer's message); sometimes it starts a fresh
one. What the neutral world does not say, Gladly adds from its own seeded random source: topic
changes, chat sessions and quick replies, Sidekick replies, call recordings and transcripts,
customer activities, and a content type from the future (`UNKNOWN_CONTENT_TYPE`).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sim.synth import content as C
from sim.synth.world import (
    DAY_MS, MINUTE_MS, SECOND_MS, Agent, Customer, Episode, Turn, World, derive_seed, episodes, fmt_ms, human_when,
    make_id,
)
from sim.synth.world.people import DORMANCY_MS, duplicate_target

UNKNOWN_CONTENT_TYPE = "VIDEO_CALL"
# An episode without a subject mails as this, as mail clients show it (the Support Tools CSV
# layouts could not tell an empty subject from none).
NO_SUBJECT = "(no subject)"
DOMAIN = "northwindoutfitters.com"

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
# world channel -> Gladly channel (a web form or an integration reaches Gladly as email)
CHANNELS = {"email": "EMAIL", "web": "EMAIL", "api": "EMAIL", "chat": "CHAT", "sms": "SMS", "phone": "PHONE",
            "voicemail": "VOICEMAIL", "facebook": "FACEBOOK", "instagram": "INSTAGRAM", "whatsapp": "WHATSAPP"}
CHANNEL_MIX = (("email", 30), ("chat", 30), ("sms", 12), ("phone", 10), ("voicemail", 3), ("facebook", 5),
               ("instagram", 5), ("whatsapp", 5))
CHANNEL_INBOX = {"EMAIL": "Email Support", "CHAT": "Chat", "SMS": "SMS", "PHONE": "Phone",
                 "VOICEMAIL": "Phone", "FACEBOOK": "Social", "INSTAGRAM": "Social", "WHATSAPP": "SMS"}
CONTENT_CHANNEL = {"EMAIL": "EMAIL", "CHAT_MESSAGE": "CHAT", "SMS": "SMS", "PHONE_CALL": "PHONE",
                   "VOICEMAIL": "VOICEMAIL", "FACEBOOK_MESSAGE": "FACEBOOK", "INSTAGRAM_DIRECT": "INSTAGRAM",
                   "WHATSAPP": "WHATSAPP"}


@dataclass(frozen=True)
class GladlyAgent:
    """A world agent with its Gladly id and work address."""

    id: str
    email: str
    person: Agent

    @property
    def name(self) -> str:
        return self.person.name

    @property
    def active_from_ms(self) -> int:
        return self.person.active_from_ms

    @property
    def active_until_ms(self) -> int | None:
        return self.person.active_until_ms

    def active_at(self, ms: int) -> bool:
        return self.person.active_at(ms)

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


@dataclass
class GladlyOrg:
    """The neutral world as one Gladly organization sees it."""

    world: World
    as_of_ms: int
    agents: list[GladlyAgent]
    topics: list[Topic]
    inboxes: dict[str, str]  # inbox name -> id
    merges: dict[int, int]  # merged-away customer index -> surviving index
    company: str = "Northwind Outfitters"
    domain: str = DOMAIN
    company_phone: str = "+18005550123"
    facebook_page_id: str = "104857362910234"
    api_user_id: str = ""
    automation_id: str = ""

    @classmethod
    def of(cls, world: World, as_of_ms: int) -> GladlyOrg:
        seed = world.seed
        agents = [GladlyAgent(make_id(seed, "agent", a.index), f"{a.mailbox}@{DOMAIN}", a) for a in world.agents]
        # a second record of one person is a merged-away profile in Gladly
        merges = {i: t for i in range(world.customers) if (t := duplicate_target(i, world.customers)) is not None}
        return cls(world, as_of_ms, agents, build_topics(seed),
                   {name: make_id(seed, "inbox", name) for name in ("Email Support", "Chat", "SMS", "Phone", "Social")},
                   merges, api_user_id=make_id(seed, "api-user"), automation_id=make_id(seed, "rule", "reopen"))

    @property
    def seed(self) -> int:
        return self.world.seed

    @property
    def start_ms(self) -> int:
        return self.world.start_ms

    @property
    def end_ms(self) -> int:
        return self.world.end_ms

    @property
    def quiet_day_ms(self) -> int | None:
        return self.world.quiet_day_ms

    @property
    def customers(self) -> int:
        return self.world.customers

    @property
    def support_email(self) -> str:
        return f"support@{self.domain}"

    def customer_id(self, index: int) -> str:
        return make_id(self.seed, "customer", index)

    def profile(self, customer: Customer) -> Profile:
        rng = random.Random(derive_seed(self.seed, "gladly-profile", customer.index))
        return Profile(customer, self.customer_id(customer.index), self.merges.get(customer.index),
                       str(rng.randint(10**15, 10**16 - 1)))

    def profiles(self) -> Iterator[Profile]:
        for customer in self.world.people():
            yield self.profile(customer)


@dataclass(frozen=True)
class Profile:
    """A customer as a Gladly profile: its id, where it was merged to, its Facebook user id."""

    customer: Customer
    id: str
    merged_into: int | None
    facebook_user_id: str

    @property
    def index(self) -> int:
        return self.customer.index

    def export_line(self) -> dict[str, Any]:
        """The export `customers.jsonl` shape (§3.3): flat strings, original casing."""
        c = self.customer
        out: dict[str, Any] = {"id": self.id, "name": c.name}
        if c.address:
            out["address"] = c.address
        out["emailAddresses"] = list(c.emails)
        out["phoneNumbers"] = [p.e164 for p in c.phones]
        if c.external_id:
            out["externalCustomerIds"] = {"ABC12345": c.external_id}
        return out


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
    """Renders one customer's episodes as Gladly items, in timestamp order."""

    def __init__(self, org: GladlyOrg, profile: Profile):
        self.o = org
        self.p = profile
        self.c = profile.customer
        self.rng = random.Random(derive_seed(org.seed, "gladly-timeline", profile.index))
        self.items: list[dict[str, Any]] = []
        self.ts: list[int] = []
        self.conversations: list[Conversation] = []
        self.conv: Conversation | None = None
        self.agent: GladlyAgent = org.agents[0]
        self.mess: list[tuple[str, Any]] = []
        self.attachments: list[AttachmentSpec] = []
        self.recordings: list[tuple[str, int]] = []
        self.transcripts: list[dict[str, Any]] = []
        self.thread: EmailThread | None = None
        self.session: str = ""
        self.quick_reply: tuple[str, list[dict[str, str]]] | None = None  # (request item id, options)
        self.customer_ref = {"id": profile.id, "type": "CUSTOMER"}
        self.showcase = self.c.scenario == "showcase"

    # ----------------------------------------------------------------- the clock

    def _place(self, ms: int, before: int | None = None) -> int:
        """A time for an item Gladly adds between the world's turns: not before the last item,
        not on the quiet day, not after `before` (the next turn)."""
        w = self.o.world
        ms = max(ms, self.ts[-1] if self.ts else ms)
        if w.quiet_day_ms is not None and w.quiet_day_ms <= ms < w.quiet_day_ms + DAY_MS:
            ms = w.quiet_day_ms + DAY_MS
        return min(ms, before) if before is not None and before >= (self.ts[-1] if self.ts else before) else ms

    def _gap(self, channel: str) -> int:
        mean = {"CHAT": 60 * SECOND_MS, "PHONE": 10 * MINUTE_MS}.get(channel, 12 * MINUTE_MS)
        return SECOND_MS + int(self.rng.expovariate(1 / mean))

    # ----------------------------------------------------------------- primitives

    def _add(self, ts: int, initiator: dict[str, str], content: dict[str, Any],
             responder: dict[str, str] | None = None, in_conversation: bool = True) -> dict[str, Any]:
        """Append one item at `ts` (never before the previous one); raise TimelineFull past the end."""
        ts = max(ts, self.ts[-1] if self.ts else ts)
        if ts >= self.o.end_ms:
            raise TimelineFull
        item: dict[str, Any] = {"id": make_id(self.o.seed, "item", self.p.index, len(self.items)),
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
            channel = CONTENT_CHANNEL.get(content["type"], "EMAIL")
            merged = self.p.merged_into
            self.conv = Conversation(
                id=make_id(self.o.seed, "conversation", self.p.index, len(self.conversations)),
                customer_id=self.o.customer_id(merged) if merged is not None else self.p.id,
                created_ms=ts, inbox_id=self.o.inboxes[CHANNEL_INBOX.get(channel, "Email Support")])
            if self.rng.random() < 0.15:
                self.conv.custom_attributes.append({"id": "orderNumber", "value": str(C.order_number(self.rng))})
            self.conversations.append(self.conv)
        return self.conv

    def _agent_ref(self) -> dict[str, str]:
        return {"id": self.agent.id, "type": "AGENT"}

    def _attachments(self, turn: Turn) -> list[dict[str, Any]] | None:
        out = []
        for att in turn.attachments:
            att_id = make_id(self.o.seed, "attachment", self.p.index, len(self.items), len(self.attachments))
            self.attachments.append(AttachmentSpec(att_id, att.size, att.magic, derive_seed(self.o.seed, "att", att_id)))
            out.append({"id": att_id, "contentType": att.content_type, "filename": att.filename, "fileSize": att.size})
        return out or None

    # ----------------------------------------------------------------- item kinds

    def message(self, turn: Turn, ts: int) -> dict[str, Any]:
        """One public turn as the item of its channel."""
        channel = CHANNELS[turn.channel]
        by_customer = turn.author == "customer"
        body = turn.text
        who = self.customer_ref if by_customer else self._agent_ref()
        customer_phone = self.c.phones[0].e164 if self.c.phones else "+10000000000"
        if channel == "EMAIL":
            item = self._email(ts, turn)
        elif channel == "CHAT":
            item = self._chat(ts, turn, who)
        elif channel in ("SMS", "FACEBOOK", "INSTAGRAM", "WHATSAPP"):
            c: dict[str, Any] = {
                "SMS": lambda: {"type": "SMS", "from": customer_phone if by_customer else self.o.company_phone,
                                "to": self.o.company_phone if by_customer else customer_phone},
                "FACEBOOK": lambda: {"type": "FACEBOOK_MESSAGE", "pageId": self.o.facebook_page_id,
                                     "userId": self.p.facebook_user_id},
                "INSTAGRAM": lambda: {"type": "INSTAGRAM_DIRECT"},
                "WHATSAPP": lambda: {"type": "WHATSAPP"},
            }[channel]()
            c["content"] = body
            att = self._attachments(turn)
            if att:
                c["attachments"] = att
            item = self._add(ts, who, c)
        elif channel == "PHONE" or not by_customer:
            item = self.phone_call(ts, turn, inbound=by_customer)
        else:
            item = self.voicemail(ts, turn)
        if self.conv is not None:
            self.conv.last_by_customer = by_customer
            if not by_customer:
                self.conv.agent_id = self.agent.id
        self._note_mess(item)
        return item

    def _chat(self, ts: int, turn: Turn, who: dict[str, str]) -> dict[str, Any]:
        session = self.session or self._new_session(len(self.items))
        c: dict[str, Any] = {"type": "CHAT_MESSAGE", "sessionId": session, "content": turn.text, "messageType": "TEXT"}
        if turn.choices:
            options = [{"id": make_id(self.o.seed, "qr", self.p.index, len(self.items), i), "label": label}
                       for i, label in enumerate(turn.choices)]
            c.update(messageType="QUICK_REPLY_REQUEST", messageData={"options": options})
        elif turn.picks_choice is not None and self.quick_reply is not None:
            request_id, options = self.quick_reply
            c.update(messageType="QUICK_REPLY_RESPONSE", content=options[turn.picks_choice]["label"],
                     messageData={"quickReplyRequest": {"options": options},
                                  "selectedOptionId": options[turn.picks_choice]["id"], "requestMessageId": request_id})
        elif turn.author == "agent" and self.rng.random() < 0.1:
            who = {"id": "SIDEKICK_V2", "type": "SYSTEM"}
        att = self._attachments(turn)
        if att:
            c["attachments"] = att
        item = self._add(ts, who, c)
        self.quick_reply = (item["id"], c["messageData"]["options"]) if turn.choices else None
        return item

    def _new_session(self, position: int) -> str:
        self.session = make_id(self.o.seed, "session", self.p.index, position)
        return self.session

    def _email(self, ts: int, turn: Turn) -> dict[str, Any]:
        by_customer = turn.author == "customer"
        th = self.thread
        assert th is not None
        quoted = None
        if th.last_body is not None and turn.quotes_previous:
            quoted = C.Quoted(th.last_sender_name, th.last_sender_email, human_when(th.last_ms), th.subject,
                              C.strip_for_quote(th.last_body))
        customer_email = self.c.mail_address or ""
        if by_customer:
            body = C.customer_email(self.rng, self.c.mail_style, turn.text, self.c.name.strip(), quoted,
                                    turn.inline_image, turn.signature)
            c: dict[str, Any] = {"type": "EMAIL", "from": customer_email, "to": [self.o.support_email],
                                 "subject": th.subject if th.last_body is None else f"RE: {th.subject}",
                                 "content": body.text}
            if self.rng.random() < 0.08:
                c["cc"] = [f"partner{self.rng.randint(1, 99)}@{self.rng.choice(C.EMAIL_DOMAINS)}"]
            who = self.customer_ref
        else:
            body = C.agent_email(turn.text, self.agent.name, self.o.company, quoted)
            c = {"type": "EMAIL", "from": self.o.support_email, "to": [customer_email],
                 "subject": f"RE: {th.subject}", "content": body.text}
            if self.rng.random() < 0.03:
                c["bcc"] = [f"escalations@{self.o.domain}"]
            who = self._agent_ref()
        att = self._attachments(turn)
        if att:
            c["attachments"] = att
        item = self._add(ts, who, c)
        th.last_body, th.last_ms = body, self.ts[-1]
        th.last_sender_name = self.c.name.strip() if by_customer else f"{self.o.company} Support"
        th.last_sender_email = customer_email if by_customer else self.o.support_email
        if body.has_signature and body.is_html:
            self.mess.append(("html_with_signature", {"itemId": item["id"], "style": body.style}))
        if body.has_quote:
            self.mess.append(("html_with_quoted_reply" if body.is_html or body.style == "gladly" else "plain_with_quoted_reply",
                              {"itemId": item["id"], "style": body.style}))
        if body.has_inline_image:
            self.mess.append(("inline_base64_images", {"itemId": item["id"], "style": body.style}))
        return item

    def phone_call(self, ts: int, turn: Turn, inbound: bool) -> dict[str, Any]:
        cust_phone = self.c.phones[0].e164 if self.c.phones else "+10000000000"
        c: dict[str, Any] = {"type": "PHONE_CALL",
                             "from": cust_phone if inbound else self.o.company_phone,
                             "to": self.o.company_phone if inbound else cust_phone}
        initiator, responder = (self.customer_ref, self._agent_ref()) if inbound else (self._agent_ref(), self.customer_ref)
        item = self._add(ts, initiator, c, responder)
        ts = self.ts[-1]
        c["startedAt"] = fmt_ms(ts)
        if not turn.answered and not self.showcase:
            item.pop("responder", None)
            c["completedAt"] = fmt_ms(ts + self.rng.randint(5, 40) * SECOND_MS)
            return item
        answered = ts + self.rng.randint(3, 40) * SECOND_MS
        c["answeredAt"] = fmt_ms(answered)
        c["completedAt"] = fmt_ms(answered + turn.call_seconds * SECOND_MS)
        self._recording(item, c, turn.call_seconds, self.showcase)
        if self.conv is not None:
            self.conv.agent_id = self.agent.id
        return item

    def voicemail(self, ts: int, turn: Turn) -> dict[str, Any]:
        c: dict[str, Any] = {"type": "VOICEMAIL"}
        item = self._add(ts, self.customer_ref, c)
        c["startedAt"] = fmt_ms(self.ts[-1])
        self._recording(item, c, turn.call_seconds, True)
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

    def note(self, ts: int, turn: Turn) -> None:
        c: dict[str, Any] = {"type": "CONVERSATION_NOTE", "body": turn.text}
        att = self._attachments(turn)
        if att:
            c["attachments"] = att
        self._note_mess(self._add(ts, self._agent_ref(), c))

    def topic_change(self, ts: int) -> None:
        conv = self.conv
        if conv is None:
            return
        in_early_history = ts < self.o.start_ms + (self.o.end_ms - self.o.start_ms) // 2
        candidates = [t for t in self.o.topics if (not t.disabled or in_early_history) and t.id not in conv.topic_ids]
        if not candidates:
            return
        added = sorted({self.rng.choice(candidates).id for _ in range(self.rng.randint(1, 2))})
        removed: list[str] = []
        if conv.topic_ids and self.rng.random() < 0.15:
            removed = [conv.topic_ids[0]]
        self._add(ts, self._agent_ref(), {"type": "TOPIC_CHANGE", "addedTopicIds": added, "removedTopicIds": removed})
        conv.topic_ids = [t for t in conv.topic_ids if t not in removed] + added

    def status_change(self, status: str, ts: int, by_agent: bool = True) -> dict[str, Any]:
        who = self._agent_ref() if by_agent else {"id": self.o.automation_id, "type": "AUTOMATION"}
        item = self._add(ts, who, {"type": "CONVERSATION_STATUS_CHANGE", "status": status})
        if self.conv is not None:
            self.conv.status = status
            if status == "CLOSED":
                self.conv.closed_ms = self.ts[-1]
        return item

    def activity(self, ts: int, in_conversation: bool) -> None:
        kind, title, body = self.rng.choice(C.ACTIVITY_TITLES)
        c: dict[str, Any] = {"type": "CUSTOMER_ACTIVITY", "activityType": kind, "title": title, "body": body,
                             "sourceName": "Order Management"}
        if self.rng.random() < 0.5:
            c["link"] = {"url": f"https://oms.{self.o.domain}/orders/{C.order_number(self.rng)}", "text": "Open in OMS"}
        c["expandByDefault"] = self.rng.random() < 0.2
        item = self._add(ts, {"id": self.o.api_user_id, "type": "API"}, c, in_conversation=in_conversation)
        c["occurredAt"] = fmt_ms(self.ts[-1] - self.rng.randint(0, 3600) * SECOND_MS)
        c["receivedAt"] = item["timestamp"]
        if not in_conversation:
            self.mess.append(("items_without_conversation", {"itemId": item["id"]}))

    def video_call(self, ts: int) -> None:
        """A content type from the future the pipeline has never seen: it must keep, not crash."""
        c: dict[str, Any] = {"type": UNKNOWN_CONTENT_TYPE}
        item = self._add(ts, self._agent_ref(), c, self.customer_ref)
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

    def build(self) -> None:
        """Render the customer's episodes until history ends."""
        with contextlib.suppress(TimelineFull):  # the history ended: the timeline stops there
            for ep in episodes(self.o.world, self.c):
                if ep.turns:
                    self.episode(ep)
        if not self.items:  # every customer has at least one item: a lone inbound chat message
            rng = random.Random(derive_seed(self.o.seed, "fallback", self.p.index))
            at = self._place(self.o.world.real_ms(rng.randrange(self.o.world.virtual_span_ms)))
            self.message(Turn(at, "customer", None, "chat", C.customer_text(rng)), at)

    def _open_for_inbound(self, turn: Turn) -> None:
        """The customer writes in: continue (reopening) the lifelong conversation, or start anew."""
        if self.conv is not None and self.conv.status == "CLOSED":
            if self.c.scenario not in ("busy", "returning") and self.rng.random() < 0.12:
                self.conv = None  # a fresh conversation
            else:
                closed_at = self.conv.closed_ms or 0
                self.message(turn, turn.at_ms)
                gap = 0 if self.rng.random() < 0.7 else self.rng.randint(1, 900)
                reopen = self.status_change("OPEN", self._place(self.ts[-1] + gap), by_agent=False)
                if self.ts[-1] - closed_at > DORMANCY_MS:
                    self.mess.append(("reopen_after_dormancy", {
                        "conversationId": self.conv.id, "reopenItemId": reopen["id"],
                        "silentDays": round((self.ts[-1] - closed_at) / DAY_MS, 2)}))
                return
        self.message(turn, turn.at_ms)

    def episode(self, ep: Episode) -> None:
        """One episode: its turns, with what Gladly adds around them, and usually a close."""
        rng = self.rng
        self.agent = self.o.agents[ep.agent]
        self.thread = EmailThread(ep.subject or NO_SUBJECT)
        self.session = ""
        self.quick_reply = None
        start_count = len(self.items)
        turns = ep.turns
        self._open_for_inbound(turns[0])
        following = turns[1].at_ms if len(turns) > 1 else None
        if self.conv is not None and (not self.conv.topic_ids and rng.random() < 0.85 or rng.random() < 0.1):
            self.topic_change(self._place(self.ts[-1] + self._gap("CHAT"), following))
        for k, turn in enumerate(turns[1:], 1):
            if CHANNELS[turn.channel] != CHANNELS[turns[k - 1].channel]:
                self.thread, self.session = EmailThread(ep.subject or NO_SUBJECT), ""
            if turn.visibility == "private":
                self.note(turn.at_ms, turn)
            else:
                self.message(turn, turn.at_ms)
        closing = ep.closed_ms
        if self.showcase and ep.seq == 1:  # activities in and out of the conversation, a video call
            for extra in (lambda t: self.activity(t, False), lambda t: self.activity(t, True), self.video_call):
                extra(self._place(self.ts[-1] + self._gap("SMS"), closing))
        else:
            if rng.random() < 0.04:
                self.activity(self._place(self.ts[-1] + self._gap("SMS"), closing), in_conversation=rng.random() < 0.6)
            if rng.random() < 0.0015:
                self.video_call(self._place(self.ts[-1] + self._gap("PHONE"), closing))
        if closing is not None:
            self.status_change("CLOSED", self._place(closing))
        sequence = _collapse(CHANNELS[ch] for ch in ep.channel_sequence())
        if len(sequence) > 1 and self.conv is not None:
            self.mess.append(("channel_switches", {"conversationId": self.conv.id, "channels": sequence,
                                                   "fromItemId": self.items[start_count]["id"]}))


def _collapse(channels: Any) -> list[str]:
    out: list[str] = []
    for ch in channels:
        if not out or out[-1] != ch:
            out.append(ch)
    return out
