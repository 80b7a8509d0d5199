"""The canonical contract: what every source writes to staging and every target reads from it.

A source adapter (vendors/<system>/...) turns its system's records into these; a target loader
reads only these (the staged rows of lib/staging/db.py carry the same fields) and never a source
payload. `payload` keeps the source record for the record (trace, audit, a later re-stage) and is
never read past the source's own package. No Dagster import.

Item kinds are the target-facing meaning, `source_kind` the source's own type (Gladly's EMAIL,
PHONE_CALL ..., Zendesk's Comment ...), kept verbatim also for types the adapter does not know
(kind `other`). Bodies: `html` when the source has markup, `text` otherwise; for the kinds a
source must summarise (call, activity, other) `text` is the source's rendering of the record,
in plain text with light markdown emphasis. Status and tag changes carry what they changed in
`status_change` / `tags_added` / `tags_removed`, rendered by the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

AuthorType = Literal["customer", "agent", "system", "external"]
ItemKind = Literal["message", "note", "call", "activity", "status_change", "tag_change", "other"]
Visibility = Literal["public", "private"]
Channel = Literal["email", "chat", "sms", "phone", "social", "note", "activity", "system"]

ITEM_KINDS: frozenset[str] = frozenset(get_args(ItemKind))
AUTHOR_TYPES: frozenset[str] = frozenset(get_args(AuthorType))
VISIBILITIES: frozenset[str] = frozenset(get_args(Visibility))
CHANNELS: frozenset[str] = frozenset(get_args(Channel))
CHANGE_KINDS = ("status_change", "tag_change")  # the kinds whose effect the splitting rules read

# The systems a pair may name; the id of every staged record is unique within its system.
SOURCE_SYSTEMS = {"gladly": "Gladly", "zendesk": "Zendesk"}


def system_name(source_system: str) -> str:
    """How a report or a note names a source system (`gladly` -> `Gladly`)."""
    return SOURCE_SYSTEMS.get(source_system, source_system.title())


@dataclass(frozen=True)
class Customer:
    """A person (or organisation) of the source, with every email and phone it holds."""

    source_system: str
    source_id: str
    name: str | None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    external_ids: dict[str, str] = field(default_factory=dict)
    custom_attributes: dict[str, Any] = field(default_factory=dict)
    merged_into: str | None = None  # the source id this profile was merged into, when known

    @property
    def primary_email(self) -> str | None:
        return self.emails[0] if self.emails else None


@dataclass(frozen=True)
class Agent:
    source_system: str
    source_id: str
    name: str | None
    email: str | None
    active: bool = True


@dataclass(frozen=True)
class Topic:
    """A tag (Gladly calls them topics); `parent_id` for a hierarchy, None when flat."""

    source_system: str
    source_id: str
    name: str
    disabled: bool = False
    parent_id: str | None = None


@dataclass(frozen=True)
class Attachment:
    """A file's locator in the source: its id, name, type and size as the source states them,
    and its download address where the source gives one (else the source fetches it by id)."""

    source_id: str
    filename: str | None
    content_type: str | None
    size: int | None
    url: str | None = None


@dataclass(frozen=True)
class Envelope:
    """The addresses of an email (or any message that names them)."""

    sender: str | None = None
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any] | None:
        if not (self.sender or self.to or self.cc or self.bcc):
            return None
        return {"from": self.sender, "to": list(self.to), "cc": list(self.cc), "bcc": list(self.bcc)}


@dataclass(frozen=True)
class Conversation:
    """A ticket as a ticket-shaped source keeps it (Zendesk, Freshdesk ...), passed through to the
    target; Gladly has none (its lifelong timelines are split into tickets by the pair)."""

    source_system: str
    source_id: str
    customer_id: str
    created_at: datetime
    updated_at: datetime | None = None
    subject: str | None = None
    status: str | None = None  # the source's own status, lower case (the pair's mappings translate it)
    channel: Channel | None = None
    assignee_id: str | None = None
    tags: tuple[str, ...] = ()  # tag names as the source shows them
    envelope: Envelope = Envelope()  # who wrote in, for a customer with no address of their own
    payload: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.channel is not None and self.channel not in CHANNELS:
            raise ValueError(f"conversation {self.source_id}: channel {self.channel!r} is not one of {sorted(CHANNELS)}")


@dataclass(frozen=True)
class Item:
    """One entry of a customer's history: a message, note, call, activity, status or tag change."""

    source_system: str
    source_id: str
    customer_id: str
    conversation_id: str | None
    timestamp: datetime
    kind: ItemKind
    visibility: Visibility
    source_kind: str  # the source's own type, verbatim
    author_type: AuthorType
    author_id: str | None
    channel: Channel | None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    envelope: Envelope = Envelope()
    # A call whose transcript the source may hold: fetched at load time (it is large, and only
    # for calls not yet loaded) through the pair's transcript hook.
    transcript_expected: bool = False
    # What a status or tag change changed, as the splitting rules and the targets read it.
    status_change: str | None = None  # the new status, upper case (OPEN / WAITING / CLOSED ...)
    tags_added: tuple[str, ...] = ()
    tags_removed: tuple[str, ...] = ()
    payload: dict[str, Any] = field(default_factory=dict)  # the source record, never read by a target

    def __post_init__(self) -> None:
        # The contract's closed vocabularies: a source adapter that writes anything else is a bug.
        if self.kind not in ITEM_KINDS:
            raise ValueError(f"item {self.source_id}: kind {self.kind!r} is not one of {sorted(ITEM_KINDS)}")
        if self.visibility not in VISIBILITIES:
            raise ValueError(f"item {self.source_id}: visibility {self.visibility!r} is not public or private")
        if self.author_type not in AUTHOR_TYPES:
            raise ValueError(f"item {self.source_id}: author_type {self.author_type!r} is not one of {sorted(AUTHOR_TYPES)}")
        if self.channel is not None and self.channel not in CHANNELS:
            raise ValueError(f"item {self.source_id}: channel {self.channel!r} is not one of {sorted(CHANNELS)}")
