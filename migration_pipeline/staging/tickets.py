"""Cut staged items into tickets (stage 3), persisting the cut so it is never redone.

Streams the staged items of a window that no ticket holds yet, one timeline (conversation, or a
customer's items outside any conversation) at a time, in the order the database returns them.
Timelines are processed in batches: one query loads the batch's existing tickets (loaded ones
flagged from the ledger), `core.splitting` assigns the items, and new and extended tickets are
written in one transaction per batch. A crash loses at most the batch in flight: its items are
still unassigned and the next run cuts them the same way. Memory is bounded by the batch, not by
the window. No Dagster import.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from typing import Any

import sqlalchemy as sa

from migration_pipeline.core.split_rules import SplitRules
from migration_pipeline.core.splitting import ItemRef, TicketSpan, assign_items
from migration_pipeline.staging.db import StagingDatabase, ledger, now_text, ticket_items, tickets, utc_text
from migration_pipeline.staging.sql import model_sql

BATCH_ITEMS = 20_000
KEYS_PER_QUERY = 500


@dataclass
class SplitCounts:
    items_assigned: int = 0
    tickets_created: int = 0
    tickets_extended: int = 0
    conversations: int = 0
    cut_reasons: dict[str, int] = field(default_factory=dict)  # new tickets by the rule that cut them


@dataclass
class Timeline:
    key: str
    customer_id: str
    items: list[ItemRef]
    ts_text: list[str]  # the staged timestamps, as stored, in step with `items`


def conversation_key(conversation_id: str | None, customer_id: str) -> str:
    return conversation_id or f"activity:{customer_id}"


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def item_ref(row: Any) -> ItemRef:
    """A staged item as the splitter sees it: time, channel, and for status/topic changes what changed."""
    source_id, _key, _customer, ts, kind, channel, payload = row
    if payload is None:
        return ItemRef(source_id, _parse(ts), kind, channel)
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    status = None
    content = (json.loads(payload) if isinstance(payload, str) else payload).get("content") or {}
    if kind == "TOPIC_CHANGE":
        added = tuple(str(t) for t in content.get("addedTopicIds") or ())
        removed = tuple(str(t) for t in content.get("removedTopicIds") or ())
    elif content.get("status"):
        status = str(content["status"]).upper()
    return ItemRef(source_id, _parse(ts), kind, channel, added, removed, status)


def unassigned_timelines(conn: sa.Connection, lo: str, hi: str) -> Iterator[Timeline]:
    """Unassigned items of [lo, hi), streamed one timeline at a time."""
    rows = conn.execution_options(stream_results=True, yield_per=5000).execute(
        sa.text(model_sql("int_unassigned_items")), {"lo": lo, "hi": hi}
    )
    for key, group in groupby(rows, key=lambda r: r[1]):
        group = list(group)
        yield Timeline(key, group[0][2], [item_ref(r) for r in group], [r[3] for r in group])


def split_window(db: StagingDatabase, lo: str, hi: str, rules: SplitRules | None = None) -> SplitCounts:
    """Assign every unassigned item of [lo, hi) to a ticket under `rules` (default: the rules file)."""
    rules = rules or SplitRules.load()
    counts = SplitCounts()
    # The reader keeps its own snapshot (its own connection) while batches commit beside it.
    with db.engine.connect() as reader:
        batch: list[Timeline] = []
        size = 0
        for timeline in unassigned_timelines(reader, lo, hi):
            batch.append(timeline)
            size += len(timeline.items)
            if size >= BATCH_ITEMS:
                _split_batch(db, batch, rules, counts, lo, hi)
                batch, size = [], 0
        _split_batch(db, batch, rules, counts, lo, hi)
    return counts


def _split_batch(
    db: StagingDatabase, batch: list[Timeline], rules: SplitRules, counts: SplitCounts, lo: str, hi: str
) -> None:
    if not batch:
        return
    ticket_rows: list[dict] = []
    item_rows: list[dict] = []
    with db.begin() as conn:
        existing = existing_tickets(conn, [t.key for t in batch], lo, hi)
        for timeline in batch:
            spans, assignments = assign_items(timeline.key, existing.get(timeline.key, []), timeline.items, rules)
            counts.conversations += 1
            counts.items_assigned += len(assignments)
            for span in spans:
                if not span.changed:
                    continue
                if span.is_new:
                    counts.tickets_created += 1
                    counts.cut_reasons[span.cut_reason] = counts.cut_reasons.get(span.cut_reason, 0) + 1
                else:
                    counts.tickets_extended += 1
                ticket_rows.append(ticket_row(span, timeline.customer_id))
            when = {i.item_id: text for i, text in zip(timeline.items, timeline.ts_text)}
            item_rows.extend((i, t, when[i]) for i, t in assignments)
        db.upsert(conn, tickets, ticket_rows)
        insert_new_rows(conn, ticket_items, item_rows)


def insert_new_rows(conn: sa.Connection, table: sa.Table, rows: list[tuple]) -> None:
    """Plain multi-row insert of whole rows in column order, skipping keys already present: the
    driver's executemany without per-row SQLAlchemy processing (a million item rows per run)."""
    if not rows:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    columns = [c.name for c in table.columns]
    keys = ", ".join(c.name for c in table.primary_key.columns)
    conn.exec_driver_sql(
        f"insert into {table.name} ({', '.join(columns)}) values ({', '.join([mark] * len(columns))}) "
        f"on conflict ({keys}) do nothing",
        rows,
    )


def existing_tickets(conn: sa.Connection, keys: Iterable[str], lo: str, hi: str) -> dict[str, list[TicketSpan]]:
    """The tickets of these timelines that items of [lo, hi) can meet, loaded ones flagged from the
    ledger: those overlapping the window, the last one starting before it (the ticket a new item
    continues, or the one a reopen links back to) and the first one starting after it. Older
    tickets cannot receive an item of the window, so a delta's cost does not grow with history."""
    loaded = sa.exists().where(ledger.c.source_key == sa.literal("ticket:") + tickets.c.ticket_id, ledger.c.state == "done")
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


def ticket_row(span: TicketSpan, customer_id: str) -> dict:
    return {
        "ticket_id": span.ticket_id,
        "conversation_id": span.conversation_id,
        "customer_id": customer_id,
        "first_ts": utc_text(span.first_ts),
        "last_ts": utc_text(span.last_ts),
        "first_item_id": span.first_item_id,
        "item_count": span.item_count,
        "rule_version": span.rule_version,
        "cut_at": now_text(),
        "cut_reason": span.cut_reason,
        "previous_ticket_id": span.previous_ticket_id,
        "last_channel": span.last_channel,
        "topics": sorted(span.topics),
        "status": span.status,
        "status_ts": utc_text(span.status_ts) if span.status_ts else None,
    }
