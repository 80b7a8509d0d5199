"""The time-gap splitter: reference equivalence, stability, and the invariants, with hypothesis."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migration_pipeline.lib.timestamps import utc_text
from migration_pipeline.lib.splitting import (
    ItemRef,
    TimelineCutter,
    assign_items,
    decode_change,
    encode_change,
    reference_time_gap_split,
    ticket_id_for,
)

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


# -- the full rules engine -------------------------------------------------------------------
from migration_pipeline.lib.split_rules import (  # noqa: E402
    ChannelSwitchRule,
    ReopenRule,
    RuleSet,
    RulesFileError,
    SizeCapRule,
    SplitRules,
    TimeGapRule,
    TopicChangeRule,
)

ALL_RULES = SplitRules(
    version="test",
    rules=RuleSet(
        time_gap=TimeGapRule(days=7),
        reopen_after_dormancy=ReopenRule(enabled=True, closed_days=2),
        channel_switch=ChannelSwitchRule(enabled=True),
        topic_change=TopicChangeRule(enabled=True),
        max_items_per_ticket=SizeCapRule(enabled=True, limit=5),
    ),
)

item_kinds = st.sampled_from(["EMAIL", "CHAT_MESSAGE", "SMS", "CONVERSATION_NOTE", "TOPIC_CHANGE", "STATUS"])
CHANNEL_OF = {"EMAIL": "email", "CHAT_MESSAGE": "chat", "SMS": "sms", "CONVERSATION_NOTE": "note"}


@st.composite
def timelines(draw, max_size=50):
    """Random timelines of messages, notes, topic changes and status changes (with ties)."""
    n = draw(st.integers(min_value=1, max_value=max_size))
    refs = []
    for i in range(n):
        hour = draw(st.integers(min_value=0, max_value=24 * 60))
        kind = draw(item_kinds)
        ts = T0 + timedelta(hours=hour)
        if kind == "TOPIC_CHANGE":
            added = tuple(draw(st.lists(st.sampled_from("ABC"), max_size=2, unique=True)))
            refs.append(ItemRef(f"i{i:03d}", ts, kind, "system", added, ()))
        elif kind == "STATUS":
            status = draw(st.sampled_from(["OPEN", "CLOSED"]))
            refs.append(ItemRef(f"i{i:03d}", ts, "CONVERSATION_STATUS_CHANGE", "system", status=status))
        else:
            refs.append(ItemRef(f"i{i:03d}", ts, kind, CHANNEL_OF[kind]))
    return refs


def _order(item: ItemRef):
    return (item.ts, item.item_id)


@given(timelines(), st.data())
@settings(max_examples=300)
def test_all_rules_every_item_once_chronological_and_stable_under_appending(items, data):
    ordered = sorted(items, key=_order)
    batch_tickets, batch_assignments = assign_items("conv", [], items, ALL_RULES)
    # chronological appends (any number of cuts) give exactly the one-batch result
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(ordered)), max_size=4)))
    tickets, assignments, previous = [], [], 0
    for cut in [*cuts, len(ordered)]:
        snapshot = {i: t for i, t in assignments}
        tickets, more = assign_items("conv", tickets, ordered[previous:cut], ALL_RULES)
        assert {i: t for i, t in assignments} == snapshot  # appending never moves an earlier item
        assignments += more
        previous = cut
    assert sorted(assignments) == sorted(batch_assignments)
    assert [t.ticket_id for t in tickets] == [t.ticket_id for t in batch_tickets]
    # every item in exactly one ticket; tickets chronological and not overlapping
    assert sorted(i for i, _ in assignments) == sorted(i.item_id for i in items)
    by_ticket: dict[str, list[ItemRef]] = {}
    home = dict(assignments)
    for item in ordered:
        by_ticket.setdefault(home[item.item_id], []).append(item)
    spans = [(_order(by_ticket[t.ticket_id][0]), _order(by_ticket[t.ticket_id][-1])) for t in tickets]
    assert all(a_last < b_first for (_, a_last), (b_first, _) in zip(spans, spans[1:]))
    assert all(len(by_ticket[t.ticket_id]) <= ALL_RULES.rules.max_items_per_ticket.limit for t in tickets)
    assert all(t.rule_version == ALL_RULES.rule_version for t in tickets)


@given(timelines())
def test_all_rules_deterministic_whatever_the_input_order(items):
    a = assign_items("conv", [], items, ALL_RULES)
    b = assign_items("conv", [], list(reversed(items)), ALL_RULES)
    assert a[1] == b[1]
    assert [(t.ticket_id, t.cut_reason, t.previous_ticket_id) for t in a[0]] == [
        (t.ticket_id, t.cut_reason, t.previous_ticket_id) for t in b[0]
    ]


def _only(**rules) -> SplitRules:
    base = {"time_gap": TimeGapRule(enabled=False)}
    return SplitRules(version="t", rules=RuleSet(**{**base, **rules}))


def _cut(items, rules):
    tickets, assignments = assign_items("conv", [], items, rules)
    home = dict(assignments)
    return [[i.item_id for i in sorted(items, key=_order) if home[i.item_id] == t.ticket_id] for t in tickets], tickets


def test_reopen_after_dormancy_starts_a_ticket_that_links_back():
    day = timedelta(days=1)
    items = [
        ItemRef("a", T0, "EMAIL", "email"),
        ItemRef("b", T0 + day, "CONVERSATION_STATUS_CHANGE", "system", status="CLOSED"),
        ItemRef("c", T0 + 2 * day, "CONVERSATION_STATUS_CHANGE", "system", status="OPEN"),  # 1 day: same ticket
        ItemRef("d", T0 + 3 * day, "CONVERSATION_STATUS_CHANGE", "system", status="CLOSED"),
        ItemRef("e", T0 + 8 * day, "CONVERSATION_STATUS_CHANGE", "system", status="OPEN"),  # 5 days closed
        ItemRef("f", T0 + 8 * day, "EMAIL", "email"),
    ]
    groups, tickets = _cut(items, _only(reopen_after_dormancy=ReopenRule(enabled=True, closed_days=3)))
    assert groups == [["a", "b", "c", "d"], ["e", "f"]]
    assert tickets[1].cut_reason == "reopen_after_dormancy"
    assert tickets[1].previous_ticket_id == tickets[0].ticket_id
    assert tickets[0].previous_ticket_id is None and tickets[0].cut_reason == "first"


def test_channel_switch_ignores_notes_and_system_items():
    h = timedelta(hours=1)
    items = [
        ItemRef("a", T0, "EMAIL", "email"),
        ItemRef("b", T0 + h, "CONVERSATION_NOTE", "note"),
        ItemRef("c", T0 + 2 * h, "EMAIL", "email"),
        ItemRef("d", T0 + 3 * h, "CHAT_MESSAGE", "chat"),
        ItemRef("e", T0 + 4 * h, "CHAT_MESSAGE", "chat"),
    ]
    groups, tickets = _cut(items, _only(channel_switch=ChannelSwitchRule(enabled=True)))
    assert groups == [["a", "b", "c"], ["d", "e"]]
    assert tickets[1].cut_reason == "channel_switch"


def test_topic_change_cuts_only_once_the_ticket_has_a_topic():
    h = timedelta(hours=1)
    items = [
        ItemRef("a", T0, "EMAIL", "email"),
        ItemRef("b", T0 + h, "TOPIC_CHANGE", "system", ("billing",)),  # the ticket's first topic
        ItemRef("c", T0 + 2 * h, "TOPIC_CHANGE", "system", ("billing",)),  # nothing new
        ItemRef("d", T0 + 3 * h, "TOPIC_CHANGE", "system", ("shipping",), ("billing",)),
        ItemRef("e", T0 + 4 * h, "EMAIL", "email"),
    ]
    groups, tickets = _cut(items, _only(topic_change=TopicChangeRule(enabled=True)))
    assert groups == [["a", "b", "c"], ["d", "e"]]
    assert tickets[1].cut_reason == "topic_change" and tickets[1].topics == {"shipping"}


def test_size_cap_and_time_gap_together():
    items = _items([0, 1, 2, 3, 4, 24 * 10, 24 * 10 + 1])
    groups, tickets = _cut(
        items,
        SplitRules(version="t", rules=RuleSet(max_items_per_ticket=SizeCapRule(enabled=True, limit=2))),
    )
    assert groups == [["i0000", "i0001"], ["i0002", "i0003"], ["i0004"], ["i0005", "i0006"]]
    assert [t.cut_reason for t in tickets] == ["first", "max_items_per_ticket", "max_items_per_ticket", "time_gap"]


def test_shipped_rules_file_is_valid_and_versioned():
    rules = SplitRules.load()
    assert rules.rules.time_gap.enabled and rules.rules.time_gap.days == 7
    assert rules.rule_version.startswith(f"v{rules.version}+")
    assert len(rules.rule_version) <= 32  # fits tickets.rule_version


def test_an_edit_without_a_version_bump_still_changes_the_recorded_version(tmp_path):
    text = (SplitRules.load().model_dump_json())
    shipped = SplitRules.model_validate_json(text)
    edited = shipped.model_copy(update={"rules": shipped.rules.model_copy(update={"time_gap": TimeGapRule(days=3)})})
    assert edited.version == shipped.version and edited.rule_version != shipped.rule_version


def test_rules_file_errors_name_the_file_and_the_field(tmp_path, monkeypatch):
    bad = tmp_path / "rules.yaml"
    bad.write_text("version: 3\nrules:\n  time_gap: {enabled: true, days: -1}\n  max_items: {limit: 5}\n")
    with pytest.raises(RulesFileError) as err:
        SplitRules.load(bad)
    assert str(bad) in str(err.value)
    assert "rules.time_gap.days" in str(err.value) and "rules.max_items" in str(err.value)
    with pytest.raises(RulesFileError, match="cannot read"):
        SplitRules.load(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("version: [unclosed\n")
    with pytest.raises(RulesFileError, match="not valid YAML"):
        SplitRules.load(tmp_path / "broken.yaml")
    good = tmp_path / "good.yaml"
    good.write_text("version: 9\nrules:\n  time_gap: {days: 2}\n")
    from migration_pipeline.settings import load_settings

    monkeypatch.setenv("MIGRATION_SPLIT_RULES", str(good))  # read by the settings, handed in as a path
    assert SplitRules.load(load_settings().split_rules).rules.time_gap.days == 2
    assert SplitRules.load().rules.time_gap.days != 2  # the shipped file


def _staged_rows(items):
    """The items as staging streams them to `cut_staged`: (id, ISO time, channel, change text)."""
    return [(i.item_id, utc_text(i.ts), i.channel, encode_change(i.status, i.added_topics, i.removed_topics))
            for i in sorted(items, key=_order)]


@given(timelines(), st.integers(min_value=0, max_value=50), st.sampled_from(["all", "gap", "cap", "switch"]))
@settings(max_examples=300)
def test_the_staged_fast_path_cuts_exactly_as_assign_items(items, cut, which):
    """`cut_staged` (the loop a backfill runs) against `assign_items` (one item at a time through
    the general path): the same tickets, states and assignments, also after an earlier run."""
    rules = {
        "all": ALL_RULES,
        "gap": SplitRules.time_gap_only(timedelta(days=2)),
        "cap": SplitRules(version="t", rules=RuleSet(max_items_per_ticket=SizeCapRule(enabled=True, limit=3))),
        "switch": _only(channel_switch=ChannelSwitchRule(enabled=True)),
    }[which]
    ordered = sorted(items, key=_order)
    first, rest = ordered[:cut], ordered[cut:]
    expected_tickets, a1 = assign_items("conv", [], first, rules)
    expected_tickets, a2 = assign_items("conv", expected_tickets, rest, rules)
    earlier, _ = assign_items("conv", [], first, rules)
    cutter = TimelineCutter("conv", earlier, rules)
    got = cutter.cut_staged(_staged_rows(rest))
    assert [(i, t) for i, t, _ in got] == a2
    assert [ts for _, _, ts in got] == [utc_text(i.ts) for i in rest]
    state = lambda t: (t.ticket_id, t.first_ts, t.last_ts, t.item_count, t.cut_reason, t.previous_ticket_id,  # noqa: E731
                       t.last_channel, t.topics, t.status, t.status_ts)
    assert [state(t) for t in cutter.tickets] == [state(t) for t in expected_tickets]


def test_changes_round_trip_through_their_staged_text():
    assert decode_change(encode_change("closed")) == ("CLOSED", (), ())
    assert decode_change(encode_change(None, ("a", "b"), ("c",))) == (None, ("a", "b"), ("c",))
    assert encode_change(None) is None and decode_change(None) == (None, (), ())
