"""Real processes: a load killed midway and restarted, and two runs racing on the same range.

The pipeline runs as `dg launch` in its own process group, exactly as a user or
the daemon would launch it; the emulators run in this test process. Exactly-once is judged
against the ground truth, what a clean uninterrupted run of the same range leaves on Unthread
(one in-process run, made once for the whole session): the same customers, conversations and
message markers, each exactly as often, and the emulator's object counts equal to the ledger's.

The range is the dataset's last week (about 600 of its 2,350 items, in some 50 tickets): enough
for the kill to land with most of the load still to do and for the two racing loads to run side
by side for seconds, at a quarter of the work of the whole range.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from migration_pipeline.pairs.gladly_to_unthread.checks.trace import trace
from sim.demo import accept_planted_mess
from migration_pipeline.lib.staging.db import StagingDatabase, conversation_items, ledger, ticket_items, tickets
from sim.synth.dataset import DatasetLayout, read_json
from migration_pipeline.vendors.unthread.client import UnthreadClient
from migration_pipeline.pairs.gladly_to_unthread.pair import NAME as GLADLY_TO_UNTHREAD
from migration_pipeline_tests.conftest import DATASET_END, GLADLY_USER, UNTHREAD_KEY
from migration_pipeline_tests.rehearsal import LAST, Rehearsal, target_keys

FIRST = (DATASET_END - timedelta(days=7)).isoformat()


def _clean_run(dataset: Path, root: Path) -> None:
    """The ground truth: what one clean, uninterrupted in-process run of the range leaves on Unthread."""
    from migration_pipeline_tests.conftest import start_gladly, start_unthread

    gladly = start_gladly(dataset, rate_limit_per_second=1000)
    unthread = start_unthread(root / "unthread.sqlite", read_json(DatasetLayout(dataset).unthread_workspace))
    try:
        Rehearsal(dataset, gladly, unthread, root / "pipeline", f"sqlite:///{root / 'staging.db'}").run(FIRST, LAST)
        keys = target_keys(unthread.url)
    finally:
        gladly.stop()
        unthread.stop()
    (root / "target_keys.json").write_text(json.dumps(keys))


@pytest.fixture(scope="session")
def ground_truth(small_dataset, tmp_path_factory):
    """The clean run's target keys, made by the first worker that asks (once per session)."""
    from migration_pipeline_tests.conftest import shared_folder

    def keys() -> dict[str, list[str]]:
        root = shared_folder(tmp_path_factory, "resilience-truth", lambda folder: _clean_run(small_dataset, folder))
        return json.loads((root / "target_keys.json").read_text())

    return keys


@pytest.fixture
def launch(small_dataset, gladly_server_factory, unthread_server_factory, tmp_path, staging_url, ground_truth):
    gladly = gladly_server_factory(small_dataset, rate_limit_per_second=1000)
    unthread = unthread_server_factory(read_json(DatasetLayout(small_dataset).unthread_workspace))
    workspace = read_json(DatasetLayout(small_dataset).unthread_workspace)
    home = tmp_path / "dagster_home"
    home.mkdir()
    # The instance's own SQLite storage exists before runs race (as on any real deployment);
    # two processes creating it at once is Dagster's race, not the pipeline's.
    dg.DagsterInstance.from_config(str(home)).dispose()
    accept_planted_mess(small_dataset, tmp_path / "pipeline")  # only the generator's planted lines may be lost
    base_env = os.environ | {
        "GLADLY_BASE_URL": gladly.url,
        "GLADLY_API_USER": GLADLY_USER,
        "UNTHREAD_BASE_URL": f"{unthread.url}/api",
        "UNTHREAD_TRIAGE_CHANNEL_ID": workspace["triageChannels"][0]["id"],
        "UNTHREAD_EMAIL_INBOX_ID": workspace["emailInboxes"][0]["id"],
        "MIGRATION_DATA_DIR": str(tmp_path / "pipeline"),
        "MIGRATION_STAGING_URL": staging_url,
        "MIGRATION_LEASE_TTL_SECONDS": "3",
        "DAGSTER_HOME": str(home),
    }

    def start(requests_per_second: int) -> subprocess.Popen:
        # Steps in the run's own process: the graph is a chain, so a process per step (production's
        # default executor) adds only start-up time here; the kill takes the whole group either way.
        command = [
            str(Path(sys.executable).with_name("dg")), "launch", "-m", "migration_pipeline.definitions",
            "--assets", "*", "--partition-range", f"{FIRST}...{LAST}",
            "--config-json", json.dumps({"execution": {"config": {"in_process": {}}}}),
        ]
        # the Gladly emulator here allows 1000/s: pace the org's shared budget well above Gladly's 9/s
        env = base_env | {"UNTHREAD_REQUESTS_PER_SECOND": str(requests_per_second), "GLADLY_REQUESTS_PER_SECOND": "300"}
        return subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )

    start.unthread = unthread  # type: ignore[attr-defined]
    start.staging_url = staging_url  # type: ignore[attr-defined]
    start.home = home  # type: ignore[attr-defined]
    start.ground_truth = ground_truth  # type: ignore[attr-defined]
    return start


def _stats(server) -> dict:
    return httpx.get(f"{server.url}/_emulator/stats").json()


def _ledger_counts(url: str) -> dict[str, int]:
    db = StagingDatabase(url, GLADLY_TO_UNTHREAD)
    try:
        done = sa.and_(ledger.c.state == "done")
        return {
            "tickets": db.count(tickets),
            "conversations": db.count(ledger, sa.and_(done, ledger.c.entity_type == "conversation")),
            "messages": db.count(ledger, sa.and_(done, ledger.c.entity_type == "message")),
            "customers": db.count(ledger, sa.and_(done, ledger.c.entity_type == "customer")),
            "not_done": db.count(ledger, ledger.c.state != "done"),
        }
    finally:
        db.dispose()


def _finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def _assert_exactly_once(launch) -> None:
    stats, counts = _stats(launch.unthread), _ledger_counts(launch.staging_url)
    assert counts["not_done"] == 0
    assert stats["conversations"] == counts["conversations"] == counts["tickets"]
    assert stats["messages"] == counts["messages"]
    assert stats["customers"] == counts["customers"]
    # exactly the ground truth: nothing missing, nothing twice (lists with duplicates kept)
    found, expected = target_keys(launch.unthread.url), launch.ground_truth()
    for kind in ("customers", "conversations", "messages"):
        assert found[kind] == expected[kind], (kind, sorted(set(expected[kind]) ^ set(found[kind]))[:10])


def _in_doubt_or_unsent_item(conn) -> str:
    """An item the crash left in doubt (intent without an id), else one it never reached."""
    in_doubt = conn.execute(
        sa.select(ledger.c.source_key).where(
            ledger.c.state == "intent", ledger.c.entity_type == "message", ledger.c.source_key.not_like("%#%")
        )
    ).scalars().first()
    if in_doubt is not None:
        return in_doubt.removeprefix("message:")
    done = sa.select(ledger.c.source_key).where(ledger.c.entity_type == "message")
    return conn.execute(
        sa.select(ticket_items.c.item_id)
        .where((sa.literal("message:") + ticket_items.c.item_id).not_in(done))
        .order_by(ticket_items.c.ts)
    ).scalars().first()


def test_load_killed_midway_then_restarted_has_no_duplicate_and_no_gap_and_trace_shows_the_resume(launch):
    first = launch(requests_per_second=100)
    deadline = time.monotonic() + 300
    while _stats(launch.unthread).get("messages", 0) < 150:
        assert first.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)  # a real crash: no cleanup, no finally blocks
    first.wait(timeout=30)
    at_kill = _stats(launch.unthread)
    assert 0 < at_kill["messages"]

    # trace: an item the crash stopped short of says so, and after the resume it is traced to its
    # message, written by the resuming run, and read back from Unthread
    db = StagingDatabase(launch.staging_url, GLADLY_TO_UNTHREAD)
    try:
        with db.engine.connect() as conn:
            crashed_run = conn.execute(
                sa.select(ledger.c.run_id).where(ledger.c.state == "done", ledger.c.entity_type == "message")
            ).scalars().first()
            item_id = _in_doubt_or_unsent_item(conn)
            assert item_id is not None and conn.execute(
                sa.select(sa.func.count()).where(conversation_items.c.source_id == item_id)
            ).scalar_one() == 1
        before = trace(db, item_id).render()
        assert ("in doubt" in before) or ("stopped" in before), before

        _finish(launch(requests_per_second=500))
        with UnthreadClient(f"{launch.unthread.url}/api", UNTHREAD_KEY) as client:
            after = trace(db, item_id, client)
        with db.engine.connect() as conn:
            resumed_run = conn.execute(
                sa.select(ledger.c.run_id).where(ledger.c.source_key.in_([f"message:{item_id}", f"message:{item_id}#1"]))
            ).scalar_one()
    finally:
        db.dispose()
    _assert_exactly_once(launch)
    assert _stats(launch.unthread)["messages"] > at_kill["messages"]
    stages = dict(after.steps)
    assert crashed_run and resumed_run and resumed_run != crashed_run
    assert f"(ledger message:{item_id}" in stages["message"] and f"run {resumed_run[:8]}" in stages["message"]
    assert "in doubt" not in after.render() and "stopped" not in after.render()
    assert stages["readback"].startswith("found on Unthread now: message")


def _load_step_window(instance, run_id: str) -> tuple[float, float]:
    from dagster import DagsterEventType

    events = instance.all_logs(run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS})
    times = [e.timestamp for e in events if e.step_key == "unthread_loaded_records"]
    assert len(times) == 2, (run_id, times)
    return min(times), max(times)


def test_two_runs_racing_on_the_same_range_send_everything_once(launch):
    runs = [launch(requests_per_second=200), launch(requests_per_second=200)]
    for run in runs:
        _finish(run)
    _assert_exactly_once(launch)
    # the race really happened: both runs were loading at the same time
    instance = dg.DagsterInstance.from_config(str(launch.home))
    try:
        records = instance.get_run_records()
        assert len(records) == 2 and all(r.dagster_run.is_success for r in records)
        (a_start, a_end), (b_start, b_end) = (_load_step_window(instance, r.dagster_run.run_id) for r in records)
    finally:
        instance.dispose()
    assert max(a_start, b_start) < min(a_end, b_end), "the two loads did not overlap: no race was tested"
