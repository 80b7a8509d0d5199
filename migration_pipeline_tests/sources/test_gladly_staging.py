"""Staging archived export files on SQLite and PostgreSQL: streaming, upsert, quarantine, window."""

import json
from datetime import UTC, datetime

import sqlalchemy as sa

from migration_pipeline.vendors.gladly.archive import ArchivedJob
from migration_pipeline.vendors.gladly.staging import stage_job_file
from migration_pipeline.lib.staging.db import StagingDatabase, conversation_items, customers, quarantine

DAY = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))


def _item(item_id: str, ts: str, **extra) -> str:
    line = {
        "id": item_id,
        "customerId": "c1",
        "conversationId": "conv1",
        "timestamp": ts,
        "initiator": {"id": "c1", "type": "CUSTOMER"},
        "content": {"type": "SMS", "from": "+1", "to": "+2", "content": f"hello {item_id}"},
    }
    line.update(extra)
    return json.dumps(line, ensure_ascii=False)


def _job(tmp_path) -> ArchivedJob:
    directory = tmp_path / "job-1"
    directory.mkdir()
    lines = [
        _item("i1", "2026-03-01T10:00:00.000Z"),
        '{"id": "i2", "customerId": "c1", "timest',  # truncated line
        _item("i3", "2026-03-02T00:00:00.000Z"),  # next day: another partition's
        _item("i4", "2026-03-01T23:59:59.999Z", timestamp="not-a-time"),
        _item("i5", "2026-03-01T09:00:00.000Z"),  # out of order
        _item("i1", "2026-03-01T10:00:00.000Z"),  # the same item twice
    ]
    (directory / "conversation_items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (directory / "customers.jsonl").write_text(
        json.dumps({"id": "c1", "name": "Ann", "emailAddresses": ["Ann@X.com"]}) + "\n" + json.dumps({"name": "no id"}) + "\n"
    )
    return ArchivedJob("job-1", DAY[0], DAY[1], DAY[1], "api", directory, {})


def test_items_are_staged_once_bad_lines_quarantined_with_reason(staging_url, tmp_path):
    db = StagingDatabase(staging_url)
    db.create_schema()
    job = _job(tmp_path)
    counts = stage_job_file(db, job, "conversation_items.jsonl", DAY)
    assert (counts.lines, counts.staged, counts.quarantined, counts.skipped_outside_window) == (6, 3, 2, 1)
    assert db.count(conversation_items) == 2  # i1 (twice) and i5
    with db.engine.connect() as conn:
        bad = conn.execute(sa.select(quarantine).order_by(quarantine.c.line_no)).mappings().all()
    assert [(b["line_no"], b["file_name"]) for b in bad] == [(2, "conversation_items.jsonl"), (4, "conversation_items.jsonl")]
    assert "malformed" in bad[0]["reason"] and "RFC3339" in bad[1]["reason"]
    assert bad[0]["raw_text"].startswith('{"id": "i2"')

    again = stage_job_file(db, job, "conversation_items.jsonl", DAY)
    assert again.staged == counts.staged
    assert db.count(conversation_items) == 2 and db.count(quarantine) == 2
    db.dispose()


def test_customers_file_is_staged_and_a_record_without_id_quarantined(staging_url, tmp_path):
    db = StagingDatabase(staging_url)
    db.create_schema()
    counts = stage_job_file(db, _job(tmp_path), "customers.jsonl")
    assert (counts.staged, counts.quarantined) == (1, 1)
    with db.engine.connect() as conn:
        row = conn.execute(sa.select(customers)).mappings().one()
    assert row["primary_email"] == "Ann@X.com"
    db.dispose()


def test_batches_flush_on_size_with_the_same_result(staging_url, tmp_path, monkeypatch):
    """Huge lines flush early (memory stays bounded); rows, quarantine and last-wins are unchanged."""
    from migration_pipeline.vendors.gladly import staging

    monkeypatch.setattr(staging, "BATCH_BYTES", 1)  # every line is its own batch
    db = StagingDatabase(staging_url)
    db.create_schema()
    counts = stage_job_file(db, _job(tmp_path), "conversation_items.jsonl", DAY)
    assert (counts.staged, counts.quarantined) == (3, 2)
    assert db.count(conversation_items) == 2 and db.count(quarantine) == 2
    db.dispose()
