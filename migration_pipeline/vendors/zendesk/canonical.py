"""Zendesk records -> the canonical contract (migration_pipeline/contract.py). Pure functions; a
record the contract cannot hold raises `RecordError` with the reason, for the quarantine.

Zendesk is ticket-shaped: a ticket is a `Conversation` (status, channel, assignee, tags), each of
its comments an `Item` in it, the requester its customer. End users become `Customer`s, agents and
admins `Agent`s. Choices where the facts leave room (each has a test):
- a comment's `public` False is a private note; `public` absent is taken as private too, since an
  internal note shown to a customer is the worse mistake (a public reply labelled internal is
  only mislabelled);
- a `VoiceComment` is a call (its body is Zendesk's own call summary, kept as the text);
- the body is `html_body` when present, else `plain_body`, else `body`.
No Dagster import.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from migration_pipeline.contract import (
    Agent,
    Attachment,
    AuthorType,
    Channel,
    Conversation,
    Customer,
    Envelope,
    Item,
)
from migration_pipeline.vendors.zendesk.records import (
    RecordError,
    ZendeskComment,
    ZendeskTicket,
    ZendeskUser,
    ZendeskVia,
)

SYSTEM = "zendesk"

# via.channel -> contract channel (Zendesk's list is long and grows; the rest is None).
CHANNELS: dict[str, Channel] = {
    "email": "email",
    "web": "email",  # the web form: a written request answered by email
    "chat": "chat",
    "chat_transcript": "chat",
    "native_messaging": "chat",
    "messaging": "chat",
    "sms": "sms",
    "text": "sms",
    "voice": "phone",
    "phone": "phone",
    "facebook": "social",
    "twitter": "social",
    "instagram_dm": "social",
    "whatsapp": "social",
}
AGENT_ROLES = frozenset({"agent", "admin"})


def _id(value: int | None) -> str | None:
    return None if value is None else str(value)


def _utc(value: datetime | None, what: str) -> datetime:
    if value is None:
        raise RecordError(f"{what} has no created_at")
    if value.tzinfo is None:
        raise RecordError(f"{what}: created_at has no timezone")
    return value.astimezone(UTC)


def _channel(via: ZendeskVia | None) -> Channel | None:
    return CHANNELS.get((via.channel or "").lower()) if via is not None else None


def _address(entry: Any) -> str | None:
    value = entry.get("address") if isinstance(entry, dict) else None
    return (value.strip() or None) if isinstance(value, str) else None


_NO_ENVELOPE = Envelope(sender=None, to=())


def envelope_of(via: ZendeskVia | None) -> Envelope:
    """The sender and recipients of an email ticket or comment (`via.source.from` / `.to`)."""
    source = via.source if via is not None else None
    if not source:
        return _NO_ENVELOPE
    recipients = source.get("to")
    to = [_address(r) for r in recipients] if isinstance(recipients, list) else [_address(recipients)]
    return Envelope(sender=_address(source.get("from")), to=tuple(a for a in to if a))


def customer(user: ZendeskUser) -> Customer:
    """An end user (any user a ticket names as requester) as a contract customer."""
    return Customer(
        source_system=SYSTEM,
        source_id=str(user.id),
        name=user.name or None,
        emails=(user.email.strip(),) if user.email and user.email.strip() else (),
        phones=(user.phone.strip(),) if user.phone and user.phone.strip() else (),
    )


def agent(user: ZendeskUser) -> Agent:
    return Agent(SYSTEM, str(user.id), user.name or None, user.email or None, bool(user.active is not False))


def is_agent(user: ZendeskUser) -> bool:
    return (user.role or "").lower() in AGENT_ROLES


# Kept out of `payload`: the comments are items of their own, the bodies are the item's `text` and
# `html` (the archived line, which `file_name`/`line_no` point at, keeps every byte).
TICKET_PAYLOAD_EXCLUDES = frozenset({"comments"})
COMMENT_PAYLOAD_EXCLUDES = frozenset({"body", "html_body", "plain_body"})


def _payload(record: ZendeskTicket | ZendeskComment, raw: Mapping[str, Any] | None, exclude: frozenset[str]) -> dict[str, Any]:
    """The record as the source gave it, for the record: its parsed JSON when at hand (cheap),
    else the typed record dumped; without `exclude`."""
    if raw is None:
        return record.model_dump(mode="json", exclude=set(exclude))
    return {k: v for k, v in raw.items() if k not in exclude}


def conversation(ticket: ZendeskTicket, raw: Mapping[str, Any] | None = None) -> Conversation:
    """A ticket as a contract conversation; `raw` is its parsed JSON line, if at hand (payload)."""
    what = f"ticket {ticket.id}"
    if ticket.requester_id is None:
        raise RecordError(f"{what} has no requester_id")
    return Conversation(
        source_system=SYSTEM,
        source_id=str(ticket.id),
        customer_id=str(ticket.requester_id),
        created_at=_utc(ticket.created_at, what),
        updated_at=ticket.updated_at.astimezone(UTC) if ticket.updated_at and ticket.updated_at.tzinfo else None,
        subject=ticket.subject,
        status=ticket.status.lower() if ticket.status else None,
        channel=_channel(ticket.via),
        assignee_id=_id(ticket.assignee_id),
        tags=tuple(ticket.tags),
        envelope=envelope_of(ticket.via),
        payload=_payload(ticket, raw, TICKET_PAYLOAD_EXCLUDES),
    )


def item(ticket: ZendeskTicket, comment: ZendeskComment, roles: Mapping[int, str],
         raw: Mapping[str, Any] | None = None) -> Item:
    """One comment of `ticket` as a contract item; `roles` maps user ids to Zendesk roles (users
    the export does not hold are absent: their author type is guessed from the requester); `raw` is
    the comment's parsed JSON, if at hand (payload)."""
    what = f"ticket {ticket.id} comment {comment.id}"
    if ticket.requester_id is None:
        raise RecordError(f"ticket {ticket.id} has no requester_id")
    source_kind = comment.type or "Comment"
    call = source_kind == "VoiceComment"
    private = comment.public is not True
    return Item(
        source_system=SYSTEM,
        source_id=str(comment.id),
        customer_id=str(ticket.requester_id),
        conversation_id=str(ticket.id),
        timestamp=_utc(comment.created_at, what),
        kind="call" if call else "note" if private else "message",
        visibility="private" if private else "public",
        source_kind=source_kind,
        author_type=_author_type(comment.author_id, ticket.requester_id, roles),
        author_id=_id(comment.author_id),
        channel="phone" if call else _channel(comment.via) or _channel(ticket.via),
        subject=ticket.subject,
        text=comment.plain_body if comment.plain_body is not None else comment.body,
        html=None if call else comment.html_body or None,
        attachments=tuple(
            Attachment(str(a.id), a.file_name, a.content_type, a.size, a.content_url) for a in comment.attachments
        ),
        envelope=envelope_of(comment.via),
        payload=_payload(comment, raw, COMMENT_PAYLOAD_EXCLUDES),
    )


def _author_type(author_id: int | None, requester_id: int, roles: Mapping[int, str]) -> AuthorType:
    if author_id is None or author_id == -1:  # -1: Zendesk's system user
        return "system"
    role = (roles.get(author_id) or "").lower()
    if role in AGENT_ROLES:
        return "agent"
    if role == "end-user" or author_id == requester_id:
        return "customer"
    return "external"  # a CC'd end user, a light agent, or a user the export does not hold
