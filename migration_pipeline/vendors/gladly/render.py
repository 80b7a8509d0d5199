"""The text a Gladly record becomes in the contract where it is not a plain message body: calls and
voicemails, customer activities, chat quick replies, content types this code has never seen, and
messages with no body. Rendered once at staging (contract.Item.text), so no target reads a Gladly
payload. Pure functions over the Gladly record; no HTTP, no Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from migration_pipeline.lib.notes import duration_text

# Every content type in the Gladly facts file (export schema plus the item API's extra two).
KNOWN_TYPES = frozenset({
    "CHAT_MESSAGE", "CONVERSATION_STATUS_CHANGE", "CUSTOMER_ACTIVITY", "EMAIL", "FACEBOOK_MESSAGE",
    "CONVERSATION_NOTE", "PHONE_CALL", "SMS", "TOPIC_CHANGE", "VOICEMAIL", "INSTAGRAM_DIRECT", "WHATSAPP",
    "VOICE_AI_MESSAGE", "TWITTER",
})


def _when(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(value: Any) -> int | None:
    """Gladly's recordingDuration: an integer in the export, sometimes a string in the items API."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value.strip()))
        except ValueError:
            return None
    return None


def _elapsed(start: Any, end: Any) -> int | None:
    try:
        return int((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    except (TypeError, ValueError):
        return None


def direction(payload: Mapping[str, Any]) -> str:
    """inbound / outbound from who started the call (initiator), else unknown."""
    initiator = str((payload.get("initiator") or {}).get("type", "")).upper()
    if initiator == "CUSTOMER":
        return "inbound (customer called)"
    if initiator in ("AGENT", "API", "AUTOMATION", "SYSTEM"):
        return "outbound (agent called)"
    return "direction unknown"


def call_note(payload: Mapping[str, Any]) -> str:
    """A PHONE_CALL or VOICEMAIL as a note: direction, numbers, times, duration and recording
    summary (the transcript, fetched at load time, is appended by lib/notes.py)."""
    c = payload.get("content") or {}
    kind = c.get("type")
    lines = []
    if kind == "VOICEMAIL":
        lines.append("📞 **Voicemail** left by the customer")
    else:
        lines.append(f"📞 **Phone call** · {direction(payload)}")
    numbers = [f"from {c['from']}" if c.get("from") else "", f"to {c['to']}" if c.get("to") else ""]
    if any(numbers):
        lines.append("Numbers: " + " ".join(n for n in numbers if n))
    times = [(label, _when(c.get(key))) for label, key in (("started", "startedAt"), ("answered", "answeredAt"), ("completed", "completedAt"))]
    shown = [f"{label} {value}" for label, value in times if value]
    if shown:
        lines.append("Times: " + " · ".join(shown))
    if kind == "PHONE_CALL" and not c.get("answeredAt"):
        lines.append("Not answered (missed call)")
    length = seconds(c.get("recordingDuration"))
    if length is None and c.get("answeredAt") and c.get("completedAt"):
        length = _elapsed(c["answeredAt"], c["completedAt"])
    if length is not None:
        lines.append(f"Duration: {duration_text(length)}")
    if c.get("recordingStatus"):
        lines.append(f"Recording: {c['recordingStatus']}" + (f" ({c['recordingUrl']})" if c.get("recordingUrl") else ""))
    summary = c.get("recordingSummary") if isinstance(c.get("recordingSummary"), dict) else {}
    if summary.get("summary"):
        lines.append(f"Summary: {summary['summary']}")
    elif summary.get("status"):
        lines.append(f"Summary: {summary['status']}")
    return "\n".join(lines)


def activity_note(payload: Mapping[str, Any]) -> str:
    """A CUSTOMER_ACTIVITY card: title, body and link kept, with its kind and source."""
    c = payload.get("content") or {}
    meta = " · ".join(str(v) for v in (c.get("activityType"), c.get("sourceName") and f"from {c['sourceName']}") if v)
    lines = [f"📋 **{c.get('title') or 'Customer activity'}**" + (f" ({meta})" if meta else "")]
    if c.get("body"):
        lines.append("")
        lines.append(str(c["body"]).strip())
    link = c.get("link") if isinstance(c.get("link"), dict) else None
    if link and link.get("url"):
        lines.append("")
        lines.append(f"🔗 [{link.get('text') or link['url']}]({link['url']})")
    when = _when(c.get("occurredAt"))
    if when:
        lines.append(f"Occurred {when}")
    return "\n".join(lines)


def quick_reply_note(payload: Mapping[str, Any], text: str) -> str | None:
    c = payload.get("content") or {}
    data = c.get("messageData") if isinstance(c.get("messageData"), dict) else {}
    if c.get("messageType") == "QUICK_REPLY_REQUEST":
        options = [o.get("label") for o in data.get("options") or () if isinstance(o, dict)]
        return text + ("\n\nOptions: " + " · ".join(f"`{o}`" for o in options if o) if options else "")
    if c.get("messageType") == "QUICK_REPLY_RESPONSE":
        return f"{text}\n\n(quick reply chosen from the options offered)"
    return None


def unknown_note(payload: Mapping[str, Any]) -> str:
    """A content type this migration does not know: its raw type and its scalar fields, verbatim."""
    c = payload.get("content") or {}
    details = [f"- {k}: {v}" for k, v in sorted(c.items()) if k != "type" and isinstance(v, (str, int, float, bool))]
    nested = sorted(k for k, v in c.items() if isinstance(v, (dict, list)))
    text = f"❔ Gladly item of a content type this migration does not know: `{c.get('type')}`"
    if details:
        text += "\n" + "\n".join(details)
    if nested:
        text += "\n(also carries: " + ", ".join(nested) + "; kept in the Gladly export archive)"
    return text


def describe(payload: Mapping[str, Any]) -> str | None:
    """A message with no body (an attachment-only chat line, say): its scalar fields, so the
    target still shows what the record held; None when it holds none."""
    content = payload.get("content") or {}
    details = {k: v for k, v in content.items() if k != "type" and isinstance(v, (str, int, float, bool))}
    return "; ".join(f"{k}: {v}" for k, v in sorted(details.items())) or None
