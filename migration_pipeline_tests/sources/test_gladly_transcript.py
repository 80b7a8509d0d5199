"""The Gladly client's voice-transcript read against the emulator: a typed record, or None on 404."""

from __future__ import annotations

import json

from migration_pipeline.vendors.gladly.client import GladlyClient
from sim.synth.dataset import DatasetLayout
from migration_pipeline_tests.conftest import GLADLY_TOKEN, GLADLY_USER


def test_voice_transcript_is_typed_and_none_when_gladly_has_none(small_dataset, gladly_server_factory):
    server = gladly_server_factory(small_dataset, rate_limit_per_second=1000)
    layout = DatasetLayout(small_dataset)
    stored = [json.loads(line) for line in layout.transcripts.read_text(encoding="utf-8").splitlines()]
    assert stored
    with GladlyClient(server.url, GLADLY_USER, GLADLY_TOKEN, requests_per_second=100) as client:
        transcript = client.voice_transcript(stored[0]["itemId"])
        assert transcript is not None
        assert [(p.speaker, p.transcript) for p in transcript.paragraphs] == [
            (p["speaker"], p["transcript"]) for p in stored[0]["paragraphs"]
        ]
        assert transcript.paragraphs[0].start_time == stored[0]["paragraphs"][0]["startTime"]
        assert transcript.language == stored[0]["language"]
        # an item that exists but has no transcript (a chat message): 404 -> None
        manifest = json.loads(layout.manifest.read_text(encoding="utf-8"))
        chat_item = next(m["itemId"] for m in manifest["mess"]["unicode_emoji_rtl"]["where"] if m["type"] != "PHONE_CALL")
        assert client.voice_transcript(chat_item) is None
