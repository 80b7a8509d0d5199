"""Sample run, dry run, rollback and preflight against the emulators (real sockets, real DBs)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from migration_pipeline.pairs.gladly_to_unthread.definitions import defs  # this pair's assets only
from migration_pipeline.pairs.gladly_to_unthread.jobs import LOAD_OP, PREFLIGHT_OP
from migration_pipeline.pairs.gladly_to_unthread.pair import key
from migration_pipeline.lib.staging.db import agents, ledger
from migration_pipeline.lib.staging.sample import messiest_customers
from sim.synth.dataset import DatasetLayout, read_json
from migration_pipeline.vendors.unthread.client import UnthreadClient
from migration_pipeline.vendors.unthread.preflight import run_preflight
from migration_pipeline_tests.conftest import GLADLY_TOKEN, GLADLY_USER, UNTHREAD_KEY
from migration_pipeline_tests.rehearsal import FIRST, LAST, Rehearsal, target_keys

SCRIPT = str(Path(sys.executable).with_name("migration-pipeline"))
STAGING_KEYS = [key(a) for a in ("gladly_export_jobs", "staged_customers", "staged_agents", "staged_topics",
                                   "staged_conversation_items", "split_tickets")]
LOAD_KEYS = [key(a) for a in ("split_tickets", "unthread_preflight", "unthread_loaded_records")]
RANGE_TAGS = {"dagster/asset_partition_range_start": FIRST, "dagster/asset_partition_range_end": LAST}


def _materialize(r: Rehearsal, selection: list[dg.AssetKey], run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        list(defs.assets), selection=selection, resources=r.resources, run_config=run_config or {},
        tags=RANGE_TAGS, raise_on_error=False,
    )


def _requests(r: Rehearsal) -> list[dict]:
    return httpx.get(f"{r.unthread.url}/_emulator/requests").json()


def _dry_run_keys(out_dir: Path) -> dict[str, list[str]]:
    def lines(kind: str) -> list[dict]:
        return [json.loads(line) for line in (out_dir / f"{kind}.jsonl").read_text(encoding="utf-8").splitlines()]

    conversations = lines("conversations")
    initial = [m for c in conversations for m in re.findall(r"`(gladly-item:[^`]+)`", c["payload"]["markdown"])]
    return {
        "customers": sorted(c["key"] for c in lines("customers")),
        "conversations": sorted(c["key"] for c in conversations),
        "messages": sorted(initial + [m["key"] for m in lines("messages")]),
    }


def _cli(args: list[str], r: Rehearsal, **env: str) -> subprocess.CompletedProcess:
    workspace = read_json(DatasetLayout(r.dataset).unthread_workspace)
    base = {
        "UNTHREAD_BASE_URL": f"{r.unthread.url}/api", "UNTHREAD_API_KEY": UNTHREAD_KEY,
        "UNTHREAD_TRIAGE_CHANNEL_ID": workspace["triageChannels"][0]["id"], "UNTHREAD_REQUESTS_PER_SECOND": "500",
        "GLADLY_BASE_URL": r.gladly.url, "GLADLY_API_USER": GLADLY_USER, "GLADLY_API_TOKEN": GLADLY_TOKEN,
        "GLADLY_REQUESTS_PER_SECOND": "100",
        "MIGRATION_DATA_DIR": str(r.resources["storage"].data_dir), "COLUMNS": "200",
    }
    return subprocess.run(
        [SCRIPT, *args, "--staging-url", r.staging_url], capture_output=True, text=True, timeout=300,
        env=os.environ | base | env,
    )


def _ledger_rows(r: Rehearsal, state: str) -> list:
    db = r.db()
    try:
        with db.engine.connect() as conn:
            return conn.execute(sa.select(ledger).where(ledger.c.state == state)).all()
    finally:
        db.dispose()


def _ledger_states(r: Rehearsal) -> dict[str, int]:
    db = r.db()
    try:
        with db.engine.connect() as conn:
            return dict(conn.execute(sa.select(ledger.c.state, sa.func.count()).group_by(ledger.c.state)).all())
    finally:
        db.dispose()


def test_dry_run_then_sample_then_rollback_then_full_run_gives_everything_exactly_once(rehearsal):
    r = rehearsal
    assert _materialize(r, STAGING_KEYS).success

    # 0. the messiness score (rpt_messiest_customers.sql) sees the generator's mess, on this engine
    mess = read_json(DatasetLayout(r.dataset).manifest)["mess"]
    db = r.db()
    try:
        scored = {c["customer_id"]: c for c in messiest_customers(db, 1000)}
    finally:
        db.dispose()
    bad = {m["customerId"] for k in ("customers_without_email", "invalid_emails", "mixed_case_emails") for m in mess[k]["where"]}
    assert {c for c, row in scored.items() if row["bad_email"]} == bad & set(scored)
    survivors = {m["survivingId"] for m in mess["merged_profiles"]["where"]}
    assert {c for c, row in scored.items() if row["merged_profiles"]} == survivors
    ranked = list(scored)
    assert all(scored[a]["score"] >= scored[b]["score"] for a, b in zip(ranked, ranked[1:]))

    # 1. dry run of a 3-customer sample: zero requests to Unthread, payload files, ledger untouched
    before = len(_requests(r))
    dry = _materialize(r, LOAD_KEYS, {"ops": {
        PREFLIGHT_OP: {"config": {"offline": True}},
        LOAD_OP: {"config": {"sample_customers": 3, "dry_run": True}},
    }})
    assert dry.success
    assert len(_requests(r)) == before == 0
    assert _ledger_states(r) == {}
    # observed, not materialized (test_review_modes.py checks what Dagster records)
    assert not dry.asset_materializations_for_node("unthread_loaded_records")
    meta = dry.asset_observations_for_node("unthread_loaded_records")[0].metadata
    out_dir = Path(meta["dry_run_dir"].value)
    planned = _dry_run_keys(out_dir)
    assert len(planned["customers"]) == 3 and planned["conversations"] and planned["messages"]
    assert (out_dir / "statuses.jsonl").read_text().count("\n") == len(planned["conversations"])

    # 2. the real sample creates exactly what the dry run listed, and reads back clean
    sample = _materialize(r, LOAD_KEYS, {"ops": {LOAD_OP: {"config": {"sample_customers": 3}}}})
    assert sample.success
    assert not sample.asset_materializations_for_node("unthread_loaded_records")
    meta = sample.asset_observations_for_node("unthread_loaded_records")[0].metadata
    assert meta["sample_readback_passed"].value is True
    assert target_keys(r.unthread.url) == planned
    db = r.db()
    try:
        with db.engine.connect() as conn:
            runs = set(conn.execute(sa.select(ledger.c.run_id).distinct()).scalars())
    finally:
        db.dispose()
    assert runs and all(run.startswith("sample:") for run in runs)

    # 3. rollback: the plan by default, deletion with --yes, nothing the second time
    listed = _cli(["rollback", "--sample"], r)
    assert listed.returncode == 0, listed.stderr
    assert f"{len(planned['conversations'])} conversations" in listed.stdout and "re-run with --yes" in listed.stdout
    assert r.stats()["conversations"] == len(planned["conversations"])
    from migration_pipeline.pairs.gladly_to_unthread.jobs import rollback_unthread

    job = rollback_unthread.execute_in_process(
        run_config={"ops": {"rollback_from_ledger": {"config": {"sample": True}}}},
        resources={"staging": r.resources["staging"], "unthread": r.resources["unthread"]},
    )
    plan_meta = next(
        e.event_specific_data.metadata for e in job.all_events
        if e.event_type_value == "STEP_OUTPUT" and e.step_key == "rollback_from_ledger"
    )
    assert job.success and plan_meta["conversations"].value == len(planned["conversations"])
    assert r.stats()["conversations"] == len(planned["conversations"]), "listing must not delete"
    done = _cli(["rollback", "--sample", "--yes"], r)
    assert done.returncode == 0, done.stderr
    assert f"deleted {len(planned['conversations'])} conversations" in done.stdout
    stats = r.stats()
    assert stats["conversations"] == stats["messages"] == stats["customers"] == 0
    # only the tags stay (shared workspace setup, reused by the next run); the rest is rolled back
    assert {row.entity_type for row in _ledger_rows(r, "done")} <= {"tag"}
    assert set(_ledger_states(r)) <= {"rolled_back", "done"}
    again = _cli(["rollback", "--sample", "--yes"], r)
    assert again.returncode == 0 and "nothing in the ledger to delete" in again.stdout
    assert r.stats() == stats

    # 4. the full run recreates everything exactly once and reconciles clean
    result = r.run()
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks and all(checks.values()), checks
    db = r.db()
    try:
        with db.engine.connect() as conn:
            tickets = conn.execute(sa.text("select count(*) from tickets")).scalar_one()
    finally:
        db.dispose()
    keys = target_keys(r.unthread.url)
    assert len(keys["conversations"]) == len(set(keys["conversations"])) == tickets
    assert len(keys["messages"]) == len(set(keys["messages"]))
    assert len(keys["customers"]) == len(set(keys["customers"]))
    assert set(planned["messages"]) <= set(keys["messages"])


def test_preflight_blocks_the_load_and_names_the_reason(rehearsal):
    r = rehearsal
    assert _materialize(r, STAGING_KEYS).success
    workspace = read_json(DatasetLayout(r.dataset).unthread_workspace)
    old = r.resources["unthread"]

    # a bad key: the preflight fails with the reason, the load never runs, the key is not shown
    bad_key = "not-the-key-0123456789"
    r.with_unthread(api_key=bad_key)
    result = _materialize(r, LOAD_KEYS)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == PREFLIGHT_OP
    text = str(failure.event_specific_data.error.message) + str(failure.event_specific_data.user_failure_data)
    assert "rejected the API key" in text and "401" in text and bad_key not in text
    assert not result.asset_materializations_for_node("unthread_loaded_records")
    assert r.stats()["conversations"] == 0

    proc = _cli(["preflight"], r, UNTHREAD_API_KEY=bad_key)
    assert proc.returncode == 1 and "rejected the API key" in proc.stdout and bad_key not in proc.stdout + proc.stderr

    # no triage channel: fails
    db = r.db()
    client = UnthreadClient(f"{r.unthread.url}/api", UNTHREAD_KEY)
    try:
        report = run_preflight(client, db, triage_channel_id="", placeholder_user_id=None)
        assert not report.passed and any("UNTHREAD_TRIAGE_CHANNEL_ID" in f for f in report.failures)
        # a placeholder user that is not in the workspace: fails
        report = run_preflight(client, db, triage_channel_id="C0TRIAGE001", placeholder_user_id="no-such-user")
        assert not report.passed and any("no-such-user" in f for f in report.failures)

        # good config: passes, lists exactly the agents without an Unthread user of the same email
        placeholder = workspace["users"][-1]["id"]
        report = run_preflight(client, db, triage_channel_id="C0TRIAGE001", placeholder_user_id=placeholder)
        with db.engine.connect() as conn:
            staged = conn.execute(sa.select(agents.c.source_id, agents.c.email)).all()
    finally:
        client.close()
        db.dispose()
    emails = {u["email"].lower() for u in workspace["users"]}
    expected = sorted(a.source_id for a in staged if (a.email or "").lower() not in emails)
    assert report.passed and expected
    assert sorted(a["id"] for a in report.unmatched_agents) == expected
    assert report.matched_agents == len(staged) - len(expected) > 0
    assert any("automations" in w for w in report.warnings)

    proc = _cli(["preflight"], r)
    assert proc.returncode == 0 and "PASSED" in proc.stdout and expected[0] in proc.stdout

    r.resources["unthread"] = old
    result = _materialize(r, [key("unthread_preflight")])
    assert result.success
    meta = result.asset_materializations_for_node(PREFLIGHT_OP)[0].metadata
    assert meta["unmatched_agents"].value == len(expected)


# The CLI path is engine-independent; the Dagster path runs on both engines above.
@pytest.mark.parametrize("staging_url", ["sqlite"], indirect=True)
def test_cli_sample_dry_run_sample_and_rollback_by_range_and_run(rehearsal):
    """The CLI path end to end on one engine: dry run (nothing sent), real sample with progress and
    readback, rollback of one day's tickets, then of the rest by run id, then the same sample again
    recreates exactly the same objects, once."""
    r = rehearsal
    assert _materialize(r, STAGING_KEYS).success

    dry = _cli(["sample", "--customers", "2", "--dry-run"], r)
    assert dry.returncode == 0, dry.stderr + dry.stdout
    assert "sample tickets" in dry.stdout and "0 requests sent to Unthread" in dry.stdout
    assert _requests(r) == [] and _ledger_states(r) == {}
    out_dir = Path(re.search(r"payloads in (\S+)", dry.stdout).group(1))
    planned = _dry_run_keys(out_dir)

    real = _cli(["sample", "--customers", "2"], r)
    assert real.returncode == 0, real.stderr + real.stdout
    assert "preflight PASSED" in real.stdout and "0 missing, 0 duplicated" in real.stdout
    assert target_keys(r.unthread.url) == planned
    run_id = re.search(r"ledger run id (\S+)", real.stdout).group(1)
    assert run_id.startswith("sample:")

    # one day's tickets: only their conversations go; customers with other conversations stay
    db = r.db()
    try:
        with db.engine.connect() as conn:
            first_ts = conn.execute(sa.text(
                "select min(t.first_ts) from tickets t join ledger l on l.source_key = 'ticket:' || t.ticket_id "
                "where l.state = 'done'"
            )).scalar_one()
    finally:
        db.dispose()
    day = first_ts[:10]
    by_day = _cli(["rollback", "--range", f"{day}...{day}", "--yes"], r)
    assert by_day.returncode == 0, by_day.stderr
    gone = int(re.search(r"deleted (\d+) conversations", by_day.stdout).group(1))
    assert 0 < gone < len(planned["conversations"])
    assert r.stats()["conversations"] == len(planned["conversations"]) - gone

    rest = _cli(["rollback", "--run-id", run_id, "--yes"], r)
    assert rest.returncode == 0, rest.stderr
    stats = r.stats()
    assert stats["conversations"] == stats["customers"] == stats["messages"] == 0

    again = _cli(["sample", "--customers", "2"], r)
    assert again.returncode == 0, again.stderr + again.stdout
    assert target_keys(r.unthread.url) == planned


@pytest.mark.parametrize("command", [["preflight"], ["sample"], ["dry-run"], ["rollback"]], ids=" ".join)
def test_review_commands_have_help(command):
    proc = subprocess.run([SCRIPT, *command, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Usage:" in proc.stdout, proc.stderr


def test_rollback_wants_exactly_one_selection(tmp_path):
    db = f"sqlite:///{tmp_path / 'staging.db'}"
    for args in ([], ["--sample", "--run-id", "x"]):
        proc = subprocess.run([SCRIPT, "rollback", *args, "--staging-url", db], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "exactly one of" in proc.stdout + proc.stderr
