"""Zendesk's records of the world: users (`Person`), and tickets rendered from episodes
(`render_ticket`): each turn a comment (public or private, via the channel it came on), a chat
episode's opening as a chat transcript, a trigger's automatic reply now and then, a ticket solved
by the agent's last reply and closed four days later; then `ticket_version` replays the events
into the versions the API serves. Vendor facts: shared/vendor-apis/zendesk-freshdesk-gmail-exports.md §1."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape, unescape
from typing import Any

from sim.synth import content as C
from sim.synth.world import Customer, Episode, Turn, derive_seed, fmt_s

SUBDOMAIN = "northwind"
BASE_URL = f"https://{SUBDOMAIN}.zendesk.com"
COMPANY = "Northwind Outfitters"
COMPANY_DOMAIN = "northwind-outfitters.com"
SUPPORT_ADDRESS = f"support@{COMPANY_DOMAIN}"

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
CLOSE_AFTER_SOLVED = 4 * DAY
LONG_BODY_CHARS = 40_000  # bodies this long are planted mess

ORG_ID_BASE = 360_000_100_000
AGENT_ID_BASE = 371_000_000_000
USER_ID_BASE = 37_200_000_000_000  # 14 digits, as newer accounts have (names then start past byte 99)
TICKET_ID_BASE = 1000
ATTACHMENT_ID_BASE = 380_000_000_000
ORDER_FIELD_ID = 360_012_345_678
BRAND_ID = 360_000_222_111
FORM_ID = 360_000_333_444
GROUP_ID = 360_000_444_555

TAGS = ("shipping", "returns", "billing", "damaged", "login", "promo", "vip", "exchange", "refund")
CHANNEL_MIX = (("email", 60), ("web", 27), ("chat", 8), ("api", 5))
# world channel -> Zendesk via.channel
VIA = {"email": "email", "web": "web", "chat": "chat", "api": "api", "sms": "sms", "phone": "voice",
       "voicemail": "voice", "facebook": "facebook", "instagram": "instagram_dm", "whatsapp": "whatsapp"}
DYNAMIC_SUBJECT = "{{dc.order_question}}"


def api_url(kind: str, object_id: int) -> str:
    return f"{BASE_URL}/api/v2/{kind}/{object_id}.json"


_DROP_BLOCKS = re.compile(r"<(head|style|script)\b[^>]*>.*?</\1>", re.S | re.I)
_LINE_BREAKS = re.compile(r"<br\s*/?>|</(?:p|div|li|h\d|blockquote|tr)\b[^>]*>", re.I)
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
    locale: str = "en-US"
    kind: str = "normal"  # showcase | soft_deleted | permanently_deleted | delta_new | normal
    active: bool = True
    sender_address: str | None = None  # the address mail from this email-less requester came from
    mess: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, c: Customer) -> Person:
        kind = "delta_new" if c.late else "showcase" if c.scenario == "showcase" else \
            {"soft": "soft_deleted", "permanent": "permanently_deleted"}.get(c.departed or "", "normal")
        person = cls(index=c.index, id=USER_ID_BASE + c.index, name=c.name, email=c.emails[0] if c.emails else None,
                     role="end-user", created_s=c.created_ms // 1000, phone=c.phones[0].e164 if c.phones else None,
                     organization_id=ORG_ID_BASE + c.organization if c.organization is not None else None,
                     locale=c.locale, kind=kind, active=c.departed != "soft", sender_address=c.sender_address)
        if c.unicode_name:
            person.mess.append("non_latin_names")
        if c.email_mess == "none":
            person.mess.append("requesters_without_email")
        elif c.email_mess == "invalid":
            person.mess.append("invalid_emails")
        return person

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
            "shared_phone_number": False if self.phone else None, "locale": self.locale,
            "organization_id": self.organization_id, "role": self.role, "verified": self.email is not None,
            "external_id": None, "tags": [], "active": self.active, "suspended": False, "user_fields": {},
        }


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
    created_s: int
    episode: Episode
    requester: Person
    assignee: Person
    subject: str
    raw_subject: str
    channel: str
    tags: list[str]
    priority: str
    type: str
    events: list[Event] = field(default_factory=list)
    # (kind, comment it is about or None, extra fields): ids are read when recorded, after retiming
    mess: list[tuple[str, dict[str, Any] | None, dict[str, Any]]] = field(default_factory=list)
    solving_comment: dict[str, Any] | None = None  # the agent's reply that solved the ticket, if one did

    def comments(self, until_s: int | None = None) -> list[dict[str, Any]]:
        return [e.comment for e in self.events if e.comment is not None and (until_s is None or e.at <= until_s)]


class TicketRenderer:
    """Renders one episode as a ticket's events, with its own seeded random source."""

    def __init__(self, seed: int, episode: Episode, ticket_id: int, created_s: int, requester: Person,
                 mail_style: str, agents: list[Person], next_attachment: Callable[[], int], dynamic_subject: bool):
        self.seed = seed
        self.mail_style = mail_style  # the requester's mail client
        self.agents = agents
        self.rng = rng = random.Random(derive_seed(seed, "zd-ticket", episode.customer, episode.seq))
        self.next_attachment = next_attachment
        subject = raw_subject = episode.subject
        if dynamic_subject:
            raw_subject, subject = DYNAMIC_SUBJECT, f"Question about order #{episode.order_number}"
        self.t = TicketBuild(
            id=ticket_id, created_s=created_s, episode=episode, requester=requester,
            assignee=agents[episode.agent], subject=subject, raw_subject=raw_subject, channel=VIA[episode.channel],
            tags=sorted(set(rng.sample(TAGS, rng.randint(0, 3)))), priority=rng.choice(("low", "normal", "normal", "high", "urgent")),
            type=rng.choice(("question", "incident", "problem", "task")),
        )

    # -- comments -------------------------------------------------------------------------

    def _via(self, channel: str, sender: Person | None) -> dict[str, Any]:
        if channel == "email" and sender is not None:
            address = sender.email if sender.email is not None else sender.sender_address
            return {"channel": "email", "source": {
                "from": {"address": address, "name": sender.name, "original_recipients": [SUPPORT_ADDRESS]},
                "to": {"name": COMPANY, "address": SUPPORT_ADDRESS}, "rel": None}}
        return {"channel": channel, "source": {"from": {}, "to": {}, "rel": None}}

    def _attachment(self, kind: int, name: str, size: int, inline: bool) -> dict[str, Any]:
        rng = self.rng
        content_type = C.ATTACHMENT_KINDS[kind][0]
        attachment_id = self.next_attachment()
        token = hashlib.blake2b(f"{self.seed}|{attachment_id}".encode(), digest_size=12).hexdigest()
        content_url = f"{BASE_URL}/attachments/token/{token}/?name={name.replace(' ', '+')}"
        image = content_type.startswith("image/")
        return {
            "url": api_url("attachments", attachment_id), "id": attachment_id, "file_name": name,
            "content_url": content_url, "mapped_content_url": content_url, "content_type": content_type,
            "size": size, "width": rng.randint(200, 1600) if image else None,
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

    def _written(self, turn: Turn, author: Person, at: int, *, public: bool, channel: str,
                 mail: bool) -> dict[str, Any]:
        """A turn as a comment: its text (as the customer's mail client rendered it, for mail),
        inline images and links in the HTML, attachments listed."""
        attachments = [self._attachment(a.kind, a.filename, a.size, a.inline) for a in turn.attachments]
        if mail:
            rendered = C.customer_email(self.rng, self.mail_style, turn.text,
                                        author.name, None, False, turn.signature)
            inner = _email_inner(rendered.text) if rendered.is_html else _paragraphs(rendered.text)
        else:
            inner = _paragraphs(turn.text)
        body = turn.text
        for a in attachments:
            if a["inline"]:
                inner = f'<p>Screenshot: <img src="{escape(a["content_url"])}" alt="{escape(a["file_name"])}"></p>' + inner
                body = f"Screenshot: ![]({a['content_url']})\n\n{body}"
        links: list[str] = []
        for label, url in turn.links:
            inner += f'<p>See our <a href="{escape(url)}" rel="noopener noreferrer" target="_blank">{label}</a>.</p>'
            body += f"\n\nSee our [{label}]({url})."
            links.append(url)
        html = _zd_html(inner)
        plain = html_to_text(html) if mail or attachments or links else turn.text
        comment = self._comment(at, author, public=public, html=html, body=body if not mail else plain, plain=plain,
                                channel=channel, attachments=attachments)
        if links:
            self.t.mess.append(("html_bodies_with_links", comment, {"links": links}))
        if len(comment["body"]) >= LONG_BODY_CHARS:
            self.t.mess.append(("long_bodies", comment, {"chars": len(comment["body"])}))
        return comment

    def _customer_comment(self, turn: Turn, at: int, first: bool, force_nbsp: bool = False) -> dict[str, Any]:
        channel = VIA[turn.channel] if first or turn.channel != self.t.episode.channel else \
            ("email" if turn.channel == "email" else "web")
        comment = self._written(turn, self.t.requester, at, public=True, channel=channel, mail=turn.channel == "email")
        if force_nbsp or self.rng.random() < 0.05:
            comment["plain_body"] += "\n&nbsp;"  # as Zendesk's own fixtures show it
            self.t.mess.append(("literal_nbsp_in_plain_body", comment, {}))
        return comment

    def _agent_comment(self, turn: Turn, at: int) -> dict[str, Any]:
        author = self.agents[turn.agent if turn.agent is not None else self.t.episode.agent]
        public = turn.visibility == "public"
        comment = self._written(turn, author, at, public=public, channel="web", mail=False)
        if not public:
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

    def _chat_transcript(self, turns: list[Turn]) -> dict[str, Any]:
        t = self.t
        at = turns[0].at_ms // 1000
        clock = datetime.fromtimestamp(at, tz=timezone.utc)
        lines = [f"Chat started: {clock:%Y-%m-%d %I:%M %p} UTC", ""]
        for turn in turns:
            who = t.requester.name if turn.author == "customer" else self.agents[turn.agent or 0].name
            stamp = datetime.fromtimestamp(turn.at_ms // 1000, tz=timezone.utc)
            lines.append(f"({stamp:%I:%M:%S %p}) {who}: {turn.text}")
        text = "\n".join(lines)
        comment = self._comment(at, t.requester, public=True, html=_zd_html(_paragraphs(text)), body=text, plain=text,
                                channel="chat")
        t.mess.append(("chat_transcripts", comment, {}))
        return comment

    # -- the ticket -----------------------------------------------------------------------

    def build(self, showcase_first: bool) -> TicketBuild:
        """The events, from the ticket's creation on (some may fall past the windows: the writer
        fits them)."""
        t, rng = self.t, self.rng
        turns = list(t.episode.turns)
        if not turns:
            return t
        if t.episode.channel == "chat":  # the chat's opening lines arrive as one transcript
            opening = []
            while turns and turns[0].channel == "chat" and turns[0].visibility == "public" and len(opening) < 3:
                opening.append(turns.pop(0))
            self._add(opening[0].at_ms // 1000, self._chat_transcript(opening), by_agent=False)
        else:
            first = turns.pop(0)
            self._add(first.at_ms // 1000, self._customer_comment(first, first.at_ms // 1000, True, showcase_first),
                      by_agent=False)
        if showcase_first or rng.random() < 0.1:
            at = t.events[0].at + 30
            self._add(at, self._automatic(at), by_agent=True)
        for turn in turns:
            at = turn.at_ms // 1000
            if turn.author == "customer":
                self._add(at, self._customer_comment(turn, at, False), by_agent=False)
            else:
                self._add(at, self._agent_comment(turn, at), by_agent=True)
        last_public = next((e for e in reversed(t.events) if e.comment is not None and e.comment["public"]), None)
        if t.episode.closed_ms is not None and last_public is not None and last_public.by_agent \
                and 4 not in last_public.comment["metadata"].get("flags", ()):  # type: ignore[index]
            t.solving_comment = last_public.comment
            self._add(t.events[-1].at + CLOSE_AFTER_SOLVED, None, status="closed")
        return t

    def _add(self, at: int, comment: dict[str, Any] | None, *, by_agent: bool = False, status: str | None = None) -> None:
        self.t.events.append(Event(at, "comment" if comment else "status", comment, status, by_agent))


def retime(comment: dict[str, Any], at: int, ticket_id: int) -> None:
    comment["id"] = at * 1_000_000 + ticket_id % 1_000_000
    comment["audit_id"] = comment["id"] - 7
    comment["created_at"] = fmt_s(at)


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
    created = t.created_s
    updated = t.events[upto - 1].at if upto else created
    comments = [e.comment for e in t.events[:upto] if e.comment is not None]
    first = t.events[0].comment if t.events and t.events[0].comment else None
    has_agent = any(e.by_agent for e in t.events[:upto])
    via: dict[str, Any] = first["via"] if first else {"channel": t.channel, "source": {"from": {}, "to": {}, "rel": None}}
    fields = [{"id": ORDER_FIELD_ID, "value": str(t.episode.order_number)}]
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
