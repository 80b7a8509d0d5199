"""The vendor-neutral world (`sim.synth.world`): deterministic, episodes in time order and on
channels the customer can be reached on, every planted role in the smallest world, and one world
under both writers (the same people in the Gladly and the Zendesk dataset of one seed)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from migration_pipeline_tests.synth.zendesk_helpers import ZendeskDataset
from sim.synth import generator as gladly
from sim.synth import zendesk
from sim.synth.dataset import DatasetLayout, iter_jsonl
from sim.synth.world import DAY_MS, MIN_PLANTED, build_world, date_ms, episodes

START = date_ms(date(2024, 5, 20))
END = START + 12 * DAY_MS


def _world(seed: int = 5, customers: int = 40, **extra):
    return build_world(seed, customers, START, END, agents=6, quiet_day=True, busy=True, **extra)


def test_same_seed_same_people_and_episodes() -> None:
    a, b = _world(), _world()
    for pa, pb in zip(a.people(), b.people(), strict=True):
        assert pa == pb
        assert list(episodes(a, pa)) == list(episodes(b, pb))
    other = _world(seed=6)
    assert [c.name for c in other.people()] != [c.name for c in a.people()]


def test_episodes_follow_each_other_and_keep_off_the_quiet_day() -> None:
    world = _world(tail_ms=DAY_MS)
    quiet = world.quiet_day_ms
    assert quiet is not None
    for customer in world.people():
        last = None
        for ep in episodes(world, customer):
            times = [t.at_ms for t in ep.turns]
            assert times == sorted(times) and (not times or times[0] == ep.opened_ms)
            assert all(not quiet <= ms < quiet + DAY_MS for ms in times)
            if ep.closed_ms is not None:
                assert ep.closed_ms >= max(times, default=ep.opened_ms)
            if "late" in ep.marks:
                assert ep.opened_ms >= world.end_ms
                continue
            assert START <= ep.opened_ms < END
            if last is not None:
                assert ep.opened_ms > last.last_ms, (customer.index, ep.seq)
            last = ep


def test_turns_only_on_channels_the_customer_can_be_reached_on() -> None:
    world = _world()
    for customer in world.people():
        used = {t.channel for ep in episodes(world, customer) for t in ep.turns}
        assert all(customer.can_use(ch) for ch in used), (customer.index, used)
        if customer.mail_address is None:
            assert "email" not in used
        assert all(t.author in ("customer", "agent") and t.visibility in ("public", "private")
                   for ep in episodes(world, customer) for t in ep.turns)


def test_the_smallest_world_holds_every_planted_role() -> None:
    world = _world(customers=MIN_PLANTED)
    people = list(world.people())
    assert {p.email_mess for p in people} >= {"none", "invalid", "mixed_case", "duplicate_lower_case"}
    assert any(p.sender_address for p in people) and {p.departed for p in people} >= {"soft", "permanent"}
    (duplicate,) = [p for p in people if p.duplicate_of is not None]
    assert duplicate.emails[0] == people[duplicate.duplicate_of].emails[0].lower() != people[duplicate.duplicate_of].emails[0]
    marks = {m for p in people for ep in episodes(world, p) for m in ep.marks}
    assert marks >= {"long_subject", "empty_subject", "non_latin_subject", "no_turns", "long_body"}
    showcase = [t for ep in episodes(world, people[0]) for t in ep.turns]
    assert {t.channel for t in showcase} >= {"email", "chat", "sms", "phone", "voicemail", "facebook", "instagram", "whatsapp"}
    assert any(t.visibility == "private" for t in showcase) and any(t.choices for t in showcase)
    assert any(len(t.text) > 40_000 for t in showcase) and any(a.inline for t in showcase for a in t.attachments)
    assert any(p.scenario == "returning" for p in people)
    assert not any(p.scenario == "busy" for p in people)  # a thousand-message history needs a bigger world


def test_both_writers_render_the_same_people(tmp_path: Path) -> None:
    args = dict(customers=12, days=4, seed=9, end=date(2024, 6, 1))
    gladly.generate(tmp_path / "gladly", **args)
    zendesk.generate(tmp_path / "zendesk", **args)
    layout = DatasetLayout(tmp_path / "gladly")
    gladly_names = {obj["name"] for job in layout.job_ids() for _, obj, _ in iter_jsonl(layout.job_file(job, "customers.jsonl"))
                    if obj is not None and "name" in obj}
    zd = ZendeskDataset(tmp_path / "zendesk")
    zendesk_names = {u["name"] for u in zd.export_objects("embedded", "users").values() if u["role"] == "end-user"}
    assert len(zendesk_names) >= MIN_PLANTED - 1 and zendesk_names <= gladly_names
