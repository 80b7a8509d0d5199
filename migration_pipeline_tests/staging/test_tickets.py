"""Splitting staged items into tickets on SQLite and PostgreSQL: the rules' state survives
between runs (day by day = all at once), a loaded ticket is never extended backwards, and a
database made by an earlier release gets the new ticket columns."""

import random
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from migration_pipeline.lib.split_rules import ChannelSwitchRule, ReopenRule, RuleSet, SizeCapRule, SplitRules, TimeGapRule
from migration_pipeline.lib.splitting import ItemRef, assign_items, encode_change
from migration_pipeline.lib.staging import tickets as tickets_module
from migration_pipeline.lib.staging.db import StagingDatabase, conversation_items, ledger, now_text, ticket_items, tickets, utc_text
from migration_pipeline.lib.staging.tickets import split_window
from migration_pipeline.pairs.gladly_to_unthread.pair import NAME as GLADLY_TO_UNTHREAD

T0 = datetime(2026, 3, 1, tzinfo=UTC)
RULES = SplitRules(
    version="t",
    rules=RuleSet(
        time_gap=TimeGapRule(days=4),
        reopen_after_dormancy=ReopenRule(enabled=True, closed_days=1),
        channel_switch=ChannelSwitchRule(enabled=True),
        max_items_per_ticket=SizeCapRule(enabled=True, limit=6),
    ),
)
KINDS = [("EMAIL", "email"), ("CHAT_MESSAGE", "chat"), ("CONVERSATION_NOTE", "note"), ("CONVERSATION_STATUS_CHANGE", "system")]


def _items(seed: int, conversations: int = 12, per: int = 30) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for c in range(conversations):
        for n in range(per):
            kind, channel = rng.choice(KINDS)
            content = {"type": kind}
            if kind == "CONVERSATION_STATUS_CHANGE":
                content["status"] = rng.choice(["OPEN", "CLOSED"])
            rows.append(
                {
                    "source_id": f"it{c:02d}{n:03d}",
                    "customer_id": f"cust{c % 5}",
                    "conversation_id": f"conv{c:02d}" if c % 4 else None,  # some items outside any conversation
                    "ts": utc_text(T0 + timedelta(hours=rng.randrange(0, 24 * 30))),
                    "kind": kind,
                    "author_type": "customer",
                    "author_id": None,
                    "channel": channel,
                    "subject": None,
                    "text": "hi",
                    "html": None,
                    "attachments": [],
                    "payload": {"content": content},
                    "job_id": "job",
                    "file_name": "conversation_items.jsonl",
                    "line_no": n,
                    "staged_at": now_text(),
                    "split_change": encode_change(content.get("status")),
                }
            )
    return rows


def _db(url: str, rows: list[dict]) -> StagingDatabase:
    """The first pair's namespace (splitting is its step; the CLI's preview reads it there)."""
    db = StagingDatabase(url, GLADLY_TO_UNTHREAD)
    db.create_schema()
    with db.begin() as conn:
        db.upsert(conn, conversation_items, rows)
    return db


def _cut(db: StagingDatabase) -> dict[str, tuple]:
    with db.engine.connect() as conn:
        members = conn.execute(sa.select(ticket_items.c.item_id, ticket_items.c.ticket_id)).all()
        rows = conn.execute(sa.select(tickets)).mappings().all()
    by_ticket: dict[str, list[str]] = {}
    for item, ticket in members:
        by_ticket.setdefault(ticket, []).append(item)
    return {
        r["ticket_id"]: (sorted(by_ticket[r["ticket_id"]]), r["cut_reason"], r["previous_ticket_id"], r["rule_version"])
        for r in rows
    }


def test_day_by_day_equals_all_at_once_and_records_the_rules(staging_url, tmp_path, monkeypatch):
    rows = _items(seed=5)
    once = _db(f"sqlite:///{tmp_path / 'once.db'}", rows)
    split_window(once, utc_text(T0), utc_text(T0 + timedelta(days=31)), RULES)
    daily = _db(staging_url, rows)
    monkeypatch.setattr(tickets_module, "BATCH_ITEMS", 25)  # many small batches, each committed
    for day in range(31):
        split_window(daily, utc_text(T0 + timedelta(days=day)), utc_text(T0 + timedelta(days=day + 1)), RULES)
    expected, got = _cut(once), _cut(daily)
    assert got == expected
    assert sum(len(m) for m, *_ in got.values()) == len(rows)
    reasons = {reason for _, reason, _, _ in got.values()}
    assert {"first", "time_gap", "channel_switch", "max_items_per_ticket"} <= reasons
    assert {version for *_, version in got.values()} == {RULES.rule_version}
    # a reopen links back to a ticket of the same timeline
    with daily.engine.connect() as conn:
        links = conn.execute(
            sa.select(tickets.c.conversation_id, tickets.c.previous_ticket_id).where(tickets.c.previous_ticket_id.is_not(None))
        ).all()
        conv_of = dict(conn.execute(sa.select(tickets.c.ticket_id, tickets.c.conversation_id)).all())
    assert links and all(conv_of[previous] == conv for conv, previous in links)
    # re-running any window assigns nothing new
    again = split_window(daily, utc_text(T0), utc_text(T0 + timedelta(days=31)), RULES)
    assert again.items_assigned == 0 and _cut(daily) == expected
    daily.dispose()
    once.dispose()


def test_the_interleaved_stream_cuts_each_timeline_as_the_engine_cuts_it_alone(staging_url, monkeypatch):
    """split_window reads every timeline of the window at once in (ts, id) order; each timeline
    must come out exactly as `assign_items` cuts its items on their own."""
    rows = _items(seed=13, conversations=20, per=40)
    for row in rows[::7]:
        row["ts"] = rows[0]["ts"]  # ties across timelines and within one, broken by item id
    db = _db(staging_url, rows)
    monkeypatch.setattr(tickets_module, "BATCH_ITEMS", 37)  # many batches
    split_window(db, utc_text(T0), utc_text(T0 + timedelta(days=31)), RULES)
    by_key: dict[str, list[ItemRef]] = {}
    for r in rows:
        key = r["conversation_id"] or f"activity:{r['customer_id']}"
        status = r["payload"]["content"].get("status")
        by_key.setdefault(key, []).append(ItemRef(r["source_id"], datetime.fromisoformat(r["ts"]), r["kind"], r["channel"],
                                                  status=status))
    expected = {}
    for key, items in by_key.items():
        spans, assignments = assign_items(key, [], items, RULES)
        members: dict[str, list[str]] = {}
        for item_id, ticket_id in assignments:
            members.setdefault(ticket_id, []).append(item_id)
        for span in spans:
            expected[span.ticket_id] = (sorted(members[span.ticket_id]), span.cut_reason, span.previous_ticket_id,
                                        RULES.rule_version)
    assert _cut(db) == expected
    with db.engine.connect() as conn:
        stored = {r["ticket_id"]: r for r in conn.execute(sa.select(tickets)).mappings()}
    for span in (s for key, items in by_key.items() for s in assign_items(key, [], items, RULES)[0]):
        row = stored[span.ticket_id]
        assert (row["first_ts"], row["last_ts"], row["item_count"], row["status"]) == (
            utc_text(span.first_ts), utc_text(span.last_ts), span.item_count, span.status)
    db.dispose()


def test_a_loaded_ticket_is_not_extended_backwards_by_a_late_item(staging_url):
    rows = _items(seed=9, conversations=1, per=3)
    for n, row in enumerate(rows):
        row.update(conversation_id="conv", kind="EMAIL", channel="email", ts=utc_text(T0 + timedelta(days=10, hours=n)))
    db = _db(staging_url, rows)
    split_window(db, utc_text(T0), utc_text(T0 + timedelta(days=31)), RULES)
    (ticket_id,) = _cut(db)
    with db.begin() as conn:
        db.upsert(conn, ledger, [{"source_key": f"ticket:{ticket_id}", "entity_type": "conversation", "parent_key": None,
                                  "target_id": "u1", "state": "done", "attempts": 1, "last_error": None, "run_id": "r",
                                  "updated_at": now_text()}])
    late = dict(rows[0], source_id="late", ts=utc_text(T0 + timedelta(days=9)))
    with db.begin() as conn:
        db.upsert(conn, conversation_items, [late])
    split_window(db, utc_text(T0), utc_text(T0 + timedelta(days=31)), RULES)
    cut = _cut(db)
    assert cut[ticket_id][0] == sorted(r["source_id"] for r in rows)  # the loaded ticket kept its items
    assert [members for t, (members, *_) in cut.items() if t != ticket_id] == [["late"]]
    db.dispose()


def test_an_earlier_release_database_gets_the_new_ticket_columns(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the tickets table as the first release made it
        conn.execute(sa.text(
            "create table tickets (ticket_id varchar(64) primary key, conversation_id varchar(128) not null, "
            "customer_id varchar(64) not null, first_ts varchar(27) not null, last_ts varchar(27) not null, "
            "first_item_id varchar(64) not null, item_count integer not null, rule_version varchar(32) not null, "
            "cut_at varchar(27) not null)"
        ))
        conn.execute(sa.text(
            "insert into tickets values ('tkt_old', 'conv', 'c', '2026-03-01T00:00:00.000000Z', "
            "'2026-03-01T00:00:00.000000Z', 'it0', 1, 'timegap-v1', '2026-03-02T00:00:00.000000Z')"
        ))
    engine.dispose()
    db = StagingDatabase(url)
    db.create_schema()
    db.create_schema()
    with db.engine.connect() as conn:
        row = conn.execute(sa.select(tickets)).mappings().one()
    assert row["ticket_id"] == "tkt_old" and row["rule_version"] == "timegap-v1" and row["cut_reason"] is None
    db.dispose()


PRE_CONTRACT_ADDED = ("split_change", "source_system", "source_kind", "visibility", "envelope", "transcript_expected")


def _pre_contract_database(url: str) -> tuple[StagingDatabase, list[dict]]:
    """A database as the release before the canonical contract left it: Gladly items with Gladly's
    type in `kind` and none of PRE_CONTRACT_ADDED."""
    db = StagingDatabase(url)
    db.create_schema()
    rows = []
    for r in _items(seed=2, conversations=2, per=10):
        record = {"id": r["source_id"], "customerId": r["customer_id"], "conversationId": r["conversation_id"],
                  "timestamp": r["ts"], "initiator": {"type": "CUSTOMER", "id": r["customer_id"]},
                  "content": {**r["payload"]["content"], "body": "hi"}}
        rows.append(dict(r, payload=record, split_change=None))
    with db.begin() as conn:
        db.upsert(conn, conversation_items, rows)
        conn.execute(sa.text("drop index ix_stg_conversation_items_timeline"))
        for column in PRE_CONTRACT_ADDED:  # the earlier release
            conn.execute(sa.text(f"alter table stg_conversation_items drop column {column}"))
    return db, rows


def test_items_staged_before_the_contract_get_its_columns_from_their_payloads(tmp_path):
    """A database of the release before the canonical contract (Gladly's type in `kind`, no
    split_change, source_kind, visibility ...) is upgraded in place from the stored Gladly records,
    by the upgrade the Gladly package registers (vendors/gladly/pre_contract.py)."""
    import migration_pipeline.vendors.gladly  # noqa: F401  (registers the upgrade, as any Gladly import does)

    db, rows = _pre_contract_database(f"sqlite:///{tmp_path / 'old.db'}")
    db.create_schema()
    with db.engine.connect() as conn:
        stored = {r.source_id: r for r in conn.execute(sa.select(conversation_items))}
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("stg_conversation_items")}
    assert {k: v.split_change for k, v in stored.items()} == {r["source_id"]: encode_change(r["payload"]["content"].get("status")) for r in rows}
    assert any(v.split_change for v in stored.values()) and "ix_stg_conversation_items_timeline" in indexes
    canonical = {"EMAIL": ("message", "public"), "CHAT_MESSAGE": ("message", "public"), "CONVERSATION_NOTE": ("note", "private"),
                 "CONVERSATION_STATUS_CHANGE": ("status_change", "public")}
    for r in rows:
        row = stored[r["source_id"]]
        assert (row.source_system, row.source_kind) == ("gladly", r["kind"])
        assert (row.kind, row.visibility) == canonical[r["kind"]]
    db.create_schema()  # once only: a second start changes nothing
    with db.engine.connect() as conn:
        assert {r.source_id: r.kind for r in conn.execute(sa.select(conversation_items))} == {k: v.kind for k, v in stored.items()}
    db.dispose()


def test_a_pre_contract_database_is_left_untouched_without_its_sources_upgrade(tmp_path, monkeypatch):
    """The staging library names no source: with no upgrade registered for the contract's columns,
    adding them to stored rows is refused and rolled back, never left empty."""
    import migration_pipeline.lib.staging.db as staging_db

    monkeypatch.setattr(staging_db, "_column_upgrades", {})
    db, _ = _pre_contract_database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        with pytest.raises(RuntimeError, match="stg_conversation_items.source_kind"):
            db.create_schema()
        with db.engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("stg_conversation_items")}
        assert not columns & set(PRE_CONTRACT_ADDED)
    finally:
        db.dispose()


def test_only_the_windows_neighbour_tickets_are_read_and_the_cut_is_the_same(staging_url, tmp_path, monkeypatch):
    """Windows split in a shuffled order (late items, tickets on both sides of a window): reading
    only the tickets a window's items can meet gives exactly the cut that reading every ticket of
    the timeline gives."""
    rows = _items(seed=21)
    days = list(range(31))
    random.Random(4).shuffle(days)

    def run(db):
        for day in days:
            split_window(db, utc_text(T0 + timedelta(days=day)), utc_text(T0 + timedelta(days=day + 1)), RULES)
        return _cut(db)

    def every_ticket(conn, keys, lo, hi):
        with_window = original(conn, keys, lo, hi)
        everything = original(conn, keys, "0000", "9999")  # a window covering all history
        assert all({t.ticket_id for t in with_window.get(k, [])} <= {t.ticket_id for t in v} for k, v in everything.items())
        read.append(sum(map(len, with_window.values())) / max(1, sum(map(len, everything.values()))))
        return everything

    subset = run(_db(staging_url, rows))
    original, read = tickets_module.existing_tickets, []
    monkeypatch.setattr(tickets_module, "existing_tickets", every_ticket)
    full = run(_db(f"sqlite:///{tmp_path / 'full.db'}", rows))
    assert subset == full
    assert min(read) < 1  # the window's neighbours are fewer than the whole history
