"""Attachment downloads that fail, lie or bounce (issue 12 item 6), against both emulators.

A tiny Gladly dataset (four conversations, a handful of attachments) is staged and split on the
staging database, then `UnthreadLoader` loads it into the Unthread emulator, fetching files
through `GladlyClient.download_attachment` from the Gladly emulator, whose file host is told
(`PUT /_emulator/file-host`) to sign its URLs and to misbehave per attachment:

- `att-flaky` answers 503 twice, then the file: retried with backoff, uploaded byte-identical;
- `att-hop` is behind two more redirects (302 → 302 → file): followed, uploaded;
- `att-gone` / `att-gone-first` answer 404: that message (or the conversation, for a ticket's
  first item) is dead-lettered (`failed`, reason with the URL redacted), the ticket stops there so
  order is kept, the other tickets load, nothing raises, and the next run sends it;
- `att-liar` is announced as 100 bytes but is 5,000 on the wire, over the 1,000-byte limit: not
  uploaded; the message goes out saying so, the transfer row says `oversize`.
The file URLs' signature must appear nowhere: ledger, attachment_transfers, errors, logs.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from migration_pipeline.lib.downloads import FileDownloadError, FileTooLarge, redact_url, redact_urls_in
from migration_pipeline.vendors.gladly.archive import ArchivedJob
from migration_pipeline.vendors.gladly.client import GladlyClient
from migration_pipeline.vendors.gladly.staging import stage_job_file
from migration_pipeline.lib.staging.db import StagingDatabase, attachment_transfers, ledger, utc_text
from migration_pipeline.lib.staging.tickets import split_window
from sim.synth.dataset import DatasetLayout, write_json
from migration_pipeline.vendors.unthread.client import UnthreadClient
from migration_pipeline.vendors.unthread.loader import LoadSettings, UnthreadLoader, tickets_touching
from migration_pipeline_tests.conftest import GLADLY_TOKEN, GLADLY_USER, UNTHREAD_KEY

SIGNATURE = "SIG-9f8e7d6c5b4a-do-not-leak"
DAY = datetime(2026, 11, 18, tzinfo=UTC)
LIMIT = 1000
TRIAGE = "C0TRIAGE001"
FILES = {
    "att-flaky": bytes(range(256)) * 2 + b"flaky",  # 517 bytes
    "att-hop": b"%PDF-1.4 hop hop " * 30,
    "att-gone": b"never served",
    "att-gone-first": b"never served either",
    "att-liar": b"L" * 5000,
    "att-ok": b"plain and simple",
}


def _ts(minutes: int) -> str:
    return (DAY + timedelta(hours=9, minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _item(item_id: str, conversation: str, customer: str, minute: int, text: str, attachments=()) -> dict:
    content = {"type": "CHAT_MESSAGE", "sessionId": f"s-{conversation}", "content": text, "messageType": "TEXT"}
    if attachments:
        content["attachments"] = [
            {"id": a, "contentType": "application/octet-stream", "filename": f"{a}.bin",
             "fileSize": 100 if a == "att-liar" else len(FILES[a])}
            for a in attachments
        ]
    return {"id": item_id, "customerId": customer, "conversationId": conversation, "timestamp": _ts(minute),
            "initiator": {"id": customer, "type": "CUSTOMER"}, "content": content}


ITEMS = [
    # ticket A: retried and redirected files arrive whole
    _item("a1", "conv-a", "cust-a", 0, "hello"),
    _item("a2", "conv-a", "cust-a", 1, "two files", ["att-flaky", "att-hop"]),
    _item("a3", "conv-a", "cust-a", 2, "thanks"),
    # ticket B: a file gone for good stops the ticket at its message
    _item("b1", "conv-b", "cust-b", 10, "first"),
    _item("b2", "conv-b", "cust-b", 11, "with a lost file", ["att-gone", "att-ok"]),
    _item("b3", "conv-b", "cust-b", 12, "after it"),
    # ticket C: the export's fileSize lies
    _item("c1", "conv-c", "cust-c", 20, "a big one", ["att-liar"]),
    _item("c2", "conv-c", "cust-c", 21, "and text"),
    # ticket D: the first item's file is gone: the conversation itself waits
    _item("d1", "conv-d", "cust-d", 30, "opening with a file", ["att-gone-first"]),
    _item("d2", "conv-d", "cust-d", 31, "more"),
]


def build_dataset(root: Path) -> DatasetLayout:
    layout = DatasetLayout(root)
    updated = (DAY + timedelta(days=1, hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    write_json(layout.job_file("J1", "job.json"), {
        "id": "J1", "scheduleId": "s", "status": "COMPLETED", "updatedAt": updated,
        "parameters": {"type": "CONVERSATIONS", "startAt": utc_text(DAY), "endAt": utc_text(DAY + timedelta(days=1))},
        "files": ["conversation_items.jsonl"],
    })
    layout.job_file("J1", "conversation_items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    layout.attachments_dir.mkdir(parents=True)
    for attachment_id, content in FILES.items():
        (layout.attachments_dir / attachment_id).write_bytes(content)
    return layout


def staged(url: str, layout: DatasetLayout) -> tuple[StagingDatabase, list[str]]:
    db = StagingDatabase(url)
    db.create_schema()
    window = (DAY, DAY + timedelta(days=1))
    job = ArchivedJob("J1", *window, window[1], "api", layout.job_dir("J1"), {})
    counts = stage_job_file(db, job, "conversation_items.jsonl", window)
    assert counts.staged == len(ITEMS)
    lo, hi = utc_text(window[0]), utc_text(window[1])
    split_window(db, lo, hi)
    return db, tickets_touching(db, lo, hi)


FILE_HOST = {
    "signature": SIGNATURE,
    "attachments": {
        "att-flaky": {"fail": 2, "fail_status": 503},
        "att-hop": {"redirects": 2},
        "att-gone": {"status": 404},
        "att-gone-first": {"status": 404},
    },
}


@pytest.fixture
def servers(tmp_path, gladly_server_factory, unthread_server_factory):
    layout = build_dataset(tmp_path / "dataset")
    gladly = gladly_server_factory(layout.root, now=DAY + timedelta(days=2))
    assert httpx.put(f"{gladly.url}/_emulator/file-host", json=FILE_HOST).status_code == 200
    unthread = unthread_server_factory(workspace={"triageChannels": [{"id": TRIAGE, "name": "triage"}]})
    return layout, gladly, unthread


def gladly_client(url: str, **kw) -> GladlyClient:
    kw = {"requests_per_second": 0, "max_attempts": 4, "backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.05, **kw}
    return GladlyClient(url, GLADLY_USER, GLADLY_TOKEN, **kw)


def run_load(db, ticket_ids, gladly_url: str, unthread_url: str) -> UnthreadLoader:
    settings = LoadSettings(triage_channel_id=TRIAGE, max_file_bytes=LIMIT, create_backoff_seconds=0.01, run_id="r1")
    with gladly_client(gladly_url) as source, UnthreadClient(f"{unthread_url}/api", UNTHREAD_KEY, backoff_initial_seconds=0.01) as target:
        loader = UnthreadLoader(db, target, settings, fetch_attachment=source.download_attachment)
        try:
            for ticket_id in ticket_ids:
                loader.load_ticket(ticket_id, DAY + timedelta(days=1))
        finally:
            getattr(loader, "close", lambda: None)()
    return loader


def rows(db, table) -> list[dict]:
    with db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table)).mappings()]


def messages(unthread_url: str, conversation_id: str) -> list[dict]:
    page = httpx.post(f"{unthread_url}/api/conversations/{conversation_id}/messages/list",
                      json={"order": ["ts", "id"], "limit": 100}, headers={"X-Api-Key": UNTHREAD_KEY}).json()
    return page["data"]


def file_bytes(unthread_url: str, conversation_id: str, file_id: str) -> bytes:
    return httpx.get(f"{unthread_url}/api/conversations/{conversation_id}/files/{file_id}/full",
                     headers={"X-Api-Key": UNTHREAD_KEY}).content


def test_failed_downloads_are_retried_or_dead_lettered_per_item_never_leaking_the_signature(staging_url, servers, caplog):
    layout, gladly, unthread = servers
    db, ticket_ids = staged(staging_url, layout)
    caplog.set_level(logging.DEBUG)
    try:
        loader = run_load(db, ticket_ids, gladly.url, unthread.url)  # must not raise
        counts = loader.counts
        by_key = {r["source_key"]: r for r in rows(db, ledger)}
        transfers = {r["attachment_id"]: r for r in rows(db, attachment_transfers)}

        # ticket A: 503s retried with backoff, the double redirect followed; both byte-identical
        assert by_key["message:a2"]["state"] == "done" and by_key["message:a3"]["state"] == "done"
        conv_a = by_key[by_key["message:a2"]["parent_key"]]["target_id"]
        sent = {f["name"]: f for m in messages(unthread.url, conv_a) for f in m.get("files") or []}
        for attachment_id in ("att-flaky", "att-hop"):
            assert file_bytes(unthread.url, conv_a, sent[f"{attachment_id}.bin"]["id"]) == FILES[attachment_id]
            assert transfers[attachment_id]["state"] == "verified"
        host = httpx.get(f"{gladly.url}/_emulator/file-host").json()
        assert host["requests"]["att-flaky"] == 3  # two 503s, then the file
        assert host["with_credentials"] == 0  # no Authorization ever reached the file host

        # ticket B: the lost file dead-letters its message only; the ticket stops there (order kept)
        failed = by_key["message:b2"]
        assert failed["state"] == "failed"
        assert "att-gone" in failed["last_error"] and "404" in failed["last_error"] and "<redacted>" in failed["last_error"]
        assert "message:b3" not in by_key
        assert transfers["att-gone"]["state"] == "download_failed" and "<redacted>" in transfers["att-gone"]["detail"]
        assert counts.tickets_blocked == 1

        # ticket C: over the limit on the wire although announced small: listed, not uploaded
        assert by_key["message:c1"]["state"] == "done" and by_key["message:c2"]["state"] == "done"
        assert transfers["att-liar"]["state"] == "oversize"
        conv_c = by_key[by_key["message:c2"]["parent_key"]]["target_id"]
        first = messages(unthread.url, conv_c)[0]
        assert not first.get("files") and "att-liar" in first["text"]
        assert counts.attachments_oversize == 1

        # ticket D: the first item's file is gone: the conversation waits, nothing of it is sent
        ticket_d = next(k for k, r in by_key.items() if k.startswith("ticket:") and r["state"] == "failed")
        assert "att-gone-first" in by_key[ticket_d]["last_error"] and "<redacted>" in by_key[ticket_d]["last_error"]
        assert "message:d2" not in by_key
        assert counts.failed == 2

        # the signature is nowhere
        recorded = json.dumps([by_key, transfers, counts.errors], default=str) + caplog.text
        assert SIGNATURE not in recorded
        assert "att-flaky?<redacted>" in caplog.text  # httpx's request log lines: redacted, not dropped

        # the next run, once the files are back, sends what waited, in order
        assert httpx.put(f"{gladly.url}/_emulator/file-host", json={"signature": SIGNATURE}).status_code == 200
        again = run_load(db, ticket_ids, gladly.url, unthread.url)
        by_key = {r["source_key"]: r for r in rows(db, ledger)}
        assert {by_key[k]["state"] for k in ("message:b2", "message:b3", "message:d1", "message:d2")} == {"done"}
        assert again.counts.failed == 0
        conv_b = by_key[by_key["message:b3"]["parent_key"]]["target_id"]
        texts = [m["text"] for m in messages(unthread.url, conv_b)]
        assert [t.split("\n\n")[1] for t in texts] == ["first", "with a lost file", "after it"]
    finally:
        db.dispose()


def test_signed_url_redaction() -> None:
    url = f"https://files.example/x/y.pdf?X-Amz-Signature={SIGNATURE}&X-Amz-Expires=300"
    assert redact_url(url) == "https://files.example/x/y.pdf?<redacted>"
    assert redact_url("https://user:pw@files.example/a#frag") == "https://files.example/a"
    twice = redact_urls_in(f"GET {url} failed; retry {url}")
    assert twice == "GET https://files.example/x/y.pdf?<redacted> failed; retry https://files.example/x/y.pdf?<redacted>"
    assert redact_urls_in(twice) == twice  # idempotent
    assert redact_urls_in(f"(b'location', b'{url}')") == "(b'location', b'https://files.example/x/y.pdf?<redacted>')"


def test_redirect_cap_retries_running_out_and_the_limit_on_bytes_received(tmp_path, gladly_server_factory) -> None:
    layout = build_dataset(tmp_path / "dataset")
    gladly = gladly_server_factory(layout.root, now=DAY + timedelta(days=2))
    rules = {"att-hop": {"redirects": 6}, "att-ok": {"fail": 99, "fail_status": 503}}
    httpx.put(f"{gladly.url}/_emulator/file-host", json={"signature": SIGNATURE, "attachments": rules}).raise_for_status()
    with gladly_client(gladly.url) as client:
        with pytest.raises(FileDownloadError) as bounced:
            client.download_attachment("a2", "att-hop", max_bytes=LIMIT)
        with pytest.raises(FileDownloadError) as down:
            client.download_attachment("b2", "att-ok", max_bytes=LIMIT)
        with pytest.raises(FileTooLarge) as big:
            client.download_attachment("c1", "att-liar", max_bytes=LIMIT)
        fetched = client.download_attachment("a2", "att-flaky", max_bytes=LIMIT, scratch_dir=tmp_path / "scratch")
        try:
            assert fetched.file.read() == FILES["att-flaky"] and fetched.bytes == len(FILES["att-flaky"])
        finally:
            fetched.close()
    assert "redirects" in str(bounced.value) and not bounced.value.retryable
    assert big.value.received > LIMIT and not big.value.retryable
    assert down.value.status == 503 and "after 4 attempts" in str(down.value) and not down.value.retryable
    assert httpx.get(f"{gladly.url}/_emulator/file-host").json()["requests"]["att-ok"] == 4
    for exc in (bounced.value, big.value, down.value):
        assert SIGNATURE not in str(exc) and "<redacted>" in str(exc)
    assert list((tmp_path / "scratch").iterdir()) == []  # anonymous temp files: nothing left on disk
