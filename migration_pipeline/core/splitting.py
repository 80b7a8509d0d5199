"""Cut a lifelong conversation into tickets: the time-gap rule, stable under re-runs.

Gladly keeps one conversation per customer for life; a target like Unthread wants discrete
tickets. Rule `timegap-v1`: items sorted by (timestamp, item id); an item more than `gap` after
the previous one starts a new ticket.

Stability (why this is not a plain loop over all items): tickets already cut are inputs, never
re-cut. A new item
1. joins the ticket whose span [first, last] covers it (a late item);
2. else joins the ticket that ended at most `gap` before it, extending that ticket's end;
3. else joins a not-yet-loaded ticket that starts at most `gap` after it, extending its start;
4. else starts a new ticket.
So appending later items never changes an earlier ticket's membership, and processing the same
items again assigns nothing new. The full rules engine (channel switch, topic change, reopen
after dormancy, size cap) is a separate issue.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta

RULE_VERSION = "timegap-v1"
DEFAULT_GAP = timedelta(days=7)


@dataclass
class TicketSpan:
    ticket_id: str
    conversation_id: str
    first_ts: datetime
    last_ts: datetime
    first_item_id: str
    item_count: int = 0
    loaded: bool = False
    is_new: bool = False
    changed: bool = False


@dataclass(frozen=True)
class ItemRef:
    item_id: str
    ts: datetime


def ticket_id_for(conversation_id: str, first_item_id: str) -> str:
    """Deterministic: the same conversation and first item always give the same ticket id."""
    return "tkt_" + hashlib.sha256(f"{conversation_id}\x00{first_item_id}".encode()).hexdigest()[:20]


def assign_items(
    conversation_id: str,
    existing: list[TicketSpan],
    new_items: list[ItemRef],
    gap: timedelta = DEFAULT_GAP,
) -> tuple[list[TicketSpan], list[tuple[str, str]]]:
    """Assign items to tickets. Returns (every ticket of the conversation in time order,
    [(item_id, ticket_id)] for the new items). `existing` spans are updated in place."""
    tickets = sorted(existing, key=lambda t: (t.first_ts, t.ticket_id))
    starts = [t.first_ts for t in tickets]  # kept in step with `tickets`, not rebuilt per item
    assignments: list[tuple[str, str]] = []
    for item in sorted(new_items, key=lambda i: (i.ts, i.item_id)):
        index = bisect_right(starts, item.ts) - 1
        ticket = _home(tickets, index, item, gap)
        if ticket is None:
            ticket = TicketSpan(
                ticket_id=ticket_id_for(conversation_id, item.item_id),
                conversation_id=conversation_id,
                first_ts=item.ts,
                last_ts=item.ts,
                first_item_id=item.item_id,
                is_new=True,
            )
            tickets.insert(index + 1, ticket)
            starts.insert(index + 1, item.ts)
        else:
            if item.ts > ticket.last_ts:
                ticket.last_ts = item.ts
            if item.ts < ticket.first_ts:  # only the ticket right after the item moves its start
                ticket.first_ts = item.ts
                starts[index + 1] = item.ts
        ticket.item_count += 1
        ticket.changed = True
        assignments.append((item.item_id, ticket.ticket_id))
    return tickets, assignments


def _home(tickets: list[TicketSpan], index: int, item: ItemRef, gap: timedelta) -> TicketSpan | None:
    # Tickets never overlap and are sorted by start: `index` is the last one starting <= ts.
    before = tickets[index] if index >= 0 else None
    after = tickets[index + 1] if index + 1 < len(tickets) else None
    if before is not None and item.ts <= before.last_ts:
        return before
    if before is not None and item.ts - before.last_ts <= gap:
        return before
    if after is not None and not after.loaded and after.first_ts - item.ts <= gap:
        return after
    return None


def reference_time_gap_split(items: list[ItemRef], gap: timedelta = DEFAULT_GAP) -> list[list[str]]:
    """The straightforward rule on a whole timeline at once (load all, sort, loop): the oracle
    that `assign_items` must match when every item arrives in one batch."""
    groups: list[list[str]] = []
    last: datetime | None = None
    for item in sorted(items, key=lambda i: (i.ts, i.item_id)):
        if last is None or item.ts - last > gap:
            groups.append([])
        groups[-1].append(item.item_id)
        last = item.ts
    return groups
