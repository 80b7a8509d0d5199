"""The records the Gladly source stages and the Unthread target reads today.

Not yet the canonical contract (issue 14): `Item.kind` is the source's own content type (Gladly's
EMAIL, PHONE_CALL ...), `payload` keeps the source record and the Unthread loader still reads it,
and ids carry no source system. The contract will replace this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

AuthorType = Literal["customer", "agent", "system", "external"]


@dataclass(frozen=True)
class Customer:
    source_id: str
    name: str | None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    external_ids: dict[str, str] = field(default_factory=dict)
    custom_attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def primary_email(self) -> str | None:
        return self.emails[0] if self.emails else None


@dataclass(frozen=True)
class Agent:
    source_id: str
    name: str | None
    email: str | None
    active: bool = True


@dataclass(frozen=True)
class Topic:
    source_id: str
    name: str
    disabled: bool = False
    parent_id: str | None = None


@dataclass(frozen=True)
class Attachment:
    source_id: str
    filename: str | None
    content_type: str | None
    size: int | None


@dataclass(frozen=True)
class Item:
    """One entry of a customer's history: a message, call, note, status or topic change."""

    source_id: str
    customer_id: str
    conversation_id: str | None
    timestamp: datetime
    kind: str  # the source's content type, e.g. EMAIL, PHONE_CALL; unknown types kept verbatim
    author_type: AuthorType
    author_id: str | None
    channel: str | None  # email / chat / sms / phone / social / note / system
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    payload: dict[str, Any] = field(default_factory=dict)  # the source record, for fidelity later
    # What a status or topic change changed, as the splitting rules read it.
    status_change: str | None = None  # the new status, upper case (OPEN / WAITING / CLOSED ...)
    topics_added: tuple[str, ...] = ()
    topics_removed: tuple[str, ...] = ()
