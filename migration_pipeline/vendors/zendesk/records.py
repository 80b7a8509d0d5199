"""Zendesk's records as its API and its full JSON export show them (facts:
`shared/vendor-apis/zendesk-freshdesk-gmail-exports.md` §1.3-1.5), typed, not yet mapped to the
canonical model. No Dagster import.

Lenient where Zendesk may add fields: they are kept as extras, and so are the fields the
migration does not use (only the declared ones are checked). Strict where a wrong value would be
taken for another record: ids are JSON integers, never strings or booleans. Every field but `id`
may be absent: what a line leaves out (UNCONFIRMED which fields the export carries) is None, so a
missing value is never mistaken for a real one (`public` None is "not said", not "public").
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

RecordKind = Literal["tickets", "users", "organizations"]
# An API-shaped object names its type in its own `url`: .../api/v2/tickets/123.json (§1.2).
_KIND_IN_URL = re.compile(r"/api/v2/(tickets|users|organizations)/[^/?#]+\.json")
# How many field problems a reason lists before "and N more".
_REASON_FIELDS = 3


class _Lenient(BaseModel):
    """Zendesk adds fields without a version change: keep them, check only what is used."""

    model_config = ConfigDict(extra="allow")


class ZendeskVia(_Lenient):
    """How a ticket or comment arrived: `channel` (email, web, chat, api, system...) and `source`
    (`from`/`to`/`rel`; for email `from.address` is the sender)."""

    channel: str | None = None
    source: dict[str, Any] | None = None

    @property
    def from_address(self) -> str | None:
        """The email sender (`source.from.address`), the fallback for a requester without email."""
        sender = (self.source or {}).get("from")
        address = sender.get("address") if isinstance(sender, dict) else None
        return address if isinstance(address, str) and address.strip() else None


class ZendeskAttachment(_Lenient):
    id: StrictInt
    file_name: str | None = None
    content_url: str | None = None
    content_type: str | None = None
    size: int | None = None
    inline: bool | None = None  # an image shown inside the body


class ZendeskComment(_Lenient):
    """One comment: `public` False is an internal note; bodies in three renderings (§1.4)."""

    id: StrictInt
    type: str | None = None  # Comment | VoiceComment
    author_id: StrictInt | None = None
    body: str | None = None
    html_body: str | None = None
    plain_body: str | None = None
    public: bool | None = None
    attachments: list[ZendeskAttachment] = Field(default_factory=list)
    via: ZendeskVia | None = None
    metadata: dict[str, Any] | None = None
    created_at: datetime | None = None


class ZendeskTicket(_Lenient):
    """A ticket. `comments` is None when the line or answer carries none (whether the export
    embeds them is UNCONFIRMED), a list (maybe empty) when it does."""

    id: StrictInt
    url: str | None = None
    subject: str | None = None
    raw_subject: str | None = None  # may hold {{dc.*}} placeholders: the title is `subject`
    description: str | None = None
    status: str | None = None
    priority: str | None = None
    type: str | None = None
    requester_id: StrictInt | None = None
    submitter_id: StrictInt | None = None
    assignee_id: StrictInt | None = None
    organization_id: StrictInt | None = None
    group_id: StrictInt | None = None
    tags: list[str] = Field(default_factory=list)
    via: ZendeskVia | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    generated_timestamp: int | None = None  # incremental export only
    comments: list[ZendeskComment] | None = None


class ZendeskUser(_Lenient):
    """A user: `role` end-user, agent or admin; `email` may be None (phone, chat, social)."""

    id: StrictInt
    url: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    role: str | None = None
    organization_id: StrictInt | None = None
    active: bool | None = None
    suspended: bool | None = None
    verified: bool | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ZendeskOrganization(_Lenient):
    id: StrictInt
    url: str | None = None
    name: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


ZendeskRecord = ZendeskTicket | ZendeskUser | ZendeskOrganization
MODELS: dict[RecordKind, type[ZendeskRecord]] = {
    "tickets": ZendeskTicket,
    "users": ZendeskUser,
    "organizations": ZendeskOrganization,
}


class RecordError(ValueError):
    """An object that cannot be a Zendesk record; the message is the reason."""


def kind_of(obj: dict[str, Any]) -> RecordKind | None:
    """tickets, users or organizations, as the object's own `url` says; None if it says none."""
    url = obj.get("url")
    found = _KIND_IN_URL.search(url) if isinstance(url, str) else None
    return found.group(1) if found else None  # type: ignore[return-value]


def parse_record(model: type[BaseModel], obj: dict[str, Any], what: str) -> Any:
    """`obj` as `model`, or `RecordError` naming `what` (e.g. "ticket 123") and the first bad
    fields, never their values (a value can be a whole body)."""
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False, include_context=False)
        listed = "; ".join(f"{'.'.join(map(str, p['loc'])) or 'record'}: {p['msg']}" for p in problems[:_REASON_FIELDS])
        more = f"; and {len(problems) - _REASON_FIELDS} more" if len(problems) > _REASON_FIELDS else ""
        raise RecordError(f"{what}: {listed}{more}") from None


def describe(kind: str, obj: dict[str, Any]) -> str:
    """"ticket 123" (the id shortened if it is long), for reasons."""
    return f"{kind.removesuffix('s')} {_short(obj.get('id'))}"


def export_record(obj: dict[str, Any]) -> ZendeskRecord:
    """An export line's object as its record, or `RecordError`: no id, a `url` naming no known
    type, or a field of the wrong type."""
    if obj.get("id") is None:
        raise RecordError("no id")
    kind = kind_of(obj)
    if kind is None:
        raise RecordError(f"unknown type: its url {_short(obj.get('url'))} names no tickets/, users/ or organizations/ record")
    return parse_record(MODELS[kind], obj, describe(kind, obj))


def _short(value: Any, limit: int = 120) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[:limit] + "…"
