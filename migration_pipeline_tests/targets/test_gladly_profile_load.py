"""The Zendesk -> Gladly profile load (`vendors/gladly/profile_load.py`) against the Gladly emulator
over real HTTP (its 10 requests/s org limit on) and a real staging database on both engines: one
profile per person, 409s resolved to the existing profile and completed, bad addresses never sent,
re-runs that send nothing, faults and a real kill that still end with exactly one profile each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from migration_pipeline.contract import Customer
from migration_pipeline.lib import ledger_keys
from migration_pipeline.lib.staging.db import StagingDatabase, customer_columns, customers, ledger, load_leases, now_text
from migration_pipeline.vendors.gladly.client import GladlyClient
from migration_pipeline.vendors.gladly.plan import PlanningTarget, WritePlan
from migration_pipeline.vendors.gladly.profile_load import (
    NO_EMAIL_NO_PHONE,
    ONLY_INVALID_EMAIL,
    Person,
    ProfileLoader,
    people,
)
from migration_pipeline.vendors.gladly.profiles import GladlyTarget, ProfileFields, stable_id
from migration_pipeline_tests.conftest import GLADLY_TOKEN, GLADLY_USER
from sim.emulators.common import FaultConfig, FaultDecider, RunningServer

NAMESPACE = "zendesk_to_gladly"
PROFILES = "/api/v1/customer-profiles"
REPO = Path(__file__).resolve().parents[2]


def zendesk(source_id: str, name: str | None, emails: tuple[str, ...] = (), phones: tuple[str, ...] = ()) -> Customer:
    return Customer(source_system="zendesk", source_id=source_id, name=name, emails=emails, phones=phones)


# Ann is three Zendesk users linked by addresses (z2 shares one with z1, z6 another with z2); Bob
# has only an address Gladly would refuse, and a phone; Cy has nothing; Di only a bad address.
MESSY = [
    zendesk("z1", "Ann", (" Ann@Example.com ",), ("+1 650 555 0101",)),
    zendesk("z2", "", ("ann@example.com", "ann.work@example.com"), ("650-555-0199", "n/a")),
    zendesk("z3", "Bob", ("bob@localhost",), ("+44 20 7946 0958",)),
    zendesk("z4", "Cy"),
    zendesk("z5", "Di", ("di at example",)),
    zendesk("z6", "Ed", ("ANN.WORK@example.com",)),
]


@pytest.fixture
def db(zendesk_gladly_db: StagingDatabase) -> StagingDatabase:
    return zendesk_gladly_db


@pytest.fixture
def org(tmp_path: Path) -> Path:
    """A Gladly organization with no data yet."""
    (tmp_path / "org" / "gladly").mkdir(parents=True)
    return tmp_path / "org"


@pytest.fixture
def clients(tmp_path: Path) -> Iterator:
    """`make(server)` -> a GladlyTarget paced at 9/s from a shared org budget, quick backoff."""
    made: list[GladlyClient] = []

    def make(server: RunningServer) -> GladlyTarget:
        made.append(GladlyClient(server.url, GLADLY_USER, GLADLY_TOKEN, budget_dir=tmp_path / "budget",
                                 backoff_initial_seconds=0.01, backoff_max_seconds=0.05))
        return GladlyTarget(made[-1])

    yield make
    for client in made:
        client.close()


def stage(db: StagingDatabase, *staged: Customer) -> None:
    with db.begin() as conn:
        db.upsert(conn, customers, [{**customer_columns(c), "staged_at": now_text()} for c in staged])


def loader(db: StagingDatabase, target: GladlyTarget, run_id: str = "run-1") -> ProfileLoader:
    return ProfileLoader(db, target, run_id, create_backoff_seconds=0.01, lease_ttl_seconds=5.0)


def stats(server: RunningServer) -> dict[str, int]:
    return httpx.get(server.url + "/_emulator/stats").json()


def requests_log(server: RunningServer, *methods: str) -> list[dict]:
    return [r for r in httpx.get(server.url + "/_emulator/requests").json()
            if r["path"].startswith(PROFILES) and (not methods or r["method"] in methods)]


def by_email(target: GladlyTarget, email: str) -> list[str]:
    return [p.id for p in target.find_profiles_by_email(email)]


def ledger_states(db: StagingDatabase) -> dict[str, tuple[str, str | None]]:
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(ledger.c.source_key, ledger.c.state, ledger.c.target_id)).all()
    return {key: (state, target) for key, state, target in rows}


def test_people_group_by_shared_email_and_skip_what_has_no_contact(db) -> None:
    stage(db, *MESSY)
    found = people(db)
    assert [(p.key, p.source_ids) for p in found.persons] == [
        ("ann@example.com", ("z1", "z2", "z6")),
        ("zendesk:z3", ("z3",)),
    ]
    ann, bob = found.persons
    assert ann.name == "Ann" and ann.emails == ("Ann@Example.com", "ann.work@example.com")
    assert ann.phones == ("+1 650 555 0101", "650-555-0199") and ann.invalid_phones == ("n/a",)
    assert bob.emails == () and bob.invalid_emails == ("bob@localhost",) and bob.phones == ("+44 20 7946 0958",)
    assert sorted((s.source_id, s.reason) for s in found.skipped) == [("z4", NO_EMAIL_NO_PHONE), ("z5", ONLY_INVALID_EMAIL)]
    # a selection is grouped over every staged customer: the same person, the same key
    assert people(db, ["z6"]).persons == [ann] and people(db, ["z4"]).skipped_by_reason() == {NO_EMAIL_NO_PHONE: 1}


def test_one_profile_per_person_bad_addresses_never_sent_and_a_rerun_sends_nothing(db, org, gladly_server_factory, clients) -> None:
    stage(db, *MESSY)
    server = gladly_server_factory(org)
    target = clients(server)
    with loader(db, target) as first:
        counts = first.load(people(db))
        ann_id = first.profile_of("z1")
    assert (counts.people, counts.created, counts.failed, counts.already_loaded) == (2, 2, 0, 0)
    assert counts.skipped == {NO_EMAIL_NO_PHONE: 1, ONLY_INVALID_EMAIL: 1}
    assert (counts.invalid_emails, counts.people_with_invalid_emails, counts.invalid_phones) == (1, 1, 1)
    assert ann_id == stable_id("ann@example.com")
    assert by_email(target, "ann@example.com") == by_email(target, "ANN.WORK@example.com") == [ann_id]
    ann = target.client.get_customer(ann_id).profile
    assert ann.name == "Ann" and [e["normalized"] for e in ann.emails] == ["ann@example.com", "ann.work@example.com"]
    assert [p["normalized"] for p in ann.phones] == ["+16505550101", "+16505550199"]
    assert {p["type"] for p in ann.phones} == {""}  # OTHER: the contract does not know a mobile
    assert by_email(target, "bob@localhost") == []  # Gladly would take it, but it is no address
    bob = target.client.get_customer(stable_id("zendesk:z3")).profile
    assert bob.emails == [] and [p["normalized"] for p in bob.phones] == ["+442079460958"]
    assert stats(server)["customer_profiles_created"] == 2
    assert ledger_states(db) == {
        ledger_keys.profile("ann@example.com"): ("done", ann_id),
        ledger_keys.profile("zendesk:z3"): ("done", bob.id),
    }

    sent_before = len(requests_log(server))
    with loader(db, target, "run-2") as again:
        rerun = again.load(people(db))
        mapped = {cid: again.profile_of(cid) for cid in ("z1", "z2", "z3", "z4", "z5", "z6")}
    assert (rerun.already_loaded, rerun.created, rerun.recovered) == (2, 0, 0)
    assert len(requests_log(server)) == sent_before  # nothing sent at all
    assert mapped == {"z1": ann_id, "z2": ann_id, "z3": bob.id, "z4": None, "z5": None, "z6": ann_id}


def test_a_409_is_resolved_to_the_existing_profile_and_completed(db, org, gladly_server_factory, clients) -> None:
    server = gladly_server_factory(org)
    target = clients(server)
    existing = {"id": "existing-ann", "name": "Ann (Gladly)", "emails": [{"original": "ann@example.com", "primary": True}],
                "phones": [{"original": "+1 650 555 0100", "type": "HOME", "smsPreference": "FORBIDDEN"}]}
    target.client.request("POST", "/customer-profiles", json=existing, idempotent=False)
    stage(db, zendesk("z1", "Ann", ("ann@example.com", "ann.b@example.com"), ("+1 650 555 0101",)))
    with loader(db, target) as load:
        counts = load.load(people(db))
        assert load.profile_of("z1") == "existing-ann"
    assert (counts.created, counts.matched, counts.updated, counts.failed) == (0, {"email": 1}, 1, 0)
    assert [r["status"] for r in requests_log(server, "POST")] == [201, 409]  # never a second create
    assert (stats(server)["customer_profiles_created"], stats(server)["customer_profiles_updated"]) == (1, 1)
    assert by_email(target, "ann.b@example.com") == ["existing-ann"]
    profile = target.client.get_customer("existing-ann").profile
    assert profile.name == "Ann (Gladly)"  # a name it has is kept
    assert [(e["normalized"], e.get("primary")) for e in profile.emails] == [("ann@example.com", True), ("ann.b@example.com", None)]
    assert [(p["normalized"], p["type"], p.get("smsPreference")) for p in profile.phones] == [
        ("+16505550100", "HOME", "FORBIDDEN"), ("+16505550101", "", None)]
    assert ledger_states(db) == {ledger_keys.profile("ann@example.com"): ("done", "existing-ann")}


def test_a_dry_run_sends_no_write_and_plans_exactly_what_the_load_then_does(db, org, gladly_server_factory, clients, tmp_path) -> None:
    """Over a planning target the same load sends only reads (Ann's address, already on a Gladly
    profile, is found as after a 409), records each create and completion with its body and leaves
    the ledger and leases alone; the real load then creates and completes exactly those."""
    stage(db, *MESSY)
    server = gladly_server_factory(org)
    target = clients(server)
    existing = target.create_profile(ProfileFields(emails=["ann@example.com"])).id
    before = (ledger_states(db), stats(server), len(requests_log(server, "POST", "PATCH")))
    with WritePlan(tmp_path / "plan") as plan, loader(db, PlanningTarget(target.client, plan)) as dry:
        planned = dry.load(people(db))
        assert dry.resolved() == {"z1": existing, "z2": existing, "z6": existing, "z3": stable_id("zendesk:z3")}
    assert (planned.created, planned.matched, planned.updated, planned.failed) == (1, {"email": 1}, 1, 0)
    assert (ledger_states(db), stats(server), len(requests_log(server, "POST", "PATCH"))) == before
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(load_leases)).scalar() == 0
    writes = [json.loads(line) for line in plan.path("profiles").read_text().splitlines()]
    assert [(w["method"], w["path"]) for w in writes] == [
        ("PATCH", f"/customer-profiles/{existing}"), ("POST", "/customer-profiles")]
    completed, created = writes[0]["body"], writes[1]["body"]
    assert created["id"] == stable_id("zendesk:z3") and completed["name"] == "Ann"

    with loader(db, target) as real:
        counts = real.load(people(db))
    assert (counts.created, counts.matched, counts.updated) == (planned.created, planned.matched, planned.updated)
    assert target.client.get_customer(created["id"]).profile.phones[0]["original"] == created["phones"][0]["original"]
    ann = target.client.get_customer(existing).profile
    assert ann.name == "Ann" and [e["original"] for e in ann.emails] == [e["original"] for e in completed["emails"]]


def test_a_refused_person_is_named_with_the_reason_and_the_run_goes_on(db, org, gladly_server_factory, clients) -> None:
    server = gladly_server_factory(org)
    target = clients(server)
    refused = Person("zendesk:z9", ("z9",), "Zed", emails=("not an address",), phones=())
    fine = Person("fine@example.com", ("z10",), "Fine", emails=("fine@example.com",), phones=())
    with loader(db, target) as load:
        counts = load.load([refused, fine])
    assert (counts.failed, counts.created) == (1, 1)
    [failure] = counts.failures
    assert failure.source_ids == ("z9",) and "emails.original" in failure.reason and "400" in failure.reason
    assert "z9" in str(failure)
    states = ledger_states(db)
    assert states[ledger_keys.profile("zendesk:z9")] == ("failed", None)
    assert states[ledger_keys.profile("fine@example.com")][0] == "done"


def _seed(rate_5xx: float, lost: float) -> int:
    """A seed under which the first create meets a 5xx and the second's answer is lost, so both
    fault paths are surely taken."""
    for seed in range(2000):
        d = FaultDecider(FaultConfig(seed=seed))
        post = f"POST {PROFILES}"
        if d.hit("5xx", post, rate_5xx) and not d.hit("5xx", post, rate_5xx) and d.hit("lost", post, lost):
            return seed
    raise AssertionError("no seed")


def test_faults_still_end_with_exactly_one_profile_per_person(db, org, gladly_server_factory, clients) -> None:
    rate_5xx, lost = 0.3, 0.5
    server = gladly_server_factory(org)
    target = clients(server)
    target.create_profile(ProfileFields(emails=["p3@example.com"]), "pre-existing-p3")
    faults = {"seed": _seed(rate_5xx, lost), "rate_5xx": rate_5xx, "lost_response": lost}
    httpx.put(server.url + "/_emulator/faults", json=faults).raise_for_status()  # the draws start now
    stage(db, *(zendesk(f"z{i}", f"P{i}", (f"p{i}@example.com",), (f"+1 650 555 01{i:02d}",)) for i in range(8)),
          zendesk("z8", "P1 again", ("P1@example.com",)))
    with loader(db, target) as load:
        counts = load.load(people(db))
    met = {r["fault"] for r in requests_log(server, "POST")}
    assert "lost_response" in met and met & {"500", "502", "503"}
    assert counts.failed == 0 and counts.people == 8
    assert counts.created + sum(counts.matched.values()) + counts.recovered == 8
    ids = [by_email(target, f"p{i}@example.com") for i in range(8)]
    assert all(len(found) == 1 for found in ids)
    assert ids[3] == ["pre-existing-p3"]
    assert len({found[0] for found in ids}) == 8
    assert stats(server)["customer_profiles_created"] == 8  # 7 made by the load, 1 there before
    states = ledger_states(db)
    assert {states[ledger_keys.profile(f"p{i}@example.com")] for i in range(8)} == {("done", found[0]) for found in ids}


# -- a real kill -------------------------------------------------------------------------------
CHILD = """
import json, sys
from migration_pipeline.lib.staging.db import StagingDatabase
from migration_pipeline.vendors.gladly.client import GladlyClient
from migration_pipeline.vendors.gladly.profile_load import ProfileLoader, people
from migration_pipeline.vendors.gladly.profiles import GladlyTarget

args = json.loads(sys.argv[1])
db = StagingDatabase(args["staging_url"], args["namespace"])
client = GladlyClient(args["base_url"], args["user"], args["token"], budget_dir=args["budget_dir"],
                      backoff_initial_seconds=0.01, backoff_max_seconds=0.05)
with ProfileLoader(db, GladlyTarget(client), args["run_id"], create_backoff_seconds=0.01,
                   lease_ttl_seconds=args["lease_ttl"]) as loader:
    counts = loader.load(people(db))
print(json.dumps(counts.as_dict()))
"""


def _child(db: StagingDatabase, server: RunningServer, tmp_path: Path, run_id: str) -> subprocess.Popen:
    args = {"staging_url": db.url, "namespace": NAMESPACE, "base_url": server.url, "user": GLADLY_USER,
            "token": GLADLY_TOKEN, "budget_dir": str(tmp_path / "budget"), "run_id": run_id, "lease_ttl": 2.0}
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def _wait_for(what: str, check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_killed_load_resumes_with_no_duplicate_and_none_missing(db, org, gladly_server_factory, clients, tmp_path) -> None:
    """The load runs in its own process and is SIGKILLed midway, at the worst moment: Gladly has
    applied a create whose answer was lost, and the child, its intent written, waits on the
    lookup (the emulator drops every create's answer and holds requests until it catches that
    moment). The restarted load finds the profile by its id and sends nothing twice."""
    total = 16
    stage(db, *(zendesk(f"z{i}", f"Person {i}", (f"person{i}@example.com",)) for i in range(total)),
          *(zendesk(f"dup{i}", None, (f"PERSON{i}@example.com",), ("+1 415 555 0100",)) for i in range(0, total, 4)))
    server = gladly_server_factory(org)
    target = clients(server)

    def applied_but_unrecorded() -> bool:
        hold(True)
        _wait_for("an intent", lambda: any(s == "intent" for s, _ in ledger_states(db).values()))
        # An answer already on its way when the hold began is not held: the child may still
        # record it. Read until two readings 0.1 s apart agree (the child is then blocked on a
        # held request), so the kill comes after everything the child could still record.
        seen = None
        while True:
            reading = (sum(state == "done" for state, _ in ledger_states(db).values()),
                       stats(server)["customer_profiles_created"])
            if reading == seen:
                break
            seen = reading
            time.sleep(0.1)
        done, created = seen
        if created == done + 1:
            return True
        hold(False)  # held on its create: let it through, catch it on the lookup
        time.sleep(0.03)
        return False

    def hold(held: bool) -> None:
        httpx.put(server.url + "/_emulator/hold", json={"held": held}).raise_for_status()

    child = _child(db, server, tmp_path, "killed-run")
    try:
        _wait_for("some profiles", lambda: stats(server)["customer_profiles_created"] >= 4 or child.poll() is not None)
        httpx.put(server.url + "/_emulator/faults", json={"lost_response": 1.0}).raise_for_status()
        _wait_for("a create applied and not recorded", applied_but_unrecorded)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        hold(False)
        httpx.put(server.url + "/_emulator/faults", json={}).raise_for_status()
    [(killed_key, _)] = [(k, v) for k, v in ledger_states(db).items() if v[0] == "intent"]
    done_before = sum(state == "done" for state, _ in ledger_states(db).values())
    assert 4 <= done_before < total - 1  # killed midway
    assert stats(server)["customer_profiles_created"] == done_before + 1

    restart = _child(db, server, tmp_path, "restart")
    out, err = restart.communicate(timeout=60)
    assert restart.returncode == 0, err[-2000:]
    counts = json.loads(out.strip().splitlines()[-1])
    assert (counts["already_loaded"], counts["resumed"], counts["recovered"]) == (done_before, 1, 1)
    assert counts["created"] == total - done_before - 1 and counts["failed"] == 0
    assert counts["waited_for_lease"] <= 1  # the dead run's lease on the key in flight, until it ran out

    assert stats(server)["customer_profiles_created"] == total
    ids = [by_email(target, f"person{i}@example.com") for i in range(total)]
    assert all(len(found) == 1 for found in ids) and len({f[0] for f in ids}) == total
    assert ids == [[stable_id(f"person{i}@example.com")] for i in range(total)]
    states = ledger_states(db)
    assert states[killed_key][0] == "done" and {s for s, _ in states.values()} == {"done"} and len(states) == total
    with ProfileLoader(db, target, "reader") as read:
        assert read.profile_of("dup4") == read.profile_of("z4") == stable_id("person4@example.com")
