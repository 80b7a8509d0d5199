"""The production topology without Docker: code server, webserver and daemon as real processes
on one PostgreSQL instance (deploy/dagster.yaml verbatim), backfills launched through the
webserver's GraphQL API, against the Gladly and Unthread emulators.

Every asset uses `BackfillPolicy.single_run()`, so one backfill of several days is one run. To
exercise the run queue and the cross-run pools, the same three-day backfill is launched three
times at once (as an operator re-launching it, or a sensor and a person racing, would): with
`max_concurrent_runs: 2` one run must wait in the queue, two runs are in flight together, and the
`gladly_api` / `unthread_api` pools must still hold each vendor to one step at a time. The ledger
must make the second and third runs send nothing, so Unthread ends exactly as a single-process
run of the same range leaves it.

No timing is left to chance: the Unthread emulator is held (every API request waits unanswered)
until two runs are seen in progress and the third waiting in the queue at the same moment, and
only then released, so the overlap and the queue are observed, not hoped for.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from sim.demo import accept_planted_mess
from sim.synth.dataset import DatasetLayout, read_json
from migration_pipeline_tests.conftest import DATASET_END, GLADLY_TOKEN, GLADLY_USER, UNTHREAD_KEY
from migration_pipeline_tests.rehearsal import Rehearsal

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "migration_pipeline"
FIRST = (DATASET_END - timedelta(days=3)).isoformat()
LAST = (DATASET_END - timedelta(days=1)).isoformat()
PARTITIONS = [(DATASET_END - timedelta(days=d)).isoformat() for d in (3, 2, 1)]
BACKFILLS = 3
DEADLINE_SECONDS = 900  # generous: a slow shared machine must not fail the test, only a hang


# -- processes -------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Long-running Dagster processes, each in its own process group so that its children (the
    code server's gRPC child, run workers, step processes) die with it."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop_all(self) -> None:
        # Killed outright: nothing is asserted after this, and a graceful stop of the three
        # services took seconds. The group, not just the leader: run workers and the code
        # server's gRPC child go with it.
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait(timeout=10)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_for(what: str, probe, processes: Processes, timeout: float = 180, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        processes.check_alive()
        try:
            result = probe()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, reported below
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error!r})")


# -- GraphQL ---------------------------------------------------------------------------------
LOCATION_STATUS = """
query {
  workspaceOrError {
    __typename
    ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename } } }
  }
}
"""

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    response = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    assert response.status_code == 200, response.text[:2000]
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def _grpc_serving(port: int) -> bool:
    from dagster._grpc.client import DagsterGrpcClient

    return DagsterGrpcClient(port=port, host="127.0.0.1").health_check_query() == "SERVING"


def _location_loaded(url: str) -> bool:
    data = _graphql(url, LOCATION_STATUS)["workspaceOrError"]
    entries = {e["name"]: e for e in data.get("locationEntries", [])}
    entry = entries.get(LOCATION)
    return bool(entry and entry["loadStatus"] == "LOADED" and entry["locationOrLoadError"]["__typename"] == "RepositoryLocation")


# -- the instance, read directly from PostgreSQL ---------------------------------------------
def _pg_env(url: str) -> dict[str, str]:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return {
        "DAGSTER_PG_USERNAME": parsed.username or "postgres",
        "DAGSTER_PG_PASSWORD": parsed.password or "",
        "DAGSTER_PG_HOST": parsed.host or "127.0.0.1",
        "DAGSTER_PG_DB": parsed.database,
        "DAGSTER_PG_PORT": str(parsed.port or 5432),
    }


def _event_text(entry) -> str:
    error = getattr(entry.dagster_event.event_specific_data, "error", None)
    return f"{entry.dagster_event.event_type_value}: {entry.message}" + (f"\n{error.to_string()}" if error else "")


def _step_pools() -> dict[str, str]:
    """Step key (the asset's op name) -> pool, from the code location's own definitions."""
    import dagster as dg

    from migration_pipeline.pairs.gladly_to_unthread.definitions import defs  # the first pair's assets

    return {a.op.name: a.op.pool for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.op.pool}


def _overlaps(intervals: list[tuple[float, float, str]]) -> list[tuple[str, str]]:
    ordered = sorted(intervals)
    return [(a[2], b[2]) for a, b in zip(ordered, ordered[1:]) if b[0] < a[1]]


def _max_in_flight(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    in_flight = peak = 0
    for _, delta in edges:  # an end sorts before a start at the same instant
        in_flight += delta
        peak = max(peak, in_flight)
    return peak


@pytest.fixture
def staging_pg(pg_admin):
    """A second fresh database: the pipeline's staging tables, apart from the instance's."""
    import uuid

    conn, url = pg_admin
    name = f"mp_test_{uuid.uuid4().hex[:12]}"
    conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_backfills_through_the_webserver_queue_share_pools_and_match_a_single_process_run(
    small_dataset, gladly_server_factory, unthread_server_factory, pg_database, staging_pg, tmp_path, monkeypatch
):
    from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
    from dagster._core.execution.backfill import BulkActionStatus
    from dagster._core.instance.ref import InstanceRef

    workspace_seed = read_json(DatasetLayout(small_dataset).unthread_workspace)
    gladly = gladly_server_factory(small_dataset, rate_limit_per_second=1000)
    unthread_single = unthread_server_factory(workspace_seed, name="single")
    unthread_deployed = unthread_server_factory(workspace_seed, name="deployed")

    began = time.monotonic()
    # 1. The reference: one process, one run of the same range (as `make demo` / test_graph do).
    #    It runs in this process on a thread while the services start (their start-up is other
    #    processes, mostly waiting on one another); its result is read at the end.
    single = Rehearsal(small_dataset, gladly, unthread_single, tmp_path / "single", f"sqlite:///{tmp_path / 'single.db'}")
    reference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reference-run")
    reference_done = reference.submit(single.run, FIRST, LAST)
    reference.shutdown(wait=False)

    # 2. DAGSTER_HOME with the production instance file, unchanged; the workspace points at the
    #    code server's port on this machine instead of the compose service name.
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    grpc_port, web_port = _free_port(), _free_port()
    workspace = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
    [entry] = workspace["load_from"]
    assert entry["grpc_server"]["location_name"] == LOCATION
    entry["grpc_server"].update(host="127.0.0.1", port=grpc_port)
    (home / "workspace.yaml").write_text(yaml.safe_dump(workspace))

    pg = _pg_env(pg_database)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "GLADLY_", "UNTHREAD_", "MIGRATION_"))}
    env.update(pg)
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "GLADLY_BASE_URL": gladly.url,
            "GLADLY_API_USER": GLADLY_USER,
            "GLADLY_API_TOKEN": GLADLY_TOKEN,
            "UNTHREAD_BASE_URL": f"{unthread_deployed.url}/api",
            "UNTHREAD_API_KEY": UNTHREAD_KEY,
            "UNTHREAD_TRIAGE_CHANNEL_ID": workspace_seed["triageChannels"][0]["id"],
            "UNTHREAD_REQUESTS_PER_SECOND": "200",
            "GLADLY_REQUESTS_PER_SECOND": "300",  # its Gladly emulator allows 1000/s
            "MIGRATION_DATA_DIR": str(tmp_path / "deployed"),
            "MIGRATION_STAGING_URL": staging_pg,
            "MIGRATION_HISTORY_START": "2026-01-01",
        }
    )
    accept_planted_mess(small_dataset, tmp_path / "deployed")  # only the generator's planted lines may be lost
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = Processes(logs)
    web = f"http://127.0.0.1:{web_port}"
    instance = None
    try:
        # 3. The services, as docker-compose.yml starts them: its one-shot instance-init first
        #    (schema, explicit pool limits), then the code server, webserver and daemon.
        init_script = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["instance-init"]["command"][-1]
        init = subprocess.run(["sh", "-c", init_script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert init.returncode == 0, init.stdout + init.stderr
        processes.start(
            "code-server",
            [str(BIN / "dagster"), "code-server", "start", "-m", "migration_pipeline.definitions",
             "-h", "127.0.0.1", "-p", str(grpc_port), "--location-name", LOCATION],
            env, tmp_path,
        )
        # compose's `depends_on: code-server: service_healthy`
        _wait_for("the code server to serve", lambda: _grpc_serving(grpc_port), processes, timeout=240)
        processes.start(
            "webserver",
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port), "-w", str(home / "workspace.yaml")],
            env, tmp_path,
        )
        _wait_for("the webserver to load the code location over gRPC", lambda: _location_loaded(web), processes, timeout=240)

        # 4. Backfills of three days through GraphQL, all at once.
        from migration_pipeline.pairs.gladly_to_unthread.definitions import defs  # the first pair's assets
        import dagster as dg

        asset_keys = [
            {"path": key.path}
            for a in defs.assets
            if isinstance(a, dg.AssetsDefinition) and a.is_executable
            for key in a.keys
        ]
        backfill_ids = []
        for i in range(BACKFILLS):
            result = _graphql(
                web,
                LAUNCH_BACKFILL,
                {
                    "params": {
                        "assetSelection": asset_keys,
                        "partitionNames": PARTITIONS,
                        "title": f"topology test {i}",
                        # The graph is a chain, so a run gains nothing from a process per step;
                        # in-process steps claim the same instance pool slots and keep the test
                        # quick on two cores. Production keeps the default multiprocess executor.
                        "runConfigData": {"execution": {"config": {"in_process": {}}}},
                    }
                },
            )["launchPartitionBackfill"]
            assert result["__typename"] == "LaunchBackfillSuccess", result
            backfill_ids.append(result["backfillId"])
        # Unthread stalls every request until the queue has been seen doing its job (below).
        httpx.put(f"{unthread_deployed.url}/_emulator/hold", json={"held": True}).raise_for_status()
        processes.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(home / "workspace.yaml")], env, tmp_path)

        # 5. Watch the instance (the same PostgreSQL database): with Unthread held, no run can
        #    finish, so the daemon must end up with `limit` runs in progress and the rest queued.
        for key, value in pg.items():
            monkeypatch.setenv(key, value)
        instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
        limit = yaml.safe_load((home / "dagster.yaml").read_text())["concurrency"]["runs"]["max_concurrent_runs"]
        seen_together: dict[str, list[str]] = {}

        def queue_full() -> bool:
            runs = [r for b in backfill_ids for r in instance.get_runs(RunsFilter(tags={"dagster/backfill": b}))]
            seen_together.update(
                started=[r.run_id for r in runs if r.status == DagsterRunStatus.STARTED],
                queued=[r.run_id for r in runs if r.status == DagsterRunStatus.QUEUED],
                finished=[f"{r.run_id} {r.status.value}" for r in runs if r.is_finished],
            )
            return bool(seen_together["finished"]) or (len(seen_together["started"]) == limit and bool(seen_together["queued"]))

        _wait_for(f"{limit} runs in progress and one queued", queue_full, processes, timeout=DEADLINE_SECONDS, interval=0.5)
        assert not seen_together["finished"], f"runs ended while Unthread was held: {seen_together}"
        httpx.put(f"{unthread_deployed.url}/_emulator/hold", json={"held": False}).raise_for_status()
        seen_queued = set(seen_together["queued"])
        done_states = {BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED_FAILED, BulkActionStatus.FAILED,
                       BulkActionStatus.CANCELED, BulkActionStatus.COMPLETED}

        def all_done() -> bool:
            runs = [r for b in backfill_ids for r in instance.get_runs(RunsFilter(tags={"dagster/backfill": b}))]
            backfills = [instance.get_backfill(b) for b in backfill_ids]
            return all(b.status in done_states for b in backfills) and all(r.is_finished for r in runs)

        launched = time.monotonic()
        _wait_for("every backfill to finish", all_done, processes, timeout=DEADLINE_SECONDS, interval=1.0)
        print(f"topology: services up and backfills launched after {launched - began:.0f}s, done after {time.monotonic() - began:.0f}s")

        runs = [r for b in backfill_ids for r in instance.get_runs(RunsFilter(tags={"dagster/backfill": b}))]
        records = {r.dagster_run.run_id: r for b in backfill_ids for r in instance.get_run_records(RunsFilter(tags={"dagster/backfill": b}))}
        statuses = {instance.get_backfill(b).status for b in backfill_ids}
        failures = [
            _event_text(e) for r in runs if r.status != DagsterRunStatus.SUCCESS
            for e in instance.all_logs(r.run_id)
            if e.dagster_event and e.dagster_event.event_type_value in {"STEP_FAILURE", "PIPELINE_FAILURE", "ENGINE_EVENT"}
            and (e.level >= 40 or e.dagster_event.event_type_value != "ENGINE_EVENT")
        ]

        # Every backfill succeeded; its runs (single_run policy: each covers all three days, though
        # the daemon may split the chain in two when another backfill holds the upstream) too.
        assert statuses == {BulkActionStatus.COMPLETED_SUCCESS}, (statuses, failures)
        assert {r.tags["dagster/backfill"] for r in runs} == set(backfill_ids)
        assert all(r.status == DagsterRunStatus.SUCCESS for r in runs), "\n".join([str([(r.run_id[:8], r.status.value, r.tags.get("dagster/parent_run_id")) for r in runs]), *failures])
        for run in runs:
            assert run.tags["dagster/asset_partition_range_start"] == FIRST
            assert run.tags["dagster/asset_partition_range_end"] == LAST

        # The runs went through the queue, and at most max_concurrent_runs were in progress at once
        # -- while two of them really did overlap, which is what makes the pool check below bite.
        assert len(runs) > limit, "the test needs more runs than the limit to exercise the queue"
        for run in runs:
            assert instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_ENQUEUED), run.run_id
        run_windows = [(rec.start_time, rec.end_time) for rec in records.values()]
        assert all(start and end for start, end in run_windows)
        # never more than the limit at once; and the limit was reached (seen above, held there)
        assert _max_in_flight(run_windows) == limit, run_windows
        assert seen_queued <= {r.run_id for r in runs}

        # Pools: across all runs, no two steps of the same pool were ever executing together.
        pools = _step_pools()
        assert set(pools.values()) == {"gladly_api", "unthread_api"}
        by_pool: dict[str, list[tuple[float, float, str]]] = {}
        for run in runs:
            started: dict[str, float] = {}
            for event in instance.all_logs(
                run.run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
            ):
                step = event.step_key
                if step not in pools:
                    continue
                if event.dagster_event_type == DagsterEventType.STEP_START:
                    started[step] = event.timestamp
                else:
                    by_pool.setdefault(pools[step], []).append((started.pop(step), event.timestamp, f"{run.run_id[:8]}:{step}"))
            assert not started, f"steps without an end in {run.run_id}: {started}"
        assert set(by_pool) == {"gladly_api", "unthread_api"}
        t0 = min(start for start, _ in run_windows)
        print("topology: runs", sorted((round(a - t0, 1), round(b - t0, 1)) for a, b in run_windows))
        for pool, intervals in by_pool.items():
            print(f"topology: {pool}", sorted((round(a - t0, 1), round(b - t0, 1), label) for a, b, label in intervals))
            # contended: steps of this pool came from several runs
            assert len({label.split(":")[0] for *_, label in intervals}) >= 2, (pool, intervals)
            assert not _overlaps(intervals), f"pool {pool} ran steps concurrently: {_overlaps(intervals)}"

        # 6. Unthread ends exactly as the single-process run left it: nothing twice, nothing missing.
        reference_done.result(timeout=DEADLINE_SECONDS)
        expected = single.stats()
        assert expected["conversations"] > 0 and expected["messages"] > expected["conversations"]
        assert httpx.get(f"{unthread_deployed.url}/_emulator/stats").json() == expected
    except BaseException:
        for name in processes.procs:
            print(f"--- {name} log (tail) ---\n{processes.tail(name, 60)}")
        raise
    finally:
        if instance is not None:
            instance.dispose()
        processes.stop_all()
        wait([reference_done], timeout=DEADLINE_SECONDS)  # never leave the reference run behind
