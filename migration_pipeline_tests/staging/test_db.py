"""The staging database on SQLite and on a real PostgreSQL: schema, upsert, quarantine."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from migration_pipeline.lib.staging.db import (
    StagingDatabase,
    conversation_items,
    customers,
    now_text,
    quarantine,
    utc_text,
)


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


# -- bulk_upsert: COPY into a temp table + INSERT ... ON CONFLICT on PostgreSQL, executemany on SQLite
NASTY = 'tab\there, newline\nthere, CR\r, back\\slash \\N, "double" \'single\', comma, ; -- /* */ שלום 👋 ½ \u200f'


def _item_row(source_id: str, **over) -> dict:
    row = {
        "source_id": source_id,
        "customer_id": "c1",
        "conversation_id": None,
        "ts": "2026-03-01T10:00:00.000000Z",
        "kind": "message",
        "author_type": "customer",
        "author_id": None,
        "channel": "email",
        "subject": NASTY,
        "text": NASTY + source_id,
        "html": None,
        "attachments": [{"id": "a1", "filename": 'x\t"y".pdf'}],
        "payload": {"nested": {"text": NASTY, "n": 1.5, "none": None, "list": [1, "\\", "\n"]}, "emoji": "😀"},
        "job_id": "job-1",
        "file_name": "conversation_items.jsonl",
        "line_no": 1,
        "staged_at": now_text(),
        "split_change": None,
        "source_system": "gladly",
        "source_kind": "EMAIL",
        "visibility": "public",
        "envelope": {"from": NASTY, "to": ["a@x.com"], "cc": [], "bcc": []},
        "transcript_expected": False,
    }
    row.update(over)
    return row


def _read_items(db) -> dict[str, dict]:
    with db.engine.connect() as conn:
        return {r["source_id"]: dict(r) for r in conn.execute(sa.select(conversation_items)).mappings()}


def test_bulk_upsert_round_trips_json_nulls_escapes_and_unicode(staging_url):
    db = StagingDatabase(staging_url)
    db.create_schema()
    rows = [_item_row(f"i{n}", line_no=n) for n in range(7)] + [_item_row("empty", text="", subject=None, payload={})]
    with db.begin() as conn:
        assert db.bulk_upsert(conn, conversation_items, rows, batch_size=3) == len(rows)
    stored = _read_items(db)
    assert set(stored) == {r["source_id"] for r in rows}
    for row in rows:
        assert stored[row["source_id"]] == row  # every value back exactly, JSON as JSON, None as NULL
    assert stored["empty"]["text"] == "" and stored["empty"]["subject"] is None and stored["i0"]["html"] is None
    db.dispose()


def test_bulk_upsert_is_idempotent_and_last_row_for_a_key_wins(staging_url):
    db = StagingDatabase(staging_url)
    db.create_schema()
    first = [_item_row(f"i{n}", line_no=n) for n in range(10)]
    for _ in range(2):  # the same rows twice: same table
        with db.begin() as conn:
            db.bulk_upsert(conn, conversation_items, first, batch_size=4)
        assert db.count(conversation_items) == 10
        assert _read_items(db)["i3"] == first[3]
    # A key repeated inside one batch and across batches: the last one wins, other rows stay.
    later = [_item_row("i3", text="v1"), _item_row("i11"), _item_row("i3", text="v2\ttab"), _item_row("i5", payload=None)]
    with db.begin() as conn:
        db.bulk_upsert(conn, conversation_items, later, batch_size=2)
        db.bulk_upsert(conn, conversation_items, [_item_row("i11", text="again")])  # twice in one transaction
    stored = _read_items(db)
    assert db.count(conversation_items) == 11
    assert stored["i3"]["text"] == "v2\ttab" and stored["i11"]["text"] == "again" and stored["i5"]["payload"] is None
    assert stored["i4"] == first[4]
    db.dispose()


def test_bulk_upsert_keeps_existing_rows_when_asked_and_rolls_back_with_the_transaction(staging_url):
    db = StagingDatabase(staging_url)
    db.create_schema()
    with db.begin() as conn:
        db.bulk_upsert(conn, customers, [_customer("c1", "first")])
        db.bulk_upsert(conn, customers, [_customer("c1", "second"), _customer("c2", "new")], update=False)
    with pytest.raises(RuntimeError), db.begin() as conn:
        db.bulk_upsert(conn, customers, [_customer("c3", "rolled back")])
        raise RuntimeError("crash mid-stage")
    with db.engine.connect() as conn:
        names = dict(conn.execute(sa.select(customers.c.source_id, customers.c.name)).all())
    assert names == {"c1": "first", "c2": "new"}
    db.dispose()


def test_bulk_upsert_takes_the_copy_path_on_postgresql(pg_database):
    """Not the generic upsert: rows pass through the COPY temp table, which lives only in the
    transaction (emptied after each merge, dropped at commit)."""
    db = StagingDatabase(pg_database)
    db.create_schema()
    with db.begin() as conn:
        db.bulk_upsert(conn, conversation_items, [_item_row(f"i{n}") for n in range(5)])
        left_in_temp = conn.execute(sa.text("select count(*) from _bulk_stg_conversation_items")).scalar()
    assert left_in_temp == 0
    with db.engine.connect() as conn:  # ON COMMIT DROP: gone after the transaction
        assert conn.execute(sa.text("select to_regclass('pg_temp._bulk_stg_conversation_items')")).scalar() is None
    assert db.count(conversation_items) == 5
    db.dispose()


def test_each_pair_namespace_has_its_own_tables(staging_url):
    """Two pairs staging the same source id (Zendesk user 123, Freshdesk contact 123) never meet:
    each namespace is a schema (PostgreSQL) or a file (SQLite) of its own; None is the first pair's."""
    from migration_pipeline.lib.staging.db import customers

    dbs = [StagingDatabase(staging_url, ns) for ns in (None, "zendesk_to_gladly", "freshdesk_to_gladly")]
    try:
        for n, db in enumerate(dbs):
            db.create_schema()
            db.create_schema()  # again: nothing changes
            with db.begin() as conn:
                db.upsert(conn, customers, [{"source_id": "123", "name": f"pair {n}", "emails": [], "phones": [],
                                             "external_ids": {}, "custom_attributes": {}, "staged_at": now_text()}])
        for n, db in enumerate(dbs):
            with db.engine.connect() as conn:
                assert conn.execute(sa.select(customers.c.name)).scalars().all() == [f"pair {n}"]
    finally:
        for db in dbs:
            db.dispose()
    with pytest.raises(ValueError, match="namespace"):
        StagingDatabase(staging_url, "Robert'); drop table x;--")
