"""How one customer's or conversation's timeline would be cut, under the current rules and a
candidate rules file, without writing anything: for review rounds with support ops before the
real run. No Dagster import.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import groupby

import sqlalchemy as sa

from migration_pipeline.lib.split_rules import SplitRules
from migration_pipeline.lib.splitting import ItemRef, assign_items
from migration_pipeline.lib.staging.db import StagingDatabase, ticket_items
from migration_pipeline.lib.staging.sql import model_sql
from migration_pipeline.lib.staging.tickets import item_ref


@dataclass
class PreviewTicket:
    ticket_id: str
    first_ts: str
    last_ts: str
    items: list[str]
    channels: dict[str, int]
    cut_reason: str
    previous_ticket_id: str | None


@dataclass
class TimelinePreview:
    conversation_key: str
    items: int
    tickets: list[PreviewTicket] = field(default_factory=list)
    staged_tickets: int = 0  # tickets already cut in staging for this timeline (any rules)


def timeline_items(db: StagingDatabase, customer_id: str | None, conversation_id: str | None) -> dict[str, list[ItemRef]]:
    """Every staged item of the customer (or conversation), by timeline."""
    params = {"customer_id": customer_id, "conversation_id": conversation_id}
    with db.engine.connect() as conn:
        rows = conn.execute(sa.text(model_sql("int_timeline_items")), params)
        return {key: [item_ref(r, r.kind) for r in group] for key, group in groupby(rows, key=lambda r: r.conversation_key)}


def preview(timelines: dict[str, list[ItemRef]], rules: SplitRules) -> list[TimelinePreview]:
    """Cut each timeline from scratch in one batch (what a first full run would do)."""
    out = []
    for key, items in timelines.items():
        spans, assignments = assign_items(key, [], items, rules)
        home = dict(assignments)
        channel = {i.item_id: i.channel or i.kind or "?" for i in items}
        members: dict[str, list[str]] = {s.ticket_id: [] for s in spans}
        for item in sorted(items, key=lambda i: (i.ts, i.item_id)):
            members[home[item.item_id]].append(item.item_id)
        result = TimelinePreview(key, len(items))
        for span in spans:
            ids = members[span.ticket_id]
            result.tickets.append(
                PreviewTicket(
                    span.ticket_id,
                    span.first_ts.strftime("%Y-%m-%d %H:%M"),
                    span.last_ts.strftime("%Y-%m-%d %H:%M"),
                    ids,
                    dict(Counter(channel[i] for i in ids)),
                    span.cut_reason,
                    span.previous_ticket_id,
                )
            )
        out.append(result)
    return out


def count_staged_tickets(db: StagingDatabase, timelines: dict[str, list[ItemRef]]) -> dict[str, int]:
    """How many tickets each timeline already has in staging (cut by an earlier run)."""
    ids = [i.item_id for items in timelines.values() for i in items]
    found: dict[str, set[str]] = {key: set() for key in timelines}
    key_of = {i.item_id: key for key, items in timelines.items() for i in items}
    with db.engine.connect() as conn:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for item_id, ticket_id in conn.execute(
                sa.select(ticket_items.c.item_id, ticket_items.c.ticket_id).where(ticket_items.c.item_id.in_(chunk))
            ):
                found[key_of[item_id]].add(ticket_id)
    return {key: len(tickets) for key, tickets in found.items()}


def moved_items(current: list[TimelinePreview], candidate: list[TimelinePreview]) -> int:
    """Items whose ticket grouping differs between two previews (same first item = same ticket)."""
    def grouping(previews: list[TimelinePreview]) -> dict[str, str]:
        return {item: t.items[0] for p in previews for t in p.tickets for item in t.items}

    a, b = grouping(current), grouping(candidate)
    return sum(a[item] != b.get(item) for item in a)
