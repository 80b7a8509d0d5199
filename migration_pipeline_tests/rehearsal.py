"""A rehearsal migration against both emulators, and one loaded state per engine shared by tests.

`Rehearsal` bundles a Gladly emulator, an Unthread emulator, a staging database and a data folder
with the resources that point at them. Most end-to-end tests start from "the whole range migrated
cleanly" and then read, tamper or re-run: they take the `migrated` fixture, which gives each test
its own copy of a state migrated once per engine for the whole session and shared by every xdist
worker (staging database copied as a file on SQLite and with `CREATE DATABASE ... TEMPLATE` on PostgreSQL, the Unthread emulator's
state file and uploads, the data folder with its archive and reports), so every test still talks
to real servers and real databases, and none sees another's writes. `first_run` is the result of
the run that made the state, as a test doing that run itself would have seen it.

Credentials reach the resources as `dagster.EnvVar`, as in production, so the run's stored
resource configuration can be checked for secrets.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest

from migration_pipeline.pairs.gladly_to_unthread.definitions import defs  # the first pair's assets
from sim.demo import accept_planted_mess
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.gladly.resources import GladlyResource
from migration_pipeline.lib.staging.db import StagingDatabase, namespaced_url, sqlite_path
from migration_pipeline.lib.staging.resources import StagingResource
from sim.synth.dataset import DatasetLayout, read_json
from migration_pipeline.vendors.unthread.resources import UnthreadResource
from migration_pipeline.pairs.gladly_to_unthread.pair import NAME as GLADLY_TO_UNTHREAD
from migration_pipeline_tests.conftest import DATASET_END, GLADLY_TOKEN, GLADLY_USER, SQLITE_SYNCHRONOUS, UNTHREAD_KEY

FIRST = (DATASET_END - timedelta(days=20)).isoformat()
LAST = (DATASET_END - timedelta(days=1)).isoformat()
ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]

# The tests' credentials, in the variables production reads them from (resolved at launch).
SECRET_ENV = {"GLADLY_API_TOKEN": GLADLY_TOKEN, "UNTHREAD_API_KEY": UNTHREAD_KEY}
os.environ.update(SECRET_ENV)


def unthread_resource(base_url: str, workspace: dict, **overrides) -> UnthreadResource:
    """The rehearsal's Unthread resource: quick pacing and backoff, the workspace's triage channel
    and email inbox, the key through EnvVar; `overrides` replace any field."""
    fields = {
        "base_url": base_url, "api_key": dg.EnvVar("UNTHREAD_API_KEY"),
        "triage_channel_id": workspace["triageChannels"][0]["id"],
        "email_inbox_id": workspace["emailInboxes"][0]["id"],
        "requests_per_second": 500, "backoff_initial_seconds": 0.02, "backoff_max_seconds": 0.2,
    }
    return UnthreadResource(**(fields | overrides))


class Rehearsal:
    def __init__(self, dataset, gladly, unthread, data_dir, staging_url, **client_overrides):
        self.dataset, self.gladly, self.unthread = dataset, gladly, unthread
        self.workspace = read_json(DatasetLayout(dataset).unthread_workspace)
        # `client_overrides` replace any field of both vendor resources (pacing and backoff included)
        gladly_fields = {
            "base_url": gladly.url, "api_user": GLADLY_USER, "api_token": dg.EnvVar("GLADLY_API_TOKEN"),
            "requests_per_second": 50, "backoff_initial_seconds": 0.02, "backoff_max_seconds": 0.2,
        }
        self.resources = {
            "gladly": GladlyResource(**(gladly_fields | client_overrides)),
            "unthread": unthread_resource(f"{unthread.url}/api", self.workspace, **client_overrides),
            "storage": MigrationStorage(data_dir=str(data_dir)),
            "staging": StagingResource(url=staging_url, sqlite_synchronous=SQLITE_SYNCHRONOUS),
        }
        self.data_dir = Path(data_dir)
        accept_planted_mess(Path(dataset), self.data_dir)  # only the generator's planted lines may be lost
        self.staging_url = staging_url
        self.first_run: dg.ExecuteInProcessResult | None = None
        self.stored_run = ""

    def with_unthread(self, **overrides) -> Rehearsal:
        """This rehearsal with other Unthread resource settings."""
        self.resources["unthread"] = unthread_resource(f"{self.unthread.url}/api", self.workspace, **overrides)
        return self

    def run(self, first=FIRST, last=LAST, instance: dg.DagsterInstance | None = None):
        result = dg.materialize(
            list(defs.assets),
            resources=self.resources,
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
            raise_on_error=False,
            instance=instance,
        )
        assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        return result

    def stats(self) -> dict:
        return httpx.get(f"{self.unthread.url}/_emulator/stats").json()

    def db(self) -> StagingDatabase:
        return StagingDatabase(self.staging_url, GLADLY_TO_UNTHREAD)


def _api_rows(client: httpx.Client, path: str, body: dict) -> list[dict]:
    """Every row of an Unthread list endpoint, through the emulator's public API."""
    rows, body = [], {"limit": 100, **body}
    while True:
        page = client.post(f"/api{path}", json=body).json()
        rows += page["data"]
        if not page["cursors"].get("hasNext"):
            return rows
        body["cursor"] = page["cursors"]["next"]


def target_keys(unthread_url: str) -> dict[str, list[str]]:
    """Source keys of everything on an Unthread workspace, duplicates kept (sorted lists, not sets):
    customer stamps, conversation keys, and the item marker of every message. One client for
    every page (a client per request would build an SSL context each: seconds per call)."""
    with httpx.Client(base_url=unthread_url, headers={"X-Api-Key": UNTHREAD_KEY}, timeout=60) as client:
        conversations = _api_rows(client, "/conversations/list", {"order": ["createdAt", "id"]})
        markers = []
        for c in conversations:
            for m in _api_rows(client, f"/conversations/{c['id']}/messages/list", {"order": ["ts", "id"]}):
                markers += re.findall(r"`(gladly-item:[^`]+)`", m.get("text") or "")
        customers = _api_rows(client, "/customers/list", {"order": ["createdAt", "id"]})
    return {
        "customers": sorted(c["externalCrmMetadata"]["id"] for c in customers),
        "conversations": sorted(c["metadata"]["sourceKey"] for c in conversations),
        "messages": sorted(markers),
    }


# -- one migrated state per engine, copied for each test ----------------------------------------
@dataclass
class LoadedState:
    """Everything a clean whole-range migration left behind, kept read-only."""

    root: Path  # pipeline/ (data folder), unthread.sqlite (+ .files/), the run's record
    staging_url: str
    result: dg.ExecuteInProcessResult  # rebuilt from the stored events in every worker
    stored_run: str  # the run and its job snapshot as Dagster stored them (serialized)
    target_keys: dict[str, list[str]]  # what a clean run leaves on Unthread: the ground truth


def _copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database (WAL included) through SQLite's backup API."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _pair_file(url: str) -> Path:
    """The SQLite file that holds the first pair's staging namespace for a staging URL."""
    return sqlite_path(namespaced_url(url, GLADLY_TO_UNTHREAD))


PG_TEMPLATES_FILE = "pg-templates.txt"  # template databases to drop when the session ends


def _build_state(engine: str, root: Path, dataset: Path) -> None:
    """Migrate the whole range once into `root` (the staging database there on SQLite, a template
    database on PostgreSQL) and store what tests read back."""
    import psycopg
    from dagster._serdes import serialize_value

    from migration_pipeline_tests.conftest import create_pg_database, pg_admin_url, start_gladly, start_unthread

    if engine == "sqlite":
        staging_url = f"sqlite:///{root / 'staging.db'}"
    else:
        with psycopg.connect(pg_admin_url(), autocommit=True, connect_timeout=5) as conn:
            name = create_pg_database(conn, prefix="mp_template")
        with (root.parent / PG_TEMPLATES_FILE).open("a") as fh:
            fh.write(name + "\n")
        staging_url = f"{pg_admin_url().rpartition('/')[0]}/{name}"
    gladly = start_gladly(dataset, rate_limit_per_second=1000)
    unthread = start_unthread(root / "unthread.sqlite", read_json(DatasetLayout(dataset).unthread_workspace))
    instance = dg.DagsterInstance.ephemeral()
    try:
        result = Rehearsal(dataset, gladly, unthread, root / "pipeline", staging_url).run(instance=instance)
        keys = target_keys(unthread.url)
        run = instance.get_run_by_id(result.run_id)
        stored = serialize_value(run) + serialize_value(instance.get_job_snapshot(run.job_snapshot_id))
    finally:
        gladly.stop()
        unthread.stop()
        instance.dispose()
    (root / "events.json").write_text(serialize_value(list(result.all_events)))
    (root / "dagster_run.json").write_text(serialize_value(result.dagster_run))
    (root / "stored_run.txt").write_text(stored)
    (root / "state.json").write_text(json.dumps({"staging_url": staging_url, "target_keys": keys}))


def _first_pair_job() -> dg.JobDefinition:
    """The job the stored run's events are read back against: the first pair's assets with the
    code location's resources."""
    from migration_pipeline.definitions import defs as location

    return dg.Definitions(assets=list(defs.assets), resources=location.resources).resolve_implicit_global_asset_job_def()


def _load_state(root: Path) -> LoadedState:
    from dagster._core.execution.execute_in_process_result import ExecuteInProcessResult
    from dagster._serdes import deserialize_value

    info = json.loads((root / "state.json").read_text())
    result = ExecuteInProcessResult(
        deserialize_value((root / "events.json").read_text()),
        deserialize_value((root / "dagster_run.json").read_text()),
        None,
        _first_pair_job(),
    )
    return LoadedState(
        root=root, staging_url=info["staging_url"], result=result,
        stored_run=(root / "stored_run.txt").read_text(), target_keys=info["target_keys"],
    )


class LoadedStates:
    """Each engine's migrated state: built by the first worker that needs it, shared by all."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory, dataset: Path):
        self.tmp_path_factory, self.dataset = tmp_path_factory, dataset
        self.states: dict[str, LoadedState] = {}

    def get(self, engine: str) -> LoadedState:
        from migration_pipeline_tests.conftest import shared_folder

        if engine not in self.states:
            root = shared_folder(self.tmp_path_factory, f"loaded-{engine}",
                                 lambda folder: _build_state(engine, folder, self.dataset))
            self.states[engine] = _load_state(root)
        return self.states[engine]

    def copy_staging(self, state: LoadedState, tmp_path: Path, request: pytest.FixtureRequest) -> str:
        from migration_pipeline_tests.conftest import session_lock

        if state.staging_url.startswith("sqlite"):
            url = f"sqlite:///{tmp_path / 'staging.db'}"
            _copy_sqlite(_pair_file(state.staging_url), _pair_file(url))
            return url
        # one copy at a time: PostgreSQL refuses a template that another session is copying
        with session_lock(self.tmp_path_factory, "pg-template"):
            return request.getfixturevalue("pg_databases")(template=state.staging_url.rpartition("/")[2])


def drop_pg_templates(root: Path) -> None:
    """Drop the template databases this session made (called once, when the whole session ends)."""
    listed = root / PG_TEMPLATES_FILE
    if not listed.exists():
        return
    import psycopg

    from migration_pipeline_tests.conftest import pg_admin_url

    with psycopg.connect(pg_admin_url(), autocommit=True, connect_timeout=5) as conn:
        for name in listed.read_text().split():
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    listed.unlink()


@pytest.fixture(scope="session")
def loaded_states(small_dataset, tmp_path_factory):
    return LoadedStates(tmp_path_factory, small_dataset)


@pytest.fixture(params=ENGINES)
def migrated(request, loaded_states, small_dataset, gladly_server_factory, unthread_server_factory, tmp_path):
    """A rehearsal whose whole range is already migrated (a private copy of the shared state);
    `first_run` is that migration's result and `stored_run` what Dagster stored of it."""
    state = loaded_states.get(request.param)
    staging_url = loaded_states.copy_staging(state, tmp_path, request)
    shutil.copytree(state.root / "pipeline", tmp_path / "pipeline")
    _copy_sqlite(state.root / "unthread.sqlite", tmp_path / "unthread.sqlite")
    files = state.root / "unthread.sqlite.files"
    if files.is_dir():
        shutil.copytree(files, tmp_path / "unthread.sqlite.files")
    gladly = gladly_server_factory(small_dataset, rate_limit_per_second=1000)
    unthread = unthread_server_factory(read_json(DatasetLayout(small_dataset).unthread_workspace), name="unthread")
    r = Rehearsal(small_dataset, gladly, unthread, tmp_path / "pipeline", staging_url)
    r.first_run, r.stored_run = state.result, state.stored_run
    r.unthread_state = tmp_path / "unthread.sqlite"
    return r


@pytest.fixture
def rehearsal(small_dataset, gladly_server_factory, unthread_server_factory, tmp_path, staging_url):
    """A rehearsal from nothing: empty staging database, empty Unthread workspace."""
    # Gladly's real limit is 10/s; the rehearsal lifts it so the suite stays quick.
    gladly = gladly_server_factory(small_dataset, rate_limit_per_second=1000)
    unthread = unthread_server_factory(read_json(DatasetLayout(small_dataset).unthread_workspace))
    return Rehearsal(small_dataset, gladly, unthread, tmp_path / "pipeline", staging_url)
