"""Gladly export lines → canonical records. Pure functions; a bad record raises `RecordError`
with the reason, so the caller can quarantine it (file, line, reason, raw text) and go on.

Line schemas: `shared/vendor-apis/gladly-api.md` §3. Gladly may add fields and content types
without a version change, so unknown fields are kept in `payload` and unknown content types are
carried with their raw type (`source_kind`, canonical kind `other`). Everything a target needs is
put in the contract's fields here (render.py writes the text of calls, activities and unknown
types), so no target reads a Gladly payload.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from migration_pipeline.contract import Agent, Attachment, AuthorType, Customer, Envelope, Item, ItemKind, Topic, Visibility
from migration_pipeline.vendors.gladly import render

SYSTEM = "gladly"

AUTHOR_TYPES: dict[str, AuthorType] = {
    "CUSTOMER": "customer",
    "AGENT": "agent",
    "SYSTEM": "system",
    "AUTOMATION": "system",
    "API": "system",
    "INTERNAL": "external",
    "EXTERNAL": "external",
}

CHANNELS = {
    "EMAIL": "email",
    "CHAT_MESSAGE": "chat",
    "SMS": "sms",
    "PHONE_CALL": "phone",
    "VOICEMAIL": "phone",
    "FACEBOOK_MESSAGE": "social",
    "INSTAGRAM_DIRECT": "social",
    "WHATSAPP": "social",
    "TWITTER": "social",
    "CONVERSATION_NOTE": "note",
    "CUSTOMER_ACTIVITY": "activity",
    "TOPIC_CHANGE": "system",
    "CONVERSATION_STATUS_CHANGE": "system",
}


# Gladly content type -> (canonical kind, visibility). Calls, voicemails and notes are internal
# to the support team; everything else was shown in the customer's timeline.
KINDS: dict[str, tuple[ItemKind, Visibility]] = {
    "EMAIL": ("message", "public"),
    "CHAT_MESSAGE": ("message", "public"),
    "SMS": ("message", "public"),
    "FACEBOOK_MESSAGE": ("message", "public"),
    "INSTAGRAM_DIRECT": ("message", "public"),
    "WHATSAPP": ("message", "public"),
    "TWITTER": ("message", "public"),
    "VOICE_AI_MESSAGE": ("message", "public"),
    "CONVERSATION_NOTE": ("note", "private"),
    "PHONE_CALL": ("call", "private"),
    "VOICEMAIL": ("call", "private"),
    "CUSTOMER_ACTIVITY": ("activity", "public"),
    "CONVERSATION_STATUS_CHANGE": ("status_change", "public"),
    "TOPIC_CHANGE": ("tag_change", "public"),
}
assert set(KINDS) == render.KNOWN_TYPES


class RecordError(ValueError):
    """A record that cannot be staged; the message is the quarantine reason."""


def parse_timestamp(value: Any, field: str = "timestamp") -> datetime:
    """RFC3339 with any number of fractional digits; always returned in UTC."""
    if not isinstance(value, str) or not value:
        raise RecordError(f"{field} is missing or not a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f"{field} is not RFC3339: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise RecordError(f"{field} has no timezone: {value[:40]!r}")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise RecordError(f"{field} is out of range in UTC: {value[:40]!r}") from None


def _require_str(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"{what} has no {key}")
    return value


def parse_item(obj: dict[str, Any]) -> Item:
    item_id = _require_str(obj, "id", "conversation item")
    customer_id = _require_str(obj, "customerId", f"item {item_id}")
    timestamp = parse_timestamp(obj.get("timestamp"))
    content = obj.get("content")
    if not isinstance(content, dict):
        raise RecordError(f"item {item_id} has no content object")
    kind = content.get("type")
    if not isinstance(kind, str) or not kind:
        raise RecordError(f"item {item_id} has no content.type")
    conversation_id = obj.get("conversationId")
    if conversation_id is not None and not isinstance(conversation_id, str):
        raise RecordError(f"item {item_id} has a non-string conversationId")
    initiator = obj.get("initiator") if isinstance(obj.get("initiator"), dict) else {}
    canonical, visibility = KINDS.get(kind, ("other", "public"))
    text, html, subject = _content_text(kind, content)
    if canonical == "call":
        text, html = render.call_note(obj), None
    elif canonical == "activity":
        text, html = render.activity_note(obj), None
    elif canonical == "other":
        text, html = render.unknown_note(obj), None
    elif canonical in ("message", "note"):
        if kind == "CHAT_MESSAGE":
            text, html = _with_quick_replies(obj, text, html)
        if not text and not html:
            text = render.describe(obj)
    status, tags_added, tags_removed = change_from_content(kind, content)
    return Item(
        source_system=SYSTEM,
        source_id=item_id,
        customer_id=customer_id,
        conversation_id=conversation_id or None,
        timestamp=timestamp,
        kind=canonical,
        visibility=visibility,
        source_kind=kind,
        author_type=AUTHOR_TYPES.get(str(initiator.get("type", "")).upper(), "system"),
        author_id=initiator.get("id") if isinstance(initiator.get("id"), str) else None,
        channel=CHANNELS.get(kind),
        subject=subject,
        text=text,
        html=html,
        attachments=_attachments(item_id, content.get("attachments")),
        envelope=_envelope(content) if kind == "EMAIL" else Envelope(),
        transcript_expected=kind in ("PHONE_CALL", "VOICEMAIL") and content.get("recordingStatus") in (None, "AVAILABLE"),
        status_change=status,
        tags_added=tags_added,
        tags_removed=tags_removed,
        payload=obj,
    )


def change_from_content(kind: str, content: dict[str, Any]) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
    """(new status, added topic ids, removed topic ids) of a change item's content (`status`;
    `addedTopicIds` / `removedTopicIds`); nothing for other content types."""
    if kind == "TOPIC_CHANGE":
        def ids(key: str) -> tuple[str, ...]:
            value = content.get(key)
            return tuple(str(t) for t in value if t is not None) if isinstance(value, list) else ()

        return None, ids("addedTopicIds"), ids("removedTopicIds")
    if kind == "CONVERSATION_STATUS_CHANGE" and content.get("status"):
        return str(content["status"]).upper(), (), ()
    return None, (), ()


def _with_quick_replies(obj: dict[str, Any], text: str | None, html: str | None) -> tuple[str | None, str | None]:
    """A chat quick-reply request lists its options after the text; a response says it was one."""
    if html:
        noted = render.quick_reply_note(obj, "")
        return text, html if noted is None else f"{html}<p>{escape(noted.strip())}</p>"
    noted = render.quick_reply_note(obj, text or "")
    return (text if noted is None else noted.strip()), html


def _envelope(content: dict[str, Any]) -> Envelope:
    def addresses(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        return tuple(str(v) for v in value if v) if isinstance(value, list) else ()

    sender = content.get("from")
    return Envelope(
        sender=", ".join(addresses(sender)) or None,
        to=addresses(content.get("to")),
        cc=addresses(content.get("cc")),
        bcc=addresses(content.get("bcc")),
    )


def _looks_like_html(value: str) -> bool:
    head = value.lstrip()[:200].lower()
    return head.startswith("<") or "<html" in head or "<div" in head or "<p>" in head or "<br" in head


def _content_text(kind: str, content: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(plain text, html, subject) from the type-specific fields."""
    subject = content.get("subject") if kind == "EMAIL" else content.get("title") if kind == "CUSTOMER_ACTIVITY" else None
    candidates = [content.get(k) for k in ("body", "content", "bodyPlain", "transcript")]
    strings = [c for c in candidates if isinstance(c, str) and c]
    html = next((s for s in strings if _looks_like_html(s)), None)
    text = next((s for s in strings if not _looks_like_html(s)), None)
    return text, html, subject if isinstance(subject, str) else None


def _attachments(item_id: str, value: Any) -> tuple[Attachment, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RecordError(f"item {item_id}: attachments is not a list")
    out = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise RecordError(f"item {item_id}: attachment without an id")
        out.append(
            Attachment(
                source_id=entry["id"],
                filename=_str_or_none(entry.get("filename")),
                content_type=_str_or_none(entry.get("contentType")),
                size=_byte_count(item_id, entry),
            )
        )
    return tuple(out)


MAX_BYTE_COUNT = 2**63 - 1  # what a BIGINT column (attachment_transfers.bytes) holds


def _byte_count(item_id: str, entry: dict[str, Any]) -> int | None:
    """An attachment's fileSize as an int; None when absent or not a number (the download
    measures it anyway); a number that no file can have is an error."""
    size = entry.get("fileSize")
    if isinstance(size, str) and size.isdigit() and len(size) <= 19:
        size = int(size)
    if isinstance(size, float) and size.is_integer():  # JSON has no NaN/Infinity (core.jsonl)
        size = int(size)
    if isinstance(size, bool) or not isinstance(size, int):
        return None
    if not 0 <= size <= MAX_BYTE_COUNT:
        raise RecordError(f"item {item_id}: attachment {entry['id']} has fileSize {size}, not a byte count")
    return size


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_customer(obj: dict[str, Any]) -> Customer:
    """An export `customers.jsonl` line (flat email/phone strings) or a REST profile (objects)."""
    customer_id = _require_str(obj, "id", "customer")
    emails = _strings(obj.get("emailAddresses")) or _strings(
        [e.get("original") or e.get("normalized") for e in _list(obj.get("emails")) if isinstance(e, dict)]
    )
    phones = _strings(obj.get("phoneNumbers")) or _strings(
        [p.get("normalized") or p.get("original") for p in _list(obj.get("phones")) if isinstance(p, dict)]
    )
    external = obj.get("externalCustomerIds") if isinstance(obj.get("externalCustomerIds"), dict) else {}
    if isinstance(obj.get("externalCustomerId"), str):
        external = {**external, "externalCustomerId": obj["externalCustomerId"]}
    attrs = obj.get("customAttributes") if isinstance(obj.get("customAttributes"), dict) else {}
    return Customer(
        source_system=SYSTEM,
        source_id=customer_id,
        name=obj.get("name") if isinstance(obj.get("name"), str) else None,
        emails=tuple(e for e in emails if e),
        phones=tuple(p for p in phones if p),
        external_ids={str(k): str(v) for k, v in external.items()},
        custom_attributes=attrs,
    )


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def parse_agent(obj: dict[str, Any], active: bool = True) -> Agent:
    agent_id = _require_str(obj, "id", "agent")
    return Agent(SYSTEM, agent_id, _str_or_none(obj.get("name")), _str_or_none(obj.get("emailAddress")), active)


def parse_topic(obj: dict[str, Any]) -> Topic:
    topic_id = _require_str(obj, "id", "topic")
    name = _require_str(obj, "name", f"topic {topic_id}")
    return Topic(SYSTEM, topic_id, name, bool(obj.get("disabled", False)), _str_or_none(obj.get("parentId")))
