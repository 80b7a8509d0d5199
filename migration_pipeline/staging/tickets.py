"""Cut staged items into tickets (stage 3), persisting the cut so it is never redone.

Reads the staged items of a window that no ticket holds yet, groups them by conversation
(items outside any conversation form a per-customer activity timeline), loads that
conversation's existing tickets (loaded ones flagged from the ledger), applies the splitting
rule from `core.splitting` and writes new and extended tickets in one transaction.
No Dagster import.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from migration_pipeline.core.splitting import DEFAULT_GAP, RULE_VERSION, ItemRef, TicketSpan, assign_items
from migration_pipeline.staging.db import (
    StagingDatabase,
    ledger,
    now_text,
    ticket_items,
    tickets,
    utc_text,
)
from migration_pipeline.staging.sql import model_sql


@dataclass
class SplitCounts:
    items_assigned: int = 0
    tickets_created: int = 0
    tickets_extended: int = 0
    conversations: int = 0


def conversation_key(conversation_id: str | None, customer_id: str) -> str:
    return conversation_id or f"activity:{customer_id}"


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def split_window(db: StagingDatabase, lo: str, hi: str, gap: timedelta = DEFAULT_GAP) -> SplitCounts:
    counts = SplitCounts()
    with db.begin() as conn:
        by_conversation: dict[str, list[ItemRef]] = defaultdict(list)
        customer_of: dict[str, str] = {}
        for row in conn.execute(sa.text(model_sql("int_unassigned_items")), {"lo": lo, "hi": hi}):
            key = conversation_key(row.conversation_id, row.surviving_id)
            by_conversation[key].append(ItemRef(row.source_id, _parse(row.ts)))
            customer_of.setdefault(key, row.surviving_id)
        counts.conversations = len(by_conversation)
        for key in sorted(by_conversation):
            existing = _existing_tickets(conn, key)
            spans, assignments = assign_items(key, existing, by_conversation[key], gap)
            changed = [t for t in spans if t.changed]
            counts.items_assigned += len(assignments)
            counts.tickets_created += sum(t.is_new for t in changed)
            counts.tickets_extended += sum(not t.is_new for t in changed)
            db.upsert(conn, tickets, [_ticket_row(t, customer_of[key]) for t in changed])
            when = {i.item_id: i.ts for i in by_conversation[key]}
            db.upsert(
                conn,
                ticket_items,
                [{"item_id": i, "ticket_id": t, "ts": utc_text(when[i])} for i, t in assignments],
            )
    return counts


def _existing_tickets(conn, key: str) -> list[TicketSpan]:
    loaded = sa.exists().where(ledger.c.source_key == sa.literal("ticket:") + tickets.c.ticket_id, ledger.c.state == "done")
    rows = conn.execute(sa.select(tickets, loaded.label("loaded")).where(tickets.c.conversation_id == key)).mappings()
    return [
        TicketSpan(
            ticket_id=r["ticket_id"],
            conversation_id=key,
            first_ts=_parse(r["first_ts"]),
            last_ts=_parse(r["last_ts"]),
            first_item_id=r["first_item_id"],
            item_count=r["item_count"],
            loaded=bool(r["loaded"]),
        )
        for r in rows
    ]


def _ticket_row(span: TicketSpan, customer_id: str) -> dict:
    return {
        "ticket_id": span.ticket_id,
        "conversation_id": span.conversation_id,
        "customer_id": customer_id,
        "first_ts": utc_text(span.first_ts),
        "last_ts": utc_text(span.last_ts),
        "first_item_id": span.first_item_id,
        "item_count": span.item_count,
        "rule_version": RULE_VERSION,
        "cut_at": now_text(),
    }
