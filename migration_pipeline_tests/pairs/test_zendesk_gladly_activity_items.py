"""The optional API path into Gladly (`pairs/zendesk_to_gladly/activity_items.py`): the last year of staged
Zendesk comments as CUSTOMER_ACTIVITY items, against the Gladly emulator over real HTTP (its
one-year rule, 409 on a used item id, lost answers) and a real staging database on both engines.
Only what the import files would hold as a row is sent, with that row's text; the rest is counted
with its reason; every comment ends as at most one item, however often it is sent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from migration_pipeline.contract import Attachment
from migration_pipeline.lib import ledger_keys
from migration_pipeline.lib.staging.db import StagingDatabase, ledger, now_text
from migration_pipeline.pairs.zendesk_to_gladly.shaping import SPAM, write_range
from migration_pipeline.pairs.zendesk_to_gladly.activity_items import (
    BODY_TOO_LONG,
    NO_PROFILE,
    OLDER_THAN_A_YEAR,
    ActivityLoader,
    activity_item_id,
    activity_key,
    items_in_gladly,
)
from migration_pipeline.vendors.gladly.client import GladlyClient
from migration_pipeline.vendors.gladly.import_files import EMPTY_BODY
from migration_pipeline.vendors.gladly.profile_load import ProfileLoader, people
from migration_pipeline.vendors.gladly.profiles import CustomerActivity, GladlyTarget, stable_id
from migration_pipeline_tests.conftest import DATASET_NOW, GLADLY_TOKEN, GLADLY_USER
from migration_pipeline_tests.pairs.test_zendesk_gladly_shaping import RULES, comment, person, rows_of, stage, ticket
from sim.emulators.common import FaultConfig, FaultDecider, RunningServer

NOW = DATASET_NOW  # the emulator's pinned clock, and the loader's
ITEMS = "/conversation-items"
ANN = stable_id("ann@example.com")  # Ann's profile id (ProfileLoader: stable_id of the person key)


@pytest.fixture
def db(zendesk_gladly_db: StagingDatabase) -> StagingDatabase:
    return zendesk_gladly_db


@pytest.fixture
def gladly(tmp_path: Path, gladly_server_factory) -> Iterator[tuple[RunningServer, GladlyTarget]]:
    """An emulated Gladly organization with no data (clock at NOW) and a target paced from its budget."""
    (tmp_path / "org" / "gladly").mkdir(parents=True)
    server = gladly_server_factory(tmp_path / "org")
    client = GladlyClient(server.url, GLADLY_USER, GLADLY_TOKEN, budget_dir=tmp_path / "budget",
                          backoff_initial_seconds=0.01, backoff_max_seconds=0.05)
    yield server, GladlyTarget(client)
    client.close()


def loader(db: StagingDatabase, target: GladlyTarget, run_id: str = "run-1") -> ActivityLoader:
    return ActivityLoader(db, target, run_id, now=NOW, create_backoff_seconds=0.01, lease_ttl_seconds=5.0)


def load_profiles(db: StagingDatabase, target: GladlyTarget) -> None:
    with ProfileLoader(db, target, "profiles", create_backoff_seconds=0.01, lease_ttl_seconds=5.0) as profiles:
        assert profiles.load(people(db)).failed == 0


def item_posts(server: RunningServer) -> list[dict]:
    return [r for r in httpx.get(server.url + "/_emulator/requests").json()
            if r["method"] == "POST" and r["path"].endswith(ITEMS)]


def created(server: RunningServer) -> int:
    return httpx.get(server.url + "/_emulator/stats").json()["activity_items_created"]


def in_gladly(target: GladlyTarget, item_id: str) -> dict | None:
    """The activity of a staged item as Gladly returns it, or None."""
    response = target.client.request("GET", f"{ITEMS}/{activity_item_id(item_id)}", ok=(404,))
    return None if response.status_code == 404 else response.json()


def ledger_states(db: StagingDatabase) -> dict[str, str]:
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(ledger.c.source_key, ledger.c.state).where(ledger.c.entity_type == "activity"))
        return dict(rows.all())


def ledger_row(key: str, entity: str, state: str, target_id: str | None = None) -> dict:
    """A ledger row as an earlier (crashed) run left it."""
    return {"source_key": key, "entity_type": entity, "parent_key": None, "target_id": target_id, "state": state,
            "attempts": 1, "last_error": None, "run_id": "earlier", "updated_at": now_text()}


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def test_only_the_last_year_is_sent_as_its_import_row_reads_and_a_rerun_sends_nothing(db, gladly, tmp_path) -> None:
    server, target = gladly
    long_subject = "Refund for order 1234 " * 6  # over 100: cut with an ellipsis, as in the files
    invoice = Attachment("a1", "invoice.pdf", "application/pdf", 1234, "https://acme.zendesk.com/attachments/a1/invoice.pdf")
    stage(db,
          people=[person("u1", "ann@example.com", "Ann Lee"), person("u3", "bob@example.com", "Bob")],
          tickets=[ticket("t1", "u1", subject="Where is my order?"), ticket("t3", "u1", status="deleted"),
                   ticket("t4", "u3", subject=long_subject)],
          items=[
              comment("old", "t1", "u1", days_ago(400), html="<p>From long ago</p>"),
              comment("recent", "t1", "u1", days_ago(30), attachments=(invoice,),
                      html='<p>See <a href="https://track.example/1">tracking</a></p>'),
              comment("note", "t1", "u1", days_ago(2), text="Refund approved", private=True),
              comment("blank", "t1", "u1", days_ago(1), html="<p> </p>"),
              comment("spam", "t3", "u1", days_ago(5), text="Buy now"),
              comment("bob", "t4", "u3", days_ago(6), text="Hello from Bob"),
              comment("huge", "t4", "u3", days_ago(4), text="word " * 5_100),
          ])
    load_profiles(db, target)
    # Dee is staged after the profile load: her comment has no Gladly profile yet
    stage(db, people=[person("u4", "dee@example.com")], tickets=[ticket("t5", "u4")],
          items=[comment("dee", "t5", "u4", days_ago(3), text="Hi")])

    with loader(db, target) as first:
        sent = first.load(lo=days_ago(500))
        counts = first.counts
    assert sent == {"recent", "note", "bob"} == items_in_gladly(db)
    assert (counts.items, counts.sent, counts.already_there, counts.failed, counts.already_loaded) == (8, 3, 0, 0, 0)
    assert counts.skipped == {OLDER_THAN_A_YEAR: 1, f"rejected: {EMPTY_BODY}": 1, SPAM: 1, NO_PROFILE: 1, BODY_TOO_LONG: 1}
    assert counts.accounted() == counts.items
    assert created(server) == 3 and len(item_posts(server)) == 3
    assert ledger_states(db) == {activity_key(i): "done" for i in sent}

    # each item is on its customer's timeline at the comment's time, with its import row's text
    items = {i: in_gladly(target, i) for i in ("recent", "note", "bob")}
    assert items["recent"]["customerId"] == items["note"]["customerId"] == ANN
    assert items["bob"]["customerId"] == stable_id("bob@example.com")
    assert {i: item["content"]["occurredAt"] for i, item in items.items()} == {
        "recent": "2026-10-21T06:00:00.000Z", "note": "2026-11-18T06:00:00.000Z", "bob": "2026-11-14T06:00:00.000Z"}
    assert {item["content"]["type"] for item in items.values()} == {"CUSTOMER_ACTIVITY"}
    assert {item["content"]["sourceName"] for item in items.values()} == {"Zendesk"}
    write_range(db, tmp_path / "files", date(2025, 7, 1), date(2026, 11, 21), RULES)
    rows = {r["Conversation Item Timestamp"]: r for r in rows_of(tmp_path / "files")}
    for item in items.values():
        row = rows[item["content"]["occurredAt"]]
        assert (item["content"]["title"], item["content"]["body"]) == (row["Conversation Item Title"], row["Conversation Item Body"])
    assert items["bob"]["content"]["title"].endswith("…") and len(items["bob"]["content"]["title"]) <= 100
    assert items["note"]["content"]["body"] == f"{RULES.private_notes.label}\n\nRefund approved"
    assert "invoice.pdf (https://acme.zendesk.com/attachments/a1/invoice.pdf)" in items["recent"]["content"]["body"]

    # a re-run sends nothing (and, the default window being the last year, does not see "old")
    before = len(httpx.get(server.url + "/_emulator/requests").json())
    with loader(db, target, "run-2") as again:
        assert again.load() == sent
        rerun = again.counts
    assert len(httpx.get(server.url + "/_emulator/requests").json()) == before
    # the files now hold the other four (write_range recorded them): left to the files
    assert (rerun.items, rerun.already_loaded, rerun.in_import_files, rerun.sent, rerun.accounted()) == (7, 3, 4, 0, 7)
    assert created(server) == 3


def test_an_item_already_in_gladly_is_counted_already_there(db, gladly) -> None:
    server, target = gladly
    stage(db, people=[person("u1", "ann@example.com")], tickets=[ticket("t1", "u1")],
          items=[comment("c1", "t1", "u1", days_ago(10), text="First"), comment("c2", "t1", "u1", days_ago(9), text="Second")])
    load_profiles(db, target)
    # put there earlier under the same id (a run whose ledger was lost, another tool)
    target.add_activity(ANN, CustomerActivity(id=activity_item_id("c1"), activity_type="EMAIL", title="Earlier",
                                              occurred_at=days_ago(10)))
    with loader(db, target) as load:
        assert load.load() == {"c1", "c2"}
        counts = load.counts
    assert (counts.sent, counts.already_there, counts.failed) == (1, 1, 0)
    assert [r["status"] for r in item_posts(server)] == [200, 409, 200]  # never a second item for c1
    assert created(server) == 2 and in_gladly(target, "c1")["content"]["title"] == "Earlier"
    assert ledger_states(db) == {activity_key("c1"): "done", activity_key("c2"): "done"}


def _seed_losing_the_first_answer(key: str, rate: float) -> int:
    for seed in range(2000):
        if FaultDecider(FaultConfig(seed=seed)).hit("lost", key, rate):
            return seed
    raise AssertionError("no seed")


def test_lost_answers_and_crashed_sends_still_leave_exactly_one_item_per_comment(db, gladly) -> None:
    server, target = gladly
    stage(db, people=[person("u1", "ann@example.com")], tickets=[ticket("t1", "u1")],
          items=[comment(f"c{n}", "t1", "u1", days_ago(20 - n), text=f"Comment {n}") for n in range(8)])
    load_profiles(db, target)
    # two crashed runs left intents: c0's POST was applied before the crash, c1's never was
    target.add_activity(ANN, CustomerActivity(id=activity_item_id("c0"), activity_type="EMAIL", body="Comment 0",
                                              occurred_at=days_ago(20)))
    with db.begin() as conn:
        db.upsert(conn, ledger, [ledger_row(activity_key(f"c{n}"), "activity", "intent") for n in (0, 1)])
    lost = 0.5
    seed = _seed_losing_the_first_answer(f"POST /api/v1/customers/{ANN}{ITEMS}", lost)
    httpx.put(server.url + "/_emulator/faults", json={"seed": seed, "lost_response": lost}).raise_for_status()

    with loader(db, target) as load:
        assert load.load() == {f"c{n}" for n in range(8)}
        counts = load.counts
    assert "lost_response" in {r["fault"] for r in item_posts(server)}
    assert counts.failed == 0 and counts.recovered == 1 and counts.resumed == 2  # c0 found, c1 sent
    assert counts.sent + counts.already_there + counts.recovered == 8
    assert created(server) == 8  # one per comment: c0 before the load, 7 by it
    assert all(in_gladly(target, f"c{n}")["content"]["body"] == f"Comment {n}" for n in range(8))
    assert set(ledger_states(db).values()) == {"done"}

    before = len(item_posts(server))
    with loader(db, target, "run-2") as again:
        again.load()
    assert len(item_posts(server)) == before and again.counts.already_loaded == 8


def test_a_refusal_is_recorded_with_its_reason_and_what_gladly_finds_too_old_goes_to_the_files(db, gladly) -> None:
    server, target = gladly
    stage(db, people=[person("u1", "ann@example.com"), person("u2", "gone@example.com")],
          tickets=[ticket("t1", "u1"), ticket("t2", "u2")],
          items=[comment("edge", "t1", "u1", days_ago(360), text="Almost a year ago"),
                 comment("fine", "t1", "u1", days_ago(10), text="Recent"),
                 comment("gone", "t2", "u2", days_ago(8), text="To a deleted profile")])
    # the ledger says Gone's profile was loaded, but Gladly has no such profile (deleted since)
    with db.begin() as conn:
        db.upsert(conn, ledger, [ledger_row(ledger_keys.profile("gone@example.com"), "profile", "done", "deleted-profile")])
    load_profiles(db, target)
    # Gladly's clock is ten days ahead of the loader's: "edge" is within our year, not within its
    httpx.put(server.url + "/_emulator/clock", json={"now": (NOW + timedelta(days=10)).isoformat()}).raise_for_status()

    with loader(db, target) as load:
        assert load.load() == {"fine"}
        counts = load.counts
    assert (counts.sent, counts.skipped, counts.failed) == (1, {OLDER_THAN_A_YEAR: 1}, 1)
    [failure] = counts.failures
    assert (failure.item_id, failure.customer_id) == ("gone", "u2") and "404" in failure.reason
    assert counts.accounted() == counts.items == 3
    # the refusal is in the ledger with its reason; the too-old item left no row (the files take it)
    assert ledger_states(db) == {activity_key("fine"): "done", activity_key("gone"): "failed"}
    with db.engine.connect() as conn:
        reason = conn.execute(sa.select(ledger.c.last_error).where(ledger.c.source_key == activity_key("gone"))).scalar()
    assert "does not exist" in reason
    assert [r["status"] for r in item_posts(server)] == [400, 200, 404]
    assert in_gladly(target, "edge") is None and created(server) == 1
