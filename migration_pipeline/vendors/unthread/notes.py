"""Readable markdown for Gladly items that are not plain messages: calls, voicemails, customer
activities, topic and status changes, chat quick replies, and content types this code has never
seen. Pure functions over the staged item's payload (the Gladly record); no HTTP, no Dagster.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

# Every content type in the Gladly facts file (export schema plus the item API's extra two).
KNOWN_TYPES = frozenset({
    "CHAT_MESSAGE", "CONVERSATION_STATUS_CHANGE", "CUSTOMER_ACTIVITY", "EMAIL", "FACEBOOK_MESSAGE",
    "CONVERSATION_NOTE", "PHONE_CALL", "SMS", "TOPIC_CHANGE", "VOICEMAIL", "INSTAGRAM_DIRECT", "WHATSAPP",
    "VOICE_AI_MESSAGE", "TWITTER",
})
# Internal to the support team: posted as private notes, never shown to the customer.
PRIVATE_TYPES = frozenset({"CONVERSATION_NOTE", "PHONE_CALL", "VOICEMAIL"})
SPEAKERS = {"AGENT": "Agent", "CUSTOMER": "Customer"}


class Transcript(Protocol):
    paragraphs: list[Any]  # each with .speaker, .transcript, .start_time


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


def _duration(total: int) -> str:
    hours, rest = divmod(max(total, 0), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min {secs} s"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


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


def call_note(payload: Mapping[str, Any], transcript: Transcript | None) -> str:
    """A PHONE_CALL or VOICEMAIL as a note: direction, numbers, times, duration, recording summary
    and the transcript paragraphs when Gladly has one."""
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
        lines.append(f"Duration: {_duration(length)}")
    if c.get("recordingStatus"):
        lines.append(f"Recording: {c['recordingStatus']}" + (f" ({c['recordingUrl']})" if c.get("recordingUrl") else ""))
    summary = c.get("recordingSummary") if isinstance(c.get("recordingSummary"), dict) else {}
    if summary.get("summary"):
        lines.append(f"Summary: {summary['summary']}")
    elif summary.get("status"):
        lines.append(f"Summary: {summary['status']}")
    text = "\n".join(lines)
    if transcript is not None and transcript.paragraphs:
        rows = []
        for p in transcript.paragraphs:
            who = SPEAKERS.get(str(p.speaker or "").upper(), str(p.speaker or "Speaker").title())
            start = f"[{_duration(int(p.start_time))}] " if p.start_time is not None else ""
            rows.append(f"> {start}**{who}:** {str(p.transcript or '').strip()}")
        text += "\n\n**Transcript**\n" + "\n".join(rows)
    return text


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


def topic_change_note(payload: Mapping[str, Any], topic_name: Callable[[str], str]) -> str:
    c = payload.get("content") or {}
    parts = []
    for label, key in (("added", "addedTopicIds"), ("removed", "removedTopicIds")):
        ids = [t for t in c.get(key) or () if isinstance(t, str)]
        if ids:
            parts.append(f"{label}: " + ", ".join(f"`{topic_name(t)}`" for t in ids))
    return "🏷️ Topics " + ("; ".join(parts) if parts else "unchanged")


def status_change_note(payload: Mapping[str, Any]) -> str:
    status = (payload.get("content") or {}).get("status")
    return f"🔄 Conversation status set to **{status or 'unknown'}** in Gladly"


def quick_reply_note(payload: Mapping[str, Any], text: str) -> str | None:
    c = payload.get("content") or {}
    data = c.get("messageData") if isinstance(c.get("messageData"), dict) else {}
    if c.get("messageType") == "QUICK_REPLY_REQUEST":
        options = [o.get("label") for o in data.get("options") or () if isinstance(o, dict)]
        return text + ("\n\nOptions: " + " · ".join(f"`{o}`" for o in options if o) if options else "")
    if c.get("messageType") == "QUICK_REPLY_RESPONSE":
        return f"{text}\n\n(quick reply chosen from the options offered)"
    return None


def email_header(payload: Mapping[str, Any]) -> str:
    c = payload.get("content") or {}
    parts = []
    for label, key in (("From", "from"), ("To", "to"), ("Cc", "cc"), ("Bcc", "bcc")):
        value = c.get(key)
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value if v)
        if value:
            parts.append(f"{label}: {value}")
    return " · ".join(parts)


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
