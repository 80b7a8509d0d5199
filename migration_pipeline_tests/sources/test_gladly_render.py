"""Unit tests for the text of non-message Gladly items (calls, voicemails, activities, unknown
content types), rendered at staging, and for the target-neutral notes (transcripts, changes)."""

from __future__ import annotations

import pytest

from migration_pipeline.lib import notes
from migration_pipeline.vendors.gladly import render
from migration_pipeline.vendors.gladly.client import VoiceTranscript

CALL = {
    "initiator": {"type": "CUSTOMER", "id": "c1"},
    "responder": {"type": "AGENT", "id": "a1"},
    "content": {
        "type": "PHONE_CALL", "from": "+15550100", "to": "+15550199", "startedAt": "2026-11-03T10:00:00.000Z",
        "answeredAt": "2026-11-03T10:00:12.000Z", "completedAt": "2026-11-03T10:05:00.000Z",
        "recordingStatus": "AVAILABLE", "recordingSummary": {"status": "READY", "summary": "Asked about a late parcel."},
    },
}


@pytest.mark.parametrize("value, shown", [(288, "4 min 48 s"), ("288", "4 min 48 s"), ("11", "11 s"), (3725, "1 h 2 min 5 s")])
def test_duration_is_read_as_integer_or_string(value, shown):
    payload = {**CALL, "content": {**CALL["content"], "recordingDuration": value}}
    assert f"Duration: {shown}" in render.call_note(payload)


def test_duration_falls_back_to_answered_to_completed():
    assert "Duration: 4 min 48 s" in render.call_note(CALL)


def test_a_call_shows_direction_numbers_times_summary_and_transcript():
    transcript = VoiceTranscript.model_validate(
        {"paragraphs": [{"transcript": "Hi, Northwind, Amy speaking.", "speaker": "AGENT", "startTime": 0.0},
                        {"transcript": "My parcel is late.", "speaker": "CUSTOMER", "startTime": 3.2}]}
    )
    text = render.call_note(CALL) + "\n\n" + notes.transcript_markdown(transcript)
    assert "inbound" in text and "+15550100" in text and "+15550199" in text
    assert "answered 2026-11-03 10:00:12 UTC" in text and "completed 2026-11-03 10:05:00 UTC" in text
    assert "Summary: Asked about a late parcel." in text
    assert text.index("**Agent:** Hi, Northwind") < text.index("**Customer:** My parcel is late.")
    outbound = {**CALL, "initiator": {"type": "AGENT", "id": "a1"}}
    assert "outbound" in render.call_note(outbound)


def test_a_missed_call_says_so():
    missed = {**CALL, "content": {k: v for k, v in CALL["content"].items() if k not in ("answeredAt", "recordingStatus")}}
    assert "Not answered" in render.call_note(missed)


def test_activity_keeps_title_body_and_link():
    text = render.activity_note({"content": {"type": "CUSTOMER_ACTIVITY", "activityType": "ISSUE", "title": "Order issue",
                                            "body": "Carrier exception", "link": {"url": "https://oms.example/1", "text": "Open"}}})
    assert "**Order issue**" in text and "Carrier exception" in text and "[Open](https://oms.example/1)" in text


def test_unknown_types_keep_their_raw_type_and_fields():
    text = render.unknown_note({"content": {"type": "HOLOGRAM", "room": "B2", "seconds": 30, "extra": {"a": 1}}})
    assert "`HOLOGRAM`" in text and "room: B2" in text and "seconds: 30" in text and "extra" in text
    assert "HOLOGRAM" not in render.KNOWN_TYPES


def test_changes_and_envelopes_read_only_contract_fields():
    names = {"t1": "Billing", "t2": "Refunds"}.get
    assert notes.tag_change_note(["t1"], ["t2"], names) == "🏷️ Topics added: `Billing`; removed: `Refunds`"
    assert notes.tag_change_note([], [], names) == "🏷️ Topics unchanged"
    assert notes.status_change_note("CLOSED", "Gladly") == "🔄 Conversation status set to **CLOSED** in Gladly"
    assert notes.envelope_header({"from": "a@x.com", "to": ["b@x.com", "c@x.com"], "cc": [], "bcc": []}) == "From: a@x.com · To: b@x.com, c@x.com"
    assert notes.envelope_header(None) == "" and notes.transcript_markdown(None) is None
