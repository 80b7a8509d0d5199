"""The time-gap splitter: reference equivalence, stability, and the invariants, with hypothesis."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from migration_pipeline.core.splitting import ItemRef, assign_items, reference_time_gap_split, ticket_id_for

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GAP = timedelta(days=7)


def _items(offsets_hours: list[int]) -> list[ItemRef]:
    return [ItemRef(f"i{n:04d}", T0 + timedelta(hours=h)) for n, h in enumerate(offsets_hours)]


def _groups(tickets, assignments) -> list[list[str]]:
    members: dict[str, list[str]] = {t.ticket_id: [] for t in tickets}
    for item_id, ticket_id in assignments:
        members[ticket_id].append(item_id)
    return [members[t.ticket_id] for t in tickets]


offsets = st.lists(st.integers(min_value=0, max_value=24 * 90), min_size=1, max_size=60)


@given(offsets)
def test_one_batch_equals_the_reference_rule(hours):
    items = _items(hours)
    tickets, assignments = assign_items("conv", [], items, GAP)
    assert _groups(tickets, assignments) == reference_time_gap_split(items, GAP)


@given(offsets, st.integers(min_value=0, max_value=60))
@settings(max_examples=200)
def test_every_item_in_exactly_one_ticket_and_tickets_do_not_overlap(hours, cut):
    items = _items(hours)
    ordered = sorted(items, key=lambda i: (i.ts, i.item_id))
    first, second = ordered[:cut], ordered[cut:]
    tickets, a1 = assign_items("conv", [], first, GAP)
    tickets, a2 = assign_items("conv", tickets, second, GAP)
    assigned = [i for i, _ in a1 + a2]
    assert sorted(assigned) == sorted(i.item_id for i in items)
    for earlier, later in zip(tickets, tickets[1:]):
        assert earlier.last_ts < later.first_ts
    assert sum(t.item_count for t in tickets) == len(items)


@given(offsets, st.integers(min_value=1, max_value=30))
def test_appending_later_items_never_changes_earlier_tickets(hours, extra):
    items = _items(hours)
    tickets, assignments = assign_items("conv", [], items, GAP)
    before = {item: ticket for item, ticket in assignments}
    latest = max(i.ts for i in items)
    later = [ItemRef(f"z{n:03d}", latest + timedelta(hours=n * 13)) for n in range(1, extra + 1)]
    tickets, more = assign_items("conv", tickets, later, GAP)
    assert {i for i, _ in more} == {i.item_id for i in later}
    assert all(before[i] == t for i, t in assignments)  # earlier assignments untouched


@given(offsets)
def test_deterministic_ids(hours):
    items = _items(hours)
    a = assign_items("conv", [], items, GAP)[1]
    b = assign_items("conv", [], list(reversed(items)), GAP)[1]
    assert sorted(a) == sorted(b)


def test_ties_in_timestamp_broken_by_item_id():
    same = T0 + timedelta(days=1)
    items = [ItemRef("b", same), ItemRef("a", same), ItemRef("c", T0 + timedelta(days=30))]
    tickets, assignments = assign_items("conv", [], items, GAP)
    assert [i for i, _ in assignments] == ["a", "b", "c"]
    assert tickets[0].first_item_id == "a" and tickets[0].ticket_id == ticket_id_for("conv", "a")
    assert len(tickets) == 2


def test_late_item_joins_the_ticket_covering_it_and_loaded_tickets_are_not_extended_backwards():
    items = _items([0, 10, 24 * 30, 24 * 30 + 5])
    tickets, _ = assign_items("conv", [], items, GAP)
    assert len(tickets) == 2
    tickets[1].loaded = True
    late_inside = ItemRef("late1", T0 + timedelta(hours=5))
    just_before_loaded = ItemRef("late2", T0 + timedelta(days=29))
    tickets, assignments = assign_items("conv", tickets, [late_inside, just_before_loaded], GAP)
    homes = dict(assignments)
    assert homes["late1"] == tickets[0].ticket_id
    assert homes["late2"] not in {t.ticket_id for t in tickets if t.loaded}
    assert len(tickets) == 3
