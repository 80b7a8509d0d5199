"""Cut staged items into tickets (stage 3), persisting the cut so it is never redone.

Streams the staged items of a window that no ticket holds yet, one timeline (conversation, or a
customer's items outside any conversation) at a time, read from one covering index with no row
lookups. Timelines are cut in batches: one query loads the batch's existing tickets (loaded ones
flagged from the ledger), `core.splitting` assigns the items, and the batch's item rows and
new or extended tickets are written in one transaction. A crash loses at most the batch in
flight: its items are still unassigned and the next run cuts them the same way. Memory holds a
batch (and the longest timeline of the window), not the window. No Dagster import.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, groupby
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from migration_pipeline.lib import ledger_keys
from migration_pipeline.lib.split_rules import SplitRules
from migration_pipeline.lib.splitting import ItemRef, TicketSpan, TimelineCutter, decode_change
from migration_pipeline.lib.staging.db import StagingDatabase, ledger, now_text, stream_rows, ticket_items, tickets, utc_text
from migration_pipeline.lib.staging.sql import model_sql

_parse = datetime.fromisoformat

# One splitter at a time across runs and the CLI (kept by a heartbeat; the TTL only matters
# when a splitter died).
SPLIT_LEASE = "split_tickets"
SPLIT_LEASE_TTL_SECONDS = 600.0
BATCH_ITEMS = 50_000  # items per transaction; a batch's rows are a few tens of MB
KEYS_PER_QUERY = 500

# int_unassigned_items columns: the splitter's four per-item fields, then the timeline's
SOURCE_ID, TS, CHANNEL, CHANGE, KEY, CUSTOMER = range(6)


@dataclass
class SplitCounts:
    items_assigned: int = 0
    tickets_created: int = 0
    tickets_extended: int = 0
    conversations: int = 0
    cut_reasons: dict[str, int] = field(default_factory=dict)  # new tickets by the rule that cut them


def item_ref(row: Any, kind: str | None = None) -> ItemRef:
    """A staged item as the rules see it, from a row (source_id, ts, channel, split_change, ...)."""
    status, added, removed = decode_change(row[CHANGE])
    return ItemRef(row[SOURCE_ID], _parse(row[TS]), kind, row[CHANNEL], added, removed, status)


def unassigned_timelines(conn: sa.Connection, lo: str, hi: str) -> Iterator[list[tuple]]:
    """The unassigned items of [lo, hi), one timeline's rows at a time (int_unassigned_items)."""
    chunks = stream_rows(conn, model_sql("int_unassigned_items"), {"lo": lo, "hi": hi}, 10_000)
    rows = chain.from_iterable(chunks)
    for _key, group in groupby(rows, key=itemgetter(KEY)):
        yield list(group)


def split_window(db: StagingDatabase, lo: str, hi: str, rules: SplitRules | None = None) -> SplitCounts:
    """Assign every unassigned item of [lo, hi) to a ticket under `rules` (default: the shipped rules)."""
    rules = rules or SplitRules.load()
    counts = SplitCounts()
    # The reader keeps its own snapshot (its own connection) while batches commit beside it.
    with db.engine.connect() as reader:
        any_tickets = reader.execute(sa.select(sa.exists().where(tickets.c.ticket_id.is_not(None)))).scalar()
        batch: list[list[tuple]] = []
        size = 0
        for timeline in unassigned_timelines(reader, lo, hi):
            batch.append(timeline)
            size += len(timeline)
            if size >= BATCH_ITEMS:
                _split_batch(db, batch, rules, counts, lo, hi, any_tickets)
                batch, size = [], 0
        _split_batch(db, batch, rules, counts, lo, hi, any_tickets)
    return counts


def _split_batch(
    db: StagingDatabase, batch: list[list[tuple]], rules: SplitRules, counts: SplitCounts, lo: str, hi: str,
    any_tickets: bool,
) -> None:
    if not batch:
        return
    ticket_rows: list[tuple] = []
    item_rows: list[tuple[str, str, str]] = []
    cut_at = now_text()
    with db.begin() as conn:
        existing = existing_tickets(conn, [t[0][KEY] for t in batch], lo, hi) if any_tickets else {}
        for timeline in batch:
            key, customer = timeline[0][KEY], timeline[0][CUSTOMER]
            cutter = TimelineCutter(key, existing.get(key, []), rules)
            item_rows += cutter.cut_staged(timeline)
            counts.conversations += 1
            for span in cutter.tickets:
                if not span.changed:
                    continue
                if span.is_new:
                    counts.tickets_created += 1
                    counts.cut_reasons[span.cut_reason] = counts.cut_reasons.get(span.cut_reason, 0) + 1
                else:
                    counts.tickets_extended += 1
                ticket_rows.append(ticket_row(span, customer, cut_at))
        counts.items_assigned += len(item_rows)
        # in key order: each index page is visited once per batch, not once per row
        write_rows(conn, tickets, sorted(ticket_rows), update=True)
        write_rows(conn, ticket_items, sorted(item_rows))


def write_rows(conn: sa.Connection, table: sa.Table, rows: list[Sequence[Any]], update: bool = False) -> None:
    """Multi-row insert of whole rows in column order through the driver's executemany, without
    per-row SQLAlchemy processing (a million item rows a run). On a key already present the row
    is kept (`update=False`) or replaced column by column."""
    if not rows:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    columns = [c.name for c in table.columns]
    keys = [c.name for c in table.primary_key.columns]
    action = "do nothing"
    if update:
        action = "do update set " + ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
    conn.exec_driver_sql(
        f"insert into {table.name} ({', '.join(columns)}) values ({', '.join([mark] * len(columns))}) "
        f"on conflict ({', '.join(keys)}) {action}",
        rows,
    )


def existing_tickets(conn: sa.Connection, keys: Iterable[str], lo: str, hi: str) -> dict[str, list[TicketSpan]]:
    """The tickets of these timelines that items of [lo, hi) can meet, loaded ones flagged from the
    ledger: those overlapping the window, the last one starting before it (the ticket a new item
    continues, or the one a reopen links back to) and the first one starting after it. Older
    tickets cannot receive an item of the window, so a delta's cost does not grow with history."""
    loaded = sa.exists().where(ledger.c.source_key == ledger_keys.ticket_sql(tickets.c.ticket_id), ledger.c.state == "done")
    found: dict[str, list[TicketSpan]] = {}
    keys = list(keys)
    for start in range(0, len(keys), KEYS_PER_QUERY):
        chunk = keys[start : start + KEYS_PER_QUERY]
        mine = tickets.c.conversation_id.in_(chunk)
        query = sa.select(tickets, loaded.label("loaded")).where(
            mine,
            sa.or_(
                sa.and_(tickets.c.first_ts < hi, tickets.c.last_ts >= lo),
                tickets.c.ticket_id.in_(_nearest(chunk, tickets.c.first_ts < lo, latest=True)),
                tickets.c.ticket_id.in_(_nearest(chunk, tickets.c.first_ts >= hi, latest=False)),
            ),
        )
        for r in conn.execute(query).mappings():
            found.setdefault(r["conversation_id"], []).append(span_from_row(r))
    return found


def _nearest(keys: list[str], where: Any, latest: bool) -> sa.Select:
    """Per timeline, the latest (or earliest) ticket in (first_ts, first item) order matching `where`."""
    order = (tickets.c.first_ts.desc(), tickets.c.first_item_id.desc()) if latest else (tickets.c.first_ts, tickets.c.first_item_id)
    ranked = (
        sa.select(
            tickets.c.ticket_id,
            sa.func.row_number().over(partition_by=tickets.c.conversation_id, order_by=order).label("rank"),
        )
        .where(tickets.c.conversation_id.in_(keys), where)
        .subquery()
    )
    return sa.select(ranked.c.ticket_id).where(ranked.c.rank == 1)


def span_from_row(r: Any) -> TicketSpan:
    topics = r["topics"]
    if isinstance(topics, str):
        topics = json.loads(topics)
    return TicketSpan(
        ticket_id=r["ticket_id"],
        conversation_id=r["conversation_id"],
        first_ts=_parse(r["first_ts"]),
        last_ts=_parse(r["last_ts"]),
        first_item_id=r["first_item_id"],
        item_count=r["item_count"],
        loaded=bool(r.get("loaded")),
        rule_version=r["rule_version"],
        cut_reason=r["cut_reason"] or "first",
        previous_ticket_id=r["previous_ticket_id"],
        last_channel=r["last_channel"],
        topics=frozenset(topics or ()),
        status=r["status"],
        status_ts=_parse(r["status_ts"]) if r["status_ts"] else None,
    )


def ticket_row(span: TicketSpan, customer_id: str, cut_at: str) -> tuple:
    """The ticket's row in `tickets` column order (see `write_rows`)."""
    return (
        span.ticket_id,
        span.conversation_id,
        customer_id,
        utc_text(span.first_ts),
        utc_text(span.last_ts),
        span.first_item_id,
        span.item_count,
        span.rule_version,
        cut_at,
        span.cut_reason,
        span.previous_ticket_id,
        span.last_channel,
        json.dumps(sorted(span.topics)),
        span.status,
        utc_text(span.status_ts) if span.status_ts else None,
    )
