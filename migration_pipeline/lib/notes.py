"""Readable markdown a target shows for contract fields that are not a body: the envelope of an
email, a status or tag change, a call's transcript. Pure functions over contract values; the
source-specific renderings (a Gladly call card, say) are made at staging by the source. No Dagster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

SPEAKERS = {"AGENT": "Agent", "CUSTOMER": "Customer"}


class Transcript(Protocol):
    paragraphs: list[Any]  # each with .speaker, .transcript, .start_time


def duration_text(total: int) -> str:
    """`1 h 2 min 5 s`, `4 min 48 s`, `11 s`."""
    hours, rest = divmod(max(total, 0), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min {secs} s"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def transcript_markdown(transcript: Transcript | None) -> str | None:
    """A call's transcript as quoted paragraphs by speaker; None when there is none."""
    if transcript is None or not transcript.paragraphs:
        return None
    rows = []
    for p in transcript.paragraphs:
        who = SPEAKERS.get(str(p.speaker or "").upper(), str(p.speaker or "Speaker").title())
        start = f"[{duration_text(int(p.start_time))}] " if p.start_time is not None else ""
        rows.append(f"> {start}**{who}:** {str(p.transcript or '').strip()}")
    return "**Transcript**\n" + "\n".join(rows)


def tag_change_note(added: Iterable[str], removed: Iterable[str], tag_name: Callable[[str], str], word: str = "Topics") -> str:
    """`🏷️ Topics added: `a`, `b`; removed: `c`` (tag ids shown by name)."""
    parts = []
    for label, ids in (("added", list(added)), ("removed", list(removed))):
        if ids:
            parts.append(f"{label}: " + ", ".join(f"`{tag_name(t)}`" for t in ids))
    return f"🏷️ {word} " + ("; ".join(parts) if parts else "unchanged")


def status_change_note(status: str | None, system: str) -> str:
    return f"🔄 Conversation status set to **{status or 'unknown'}** in {system}"


def envelope_header(envelope: Mapping[str, Any] | None) -> str:
    """`From: a · To: b, c · Cc: d` from a staged envelope (contract.Envelope.as_json)."""
    parts = []
    for label, key in (("From", "from"), ("To", "to"), ("Cc", "cc"), ("Bcc", "bcc")):
        value = (envelope or {}).get(key)
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value if v)
        if value:
            parts.append(f"{label}: {value}")
    return " · ".join(parts)
