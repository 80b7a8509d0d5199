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
import json
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from migration_pipeline.lib.split_rules import SplitRules
from migration_pipeline.lib.timestamps import utc_text

DEFAULT_GAP = timedelta(days=7)


@dataclass(slots=True)
class TicketSpan:
    ticket_id: str
    conversation_id: str
    first_ts: datetime
    last_ts: datetime
    first_item_id: str
    item_count: int = 0
    loaded: bool = False
    is_new: bool = False
    changed: bool = False  # took an item in this run
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


def encode_change(status: str | None, added: tuple[str, ...] = (), removed: tuple[str, ...] = ()) -> str | None:
    """A change item's effect as stored for the splitter: the new status (upper case) as is, or
    the topic ids as JSON `[added, removed]`; None when nothing changed that a rule reads."""
    if added or removed:
        return json.dumps([list(added), list(removed)])
    return status.upper() if status else None


def decode_change(text: str | None) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
    """(status, added topic ids, removed topic ids) from `encode_change`'s text."""
    if not text:
        return None, (), ()
    if text[0] == "[":
        added, removed = json.loads(text)
        return None, tuple(added), tuple(removed)
    return text, (), ()


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
    cutter = TimelineCutter(conversation_id, existing, _coerce(rules))
    assignments = [(item.item_id, cutter.add(*item).ticket_id) for item in sorted(new_items, key=_order)]
    return cutter.tickets, assignments


def _order(item: ItemRef) -> tuple[datetime, str]:
    return (item.ts, item.item_id)


class TimelineCutter:
    """One timeline's tickets, taking new items one at a time (`add`) or as staging streams them
    (`cut_staged`). Items may come in any order (a late item falls into the ticket covering it);
    in (timestamp, item id) order, as a backfill brings them, each is the timeline's newest, so
    only the last ticket's state is read."""

    __slots__ = ("conversation_id", "rules", "tickets", "_starts")

    def __init__(self, conversation_id: str, existing: list[TicketSpan], rules: SplitRules):
        self.conversation_id = conversation_id
        self.rules = rules
        self.tickets = sorted(existing, key=lambda t: (t.first_ts, t.first_item_id))
        self._starts = [t.first_ts for t in self.tickets]  # kept in step with `tickets`

    def add(
        self,
        item_id: str,
        ts: datetime,
        kind: str | None = None,
        channel: str | None = None,
        added_topics: tuple[str, ...] = (),
        removed_topics: tuple[str, ...] = (),
        status: str | None = None,
    ) -> TicketSpan:
        """Put the item (the fields of an `ItemRef`) in its ticket — an existing one, or a new
        one it starts — and return that ticket. The exact rule path (`cut_reason`)."""
        item = ItemRef(item_id, ts, kind, channel, added_topics, removed_topics, status)
        tickets, starts = self.tickets, self._starts
        index = bisect_right(starts, item.ts) - 1
        ticket, reason = _home(tickets, index, item, self.rules)
        if ticket is None:
            ticket = _new_ticket(self.conversation_id, item.item_id, item.ts, self.rules, reason,
                                 tickets[index] if index >= 0 else None)
            tickets.insert(index + 1, ticket)
            starts.insert(index + 1, item.ts)
            _absorb(ticket, item, self.rules)
        elif item.ts >= ticket.last_ts:
            _absorb(ticket, item, self.rules)
        else:
            if item.ts < ticket.first_ts:  # only the ticket right after the item moves its start
                ticket.first_ts = item.ts
                starts[index + 1] = item.ts
            ticket.item_count += 1  # a late item inside the span leaves the ticket's state alone
        ticket.changed = True
        return ticket

    def cut_staged(self, rows: Iterable[Sequence[Any]]) -> list[tuple[str, str, str]]:
        """Add a timeline's items as staging streams them — rows starting (item id, timestamp
        as `utc_text`, channel, change as `encode_change` text) — in (ts, id) order. Returns
        (item id, ticket id, timestamp text) per item.

        The same cut as `add`, item by item; a backfill sends a million items through here, so
        the common item (the newest, no rule firing) stays in this loop's locals: times are
        compared as text (the encoding orders as time does), and the time-gap rule against a
        deadline (the last item's time plus the gap when the ticket was picked up), which can
        only be early. Anything else — a late item, a rule that may fire, an item past the
        deadline — takes the exact path through `add`."""
        out: list[tuple[str, str, str]] = []
        append, parse = out.append, datetime.fromisoformat
        r = self.rules.rules
        gap = self.rules.gap if r.time_gap.enabled else None
        cap = r.max_items_per_ticket.limit if r.max_items_per_ticket.enabled else None
        switch, ignore = r.channel_switch.enabled, frozenset(r.channel_switch.ignore_channels)
        reopen_on, topic_on = r.reopen_after_dormancy.enabled, r.topic_change.enabled
        tickets = self.tickets
        never = "\uffff"  # sorts after every timestamp: no deadline when the time-gap rule is off
        last: TicketSpan | None = None
        # The newest ticket's state while items join it, written back before `add` and at the end.
        ticket_id, count, last_text, last_channel, deadline = "", 0, "", None, never

        def pick_up(ticket: TicketSpan, text: str | None = None) -> None:
            nonlocal last, ticket_id, count, last_text, last_channel, deadline
            last, ticket_id, count, last_channel = ticket, ticket.ticket_id, ticket.item_count, ticket.last_channel
            last_text = text or utc_text(ticket.last_ts)
            deadline = utc_text(ticket.last_ts + gap) if gap is not None else never

        def put_back() -> None:  # items joined `last` since it was picked up
            if last is not None and count != last.item_count:
                last.item_count, last.last_ts, last.last_channel, last.changed = count, parse(last_text), last_channel, True

        if tickets:
            pick_up(tickets[-1])
        for row in rows:
            item_id, ts_text, channel, change = row[0], row[1], row[2], row[3]
            status, added, removed = decode_change(change) if change is not None else (None, (), ())
            if (
                last is not None
                and last_text <= ts_text <= deadline
                and (cap is None or count < cap)
                and not (switch and channel is not None and channel not in ignore
                         and last_channel is not None and channel != last_channel)
                # a change joins here unless reopen or topic change might cut at it
                and not ((reopen_on and status == "OPEN") or (topic_on and added))
            ):
                if change is not None:
                    _absorb_change(last, parse(ts_text), added, removed, status)
                count += 1
                last_text = ts_text
                if channel is not None and channel not in ignore:
                    last_channel = channel
                append((item_id, ticket_id, ts_text))
                continue
            put_back()
            ts = parse(ts_text)
            ticket = self.add(item_id, ts, None, channel, added, removed, status)
            append((item_id, ticket.ticket_id, ts_text))
            newest = tickets[-1]
            pick_up(newest, ts_text if newest.last_ts == ts else None)
        put_back()
        return out


def _new_ticket(conversation_id: str, item_id: str, ts: datetime, rules: SplitRules, reason: str,
                before: TicketSpan | None) -> TicketSpan:
    """A ticket starting at the item; a reopen links back to the ticket before it."""
    return TicketSpan(
        ticket_id=ticket_id_for(conversation_id, item_id),
        conversation_id=conversation_id,
        first_ts=ts,
        last_ts=ts,
        first_item_id=item_id,
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
    _absorb_change(ticket, item.ts, item.added_topics, item.removed_topics, item.status)


def _absorb_change(ticket: TicketSpan, ts: datetime, added: tuple[str, ...], removed: tuple[str, ...],
                   status: str | None) -> None:
    # State is kept even when no rule reads it: the rules may change before the next item.
    if added or removed:
        ticket.topics = (ticket.topics - set(removed)) | set(added)
    if status is not None:
        ticket.status, ticket.status_ts = status, ts


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
