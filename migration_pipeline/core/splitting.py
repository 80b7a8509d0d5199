"""Cut a lifelong conversation into tickets by versioned rules, stable under re-runs.

Gladly keeps one conversation per customer for life; a target like Unthread wants discrete
tickets. Items are taken in (timestamp, item id) order; each rule may start a new ticket at an
item (see `split_rules` and `migration_pipeline/config/splitting_rules.yaml`):

- time_gap: more than `days` after the ticket's last item;
- reopen_after_dormancy: a status change to OPEN at least `closed_days` after the ticket was
  CLOSED (the new ticket links back to the closed one);
- channel_switch: a customer-facing channel other than the ticket's last one;
- topic_change: a topic change adding a topic the ticket (which already has topics) lacks;
- max_items_per_ticket: the ticket is full.

Stability (why this is not a plain loop over all items): tickets already cut are inputs, never
re-cut. A new item
1. joins the ticket whose span covers it (a late item: it falls inside [first, last));
2. else joins the ticket before it unless a rule cuts there (its state — last item, channel,
   topics, status, size — is kept on the ticket, so appending gives the cut one batch would);
3. else joins a not-yet-loaded ticket that starts at most the gap after it, extending its start;
4. else starts a new ticket.
So appending later items never changes an earlier ticket's membership, processing the same items
again assigns nothing new, and for the pure time-gap rules one batch equals the reference loop.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from migration_pipeline.core.split_rules import SplitRules

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
    rule_version: str = ""
    cut_reason: str = "first"  # the rule that started this ticket ("first": nothing before it)
    previous_ticket_id: str | None = None  # the closed ticket a reopen links back to
    # State the rules read when the next item arrives; persisted with the ticket.
    last_channel: str | None = None
    topics: frozenset[str] = field(default_factory=frozenset)
    status: str | None = None
    status_ts: datetime | None = None


class ItemRef(NamedTuple):
    """One item as the rules see it (a tuple: a million of them are cheap to build)."""

    item_id: str
    ts: datetime
    kind: str | None = None
    channel: str | None = None
    added_topics: tuple[str, ...] = ()
    removed_topics: tuple[str, ...] = ()
    status: str | None = None  # the new status of a status-change item, upper case


def ticket_id_for(conversation_id: str, first_item_id: str) -> str:
    """Deterministic: the same conversation and first item always give the same ticket id."""
    return "tkt_" + hashlib.sha256(f"{conversation_id}\x00{first_item_id}".encode()).hexdigest()[:20]


def assign_items(
    conversation_id: str,
    existing: list[TicketSpan],
    new_items: list[ItemRef],
    rules: SplitRules | timedelta | None = None,
) -> tuple[list[TicketSpan], list[tuple[str, str]]]:
    """Assign items to tickets. Returns (every ticket of the conversation in time order,
    [(item_id, ticket_id)] for the new items). `existing` spans are updated in place.
    `rules` defaults to the time-gap rule alone (7 days); a timedelta means that gap alone."""
    rules = _coerce(rules)
    if not existing:
        return _first_cut(conversation_id, new_items, rules)
    tickets = sorted(existing, key=lambda t: (t.first_ts, t.first_item_id))
    starts = [t.first_ts for t in tickets]  # kept in step with `tickets`, not rebuilt per item
    assignments: list[tuple[str, str]] = []
    for item in sorted(new_items, key=lambda i: (i.ts, i.item_id)):
        index = bisect_right(starts, item.ts) - 1
        ticket, reason = _home(tickets, index, item, rules)
        if ticket is None:
            ticket = _new_ticket(conversation_id, item, rules, reason, tickets[index] if index >= 0 else None)
            tickets.insert(index + 1, ticket)
            starts.insert(index + 1, item.ts)
            _absorb(ticket, item, rules)
        elif item.ts >= ticket.last_ts:
            _absorb(ticket, item, rules)
        else:
            if item.ts < ticket.first_ts:  # only the ticket right after the item moves its start
                ticket.first_ts = item.ts
                starts[index + 1] = item.ts
            ticket.item_count += 1  # a late item inside the span leaves the ticket's state alone
        ticket.changed = True
        assignments.append((item.item_id, ticket.ticket_id))
    return tickets, assignments


def _first_cut(conversation_id: str, new_items: list[ItemRef], rules: SplitRules) -> tuple[list[TicketSpan], list[tuple[str, str]]]:
    """A timeline with no tickets yet (every item of a backfill): the same rules as the general
    path in one tight loop, since every item is then the newest. The property tests hold the two
    paths equal (one batch vs chronological appends)."""
    tickets: list[TicketSpan] = []
    assignments: list[tuple[str, str]] = []
    ticket: TicketSpan | None = None
    gap_on = rules.rules.time_gap.enabled
    cap_on, cap = rules.rules.max_items_per_ticket.enabled, rules.rules.max_items_per_ticket.limit
    gap = rules.gap
    simple = not (rules.rules.reopen_after_dormancy.enabled or rules.rules.channel_switch.enabled or rules.rules.topic_change.enabled)
    for item in sorted(new_items, key=lambda i: (i.ts, i.item_id)):
        reason = None
        if ticket is None:
            reason = "first"
        elif simple:
            if gap_on and item.ts - ticket.last_ts > gap:
                reason = "time_gap"
            elif cap_on and ticket.item_count >= cap:
                reason = "max_items_per_ticket"
        else:
            reason = cut_reason(ticket, item, rules)
        if reason is not None:
            ticket = _new_ticket(conversation_id, item, rules, reason, ticket)
            ticket.changed = True
            tickets.append(ticket)
        _absorb(ticket, item, rules)  # state kept even when no rule reads it: rules may change later
        assignments.append((item.item_id, ticket.ticket_id))
    return tickets, assignments


def _new_ticket(conversation_id: str, item: ItemRef, rules: SplitRules, reason: str, before: TicketSpan | None) -> TicketSpan:
    """A ticket starting at `item`; a reopen links back to the ticket before it."""
    return TicketSpan(
        ticket_id=ticket_id_for(conversation_id, item.item_id),
        conversation_id=conversation_id,
        first_ts=item.ts,
        last_ts=item.ts,
        first_item_id=item.item_id,
        is_new=True,
        rule_version=rules.rule_version,
        cut_reason=reason,
        previous_ticket_id=before.ticket_id if reason == "reopen_after_dormancy" and before is not None else None,
    )


def cut_reason(ticket: TicketSpan, item: ItemRef, rules: SplitRules) -> str | None:
    """The rule that starts a new ticket at `item` after `ticket`'s last item, or None."""
    r = rules.rules
    if (
        r.reopen_after_dormancy.enabled
        and item.status == "OPEN"
        and ticket.status == "CLOSED"
        and ticket.status_ts is not None
        and item.ts - ticket.status_ts >= timedelta(days=r.reopen_after_dormancy.closed_days)
    ):
        return "reopen_after_dormancy"
    if r.time_gap.enabled and item.ts - ticket.last_ts > rules.gap:
        return "time_gap"
    if r.max_items_per_ticket.enabled and ticket.item_count >= r.max_items_per_ticket.limit:
        return "max_items_per_ticket"
    if (
        r.channel_switch.enabled
        and rules.counts_as_channel(item.channel)
        and ticket.last_channel is not None
        and item.channel != ticket.last_channel
    ):
        return "channel_switch"
    if r.topic_change.enabled and ticket.topics and not set(item.added_topics) <= ticket.topics:
        return "topic_change"
    return None


def _home(tickets: list[TicketSpan], index: int, item: ItemRef, rules: SplitRules) -> tuple[TicketSpan | None, str]:
    # Tickets never overlap and are sorted by start: `index` is the last one starting <= ts.
    before = tickets[index] if index >= 0 else None
    after = tickets[index + 1] if index + 1 < len(tickets) else None
    reason = "first"
    if before is not None:
        if item.ts < before.last_ts:
            return before, ""
        found = cut_reason(before, item, rules)
        if found is None:
            return before, ""
        reason = found
    if after is not None and not after.loaded and (not rules.rules.time_gap.enabled or after.first_ts - item.ts <= rules.gap):
        cap = rules.rules.max_items_per_ticket
        if not cap.enabled or after.item_count < cap.limit:
            return after, ""
    return None, reason


def _absorb(ticket: TicketSpan, item: ItemRef, rules: SplitRules) -> None:
    """`item` becomes the ticket's newest item: update the state the rules read."""
    ticket.item_count += 1
    ticket.last_ts = item.ts
    if rules.counts_as_channel(item.channel):
        ticket.last_channel = item.channel
    if item.added_topics or item.removed_topics:
        ticket.topics = (ticket.topics - set(item.removed_topics)) | set(item.added_topics)
    if item.status is not None:
        ticket.status, ticket.status_ts = item.status, item.ts


def _coerce(rules: SplitRules | timedelta | None) -> SplitRules:
    if rules is None:
        return SplitRules.time_gap_only(DEFAULT_GAP)
    if isinstance(rules, timedelta):
        return SplitRules.time_gap_only(rules)
    return rules


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
