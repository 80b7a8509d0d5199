"""The staging database on SQLite and on a real PostgreSQL: schema, upsert, quarantine."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from migration_pipeline.staging.db import StagingDatabase, customers, now_text, quarantine, utc_text


def _customer(source_id: str, name: str) -> dict:
    return {
        "source_id": source_id,
        "name": name,
        "primary_email": None,
        "emails": [],
        "phones": [],
        "external_ids": {},
        "custom_attributes": {"tier": "gold", "note": "שלום 👋"},
        "merged_into": None,
        "job_id": "job-1",
        "staged_at": now_text(),
    }


def test_upsert_by_source_id_is_idempotent(staging_url):
    db = StagingDatabase(staging_url)
    db.create_schema()
    db.create_schema()  # twice: no error
    with db.begin() as conn:
        db.upsert(conn, customers, [_customer("c1", "Ann"), _customer("c2", "Bob")])
    with db.begin() as conn:
        db.upsert(conn, customers, [_customer("c1", "Ann B."), _customer("c3", "Cy")])
    assert db.count(customers) == 3
    with db.engine.connect() as conn:
        row = conn.execute(sa.select(customers).where(customers.c.source_id == "c1")).mappings().one()
    assert row["name"] == "Ann B." and row["custom_attributes"]["note"] == "שלום 👋"
    db.dispose()


def test_keep_existing_rows_when_asked(staging_url):
    db = StagingDatabase(staging_url)
    db.create_schema()
    with db.begin() as conn:
        db.upsert(conn, customers, [_customer("c1", "first")])
        db.upsert(conn, customers, [_customer("c1", "second")], update=False)
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(customers.c.name)).scalar_one() == "first"
    db.dispose()


def test_quarantine_keeps_one_row_per_line(staging_url):
    db = StagingDatabase(staging_url)
    db.create_schema()
    bad = {"job_id": "j1", "file_name": "conversation_items.jsonl", "line_no": 7, "reason": "not JSON", "raw_text": "{"}
    with db.begin() as conn:
        assert db.quarantine(conn, [bad, {**bad, "line_no": 9}]) == 2
    with db.begin() as conn:
        db.quarantine(conn, [bad])
    assert db.count(quarantine) == 2
    db.dispose()


def test_a_failed_transaction_loses_nothing_committed(staging_url):
    db = StagingDatabase(staging_url)
    db.create_schema()
    with db.begin() as conn:
        db.upsert(conn, customers, [_customer("c1", "kept")])
    with pytest.raises(RuntimeError), db.begin() as conn:
        db.upsert(conn, customers, [_customer("c2", "rolled back")])
        raise RuntimeError("crash mid-stage")
    assert db.count(customers) == 1
    db.dispose()


def test_utc_text_sorts_like_time():
    a = datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)
    b = datetime(2026, 3, 2, 1, 0, tzinfo=timezone(timedelta(hours=2)))  # 2026-03-01T23:00Z
    assert utc_text(b) < utc_text(a)
    assert utc_text(a) == "2026-03-01T23:59:59.999999Z" and len(utc_text(b)) == 27
