"""Real processes: a load killed midway and restarted, and two runs racing on the same range.

The pipeline runs as `dagster asset materialize` in its own process group, exactly as a user or
the daemon would launch it; the emulators run in this test process. Exactly-once is judged on
the Unthread emulator's own object counts against the ledger, and by the run's blocking checks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from migration_pipeline.staging.db import StagingDatabase, ledger, tickets
from migration_pipeline.synth.dataset import DatasetLayout, read_json
from migration_pipeline_tests.conftest import DATASET_END, GLADLY_TOKEN, GLADLY_USER, UNTHREAD_KEY

FIRST = (DATASET_END - timedelta(days=20)).isoformat()
LAST = (DATASET_END - timedelta(days=1)).isoformat()


@pytest.fixture
def launch(small_dataset, gladly_server_factory, unthread_server_factory, tmp_path, staging_url):
    gladly = gladly_server_factory(small_dataset, rate_limit_per_second=1000)
    unthread = unthread_server_factory(read_json(DatasetLayout(small_dataset).unthread_workspace))
    home = tmp_path / "dagster_home"
    home.mkdir()
    # The instance's own SQLite storage exists before runs race (as on any real deployment);
    # two processes creating it at once is Dagster's race, not the pipeline's.
    dg.DagsterInstance.from_config(str(home)).dispose()
    base_env = os.environ | {
        "GLADLY_BASE_URL": gladly.url,
        "GLADLY_API_USER": GLADLY_USER,
        "GLADLY_API_TOKEN": GLADLY_TOKEN,
        "UNTHREAD_BASE_URL": f"{unthread.url}/api",
        "UNTHREAD_API_KEY": UNTHREAD_KEY,
        "UNTHREAD_TRIAGE_CHANNEL_ID": read_json(DatasetLayout(small_dataset).unthread_workspace)["triageChannels"][0]["id"],
        "MIGRATION_DATA_DIR": str(tmp_path / "pipeline"),
        "MIGRATION_STAGING_URL": staging_url,
        "MIGRATION_LEASE_TTL_SECONDS": "3",
        "DAGSTER_HOME": str(home),
    }

    def start(requests_per_second: int) -> subprocess.Popen:
        command = [
            sys.executable, "-m", "dagster", "asset", "materialize", "-m", "migration_pipeline.definitions",
            "--select", "*", "--partition-range", f"{FIRST}...{LAST}",
        ]
        env = base_env | {"UNTHREAD_REQUESTS_PER_SECOND": str(requests_per_second)}
        return subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )

    start.unthread = unthread  # type: ignore[attr-defined]
    start.staging_url = staging_url  # type: ignore[attr-defined]
    return start


def _stats(server) -> dict:
    return httpx.get(f"{server.url}/_emulator/stats").json()


def _ledger_counts(url: str) -> dict[str, int]:
    db = StagingDatabase(url)
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


def test_load_killed_midway_then_restarted_has_no_duplicate_and_no_gap(launch):
    first = launch(requests_per_second=40)
    deadline = time.monotonic() + 300
    while _stats(launch.unthread).get("messages", 0) < 150:
        assert first.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)  # a real crash: no cleanup, no finally blocks
    first.wait(timeout=30)
    at_kill = _stats(launch.unthread)
    assert 0 < at_kill["messages"]

    _finish(launch(requests_per_second=500))
    _assert_exactly_once(launch)
    assert _stats(launch.unthread)["messages"] > at_kill["messages"]


def test_two_runs_racing_on_the_same_range_send_everything_once(launch):
    runs = [launch(requests_per_second=200), launch(requests_per_second=200)]
    for run in runs:
        _finish(run)
    _assert_exactly_once(launch)
