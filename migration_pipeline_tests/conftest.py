"""Fixtures shared by every test package: generated datasets and running emulators."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from sim.emulators.common import FaultConfig, RunningServer

GLADLY_USER = "migration.bot@example.com"
GLADLY_TOKEN = "gladly-test-token-0123456789"
UNTHREAD_KEY = "unthread-test-key-0123456789"
DATASET_END = date(2026, 11, 20)
# Emulator clock for tests: early morning after the last day, once its daily job has landed.
DATASET_NOW = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


# Only a power loss could tell FULL from NORMAL on the tests' throwaway SQLite staging databases,
# and with every worker syncing each ledger write the disk becomes the suite's bottleneck (as
# `synchronous_commit = off` on the PostgreSQL test databases). Production keeps FULL; one test
# checks that default. The variable reaches what the settings build (resources, the CLI, runs in
# subprocesses); the fixtures below hand the level to their StagingDatabase themselves.
SQLITE_SYNCHRONOUS = "NORMAL"
os.environ.setdefault("MIGRATION_SQLITE_SYNCHRONOUS", SQLITE_SYNCHRONOUS)


# -- built once per test session, shared by every xdist worker ----------------------------------
def session_root(tmp_path_factory) -> Path:
    """The folder every worker of this test session shares (xdist gives each worker a subfolder)."""
    import os

    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def session_lock(tmp_path_factory, name: str) -> Iterator[Path]:
    """An exclusive lock across the session's worker processes; yields the shared root."""
    import fcntl

    root = session_root(tmp_path_factory)
    with open(root / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield root
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def shared_folder(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """`build(folder)` once for the whole session (the first worker to ask builds, the others wait
    and reuse); a build that failed half way is redone."""
    import shutil

    with session_lock(tmp_path_factory, name) as root:
        folder, complete = root / name, root / f".{name}.complete"
        if not complete.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            complete.touch()
    return folder


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """50 customers x 20 days ending DATASET_END (every kind of mess the generator makes): daily
    jobs plus a one-time job for the history older than Gladly's 14 days. Read-only: a test that
    changes it works on a copy."""
    from sim.synth.generator import generate

    return shared_folder(
        tmp_path_factory, "dataset", lambda out: generate(out, customers=50, days=20, seed=11, end=DATASET_END)
    )


def start_gladly(data_dir: Path, faults: FaultConfig | None = None, now: datetime | None = DATASET_NOW, **kw) -> RunningServer:
    """A Gladly emulator on a dataset with the tests' credentials (the caller stops it)."""
    from sim.emulators.gladly import create_app

    app = create_app(data_dir, api_user=GLADLY_USER, api_token=GLADLY_TOKEN, faults=faults, now=now, **kw)
    return RunningServer(app).start()


def start_unthread(state_path: Path, workspace: dict | None = None, faults: FaultConfig | None = None, **kw) -> RunningServer:
    """An Unthread emulator with its state in `state_path`, seeded with a dataset's workspace, no
    rate limit unless asked (the caller stops it)."""
    from sim.emulators.unthread import create_app

    kw.setdefault("rate_limit_per_second", None)
    app = create_app(api_key=UNTHREAD_KEY, state_path=state_path, workspace=workspace, faults=faults, **kw)
    return RunningServer(app).start()


@pytest.fixture
def gladly_server_factory():
    """Start Gladly emulators on a dataset; stopped at the end of the test."""
    servers: list[RunningServer] = []

    def start(data_dir: Path, **kw):
        servers.append(start_gladly(data_dir, **kw))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def must_run() -> bool:
    """Under CI (any truthy CI value: `true`, `1`, `True`, `yes`) nothing may skip for a missing
    service or tool: the test fails instead."""
    import os

    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no", "off"}


def skip_or_fail(reason: str) -> None:
    """Skip with the reason, or fail with it where the test must run (see `must_run`)."""
    if must_run():
        pytest.fail(f"CI is set, so this must run: {reason}")
    pytest.skip(reason)


# -- staging databases -----------------------------------------------------------------------
def pg_admin_url() -> str:
    import os

    return os.environ.get("MIGRATION_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def create_pg_database(conn, prefix: str = "mp_test", template: str | None = None) -> str:
    """A new database (a copy of `template` if given) through an autocommit admin connection;
    returns its name."""
    import uuid

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    # A throwaway database need not wait for its WAL to reach the disk at each commit: only a
    # crash of the PostgreSQL server itself (which no test makes) could tell the difference.
    conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    return name


@pytest.fixture(scope="session")
def pg_admin():
    """A connection to the test PostgreSQL server; skips without one, except under CI."""
    import psycopg

    url = pg_admin_url()
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        skip_or_fail(f"no PostgreSQL at {url} ({exc.__class__.__name__}: {exc}); set MIGRATION_TEST_PG_URL")
    yield conn, url
    conn.close()


@pytest.fixture
def pg_databases(pg_admin):
    """Make fresh databases for one test (`make()` or `make(template=name)` for a copy of another
    database); every one is dropped afterwards. Returns URLs."""
    conn, url = pg_admin
    base, _, _ = url.rpartition("/")
    made: list[str] = []

    def make(template: str | None = None) -> str:
        made.append(create_pg_database(conn, template=template))
        return f"{base}/{made[-1]}"

    yield make
    for name in made:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_database(pg_databases):
    """A fresh database for one test, dropped afterwards; yields its URL."""
    return pg_databases()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def staging_url(request, tmp_path) -> str:
    """The staging database URL, once per engine: a SQLite file and a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'staging.db'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def staging_db(staging_url):
    """The first pair's staging namespace with its schema on each engine, disposed afterwards."""
    from migration_pipeline.lib.staging.db import StagingDatabase
    from migration_pipeline.pairs.gladly_to_unthread.pair import NAME

    db = StagingDatabase(staging_url, NAME, sqlite_synchronous=SQLITE_SYNCHRONOUS)
    db.create_schema()
    yield db
    db.dispose()


@pytest.fixture
def zendesk_gladly_db(staging_url):
    """The Zendesk -> Gladly pair's own staging namespace, with its schema, on each engine."""
    from migration_pipeline.lib.staging.db import StagingDatabase

    db = StagingDatabase(staging_url, "zendesk_to_gladly", sqlite_synchronous=SQLITE_SYNCHRONOUS)
    db.create_schema()
    yield db
    db.dispose()


@pytest.fixture
def unthread_server_factory(tmp_path):
    """Start Unthread emulators (state in tmp_path/<name>.sqlite); stopped at the end of the test."""
    servers: list[RunningServer] = []

    def start(workspace: dict | None = None, faults: FaultConfig | None = None, name: str = "unthread", **kw):
        servers.append(start_unthread(tmp_path / f"{name}.sqlite", workspace, faults, **kw))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


# The rehearsal fixtures for every test package (defined after the constants they import).
from migration_pipeline_tests.rehearsal import loaded_states, migrated, rehearsal  # noqa: E402, F401


# -- the fast inner loop -----------------------------------------------------------------------
# `make test-fast` deselects end-to-end tests: whole migrations through the graph, Dagster runs in
# other processes, the deployed topology and the browser. Marked here by what they use, so a new
# test is classified without anyone remembering to mark it.
E2E_FIXTURES = {"rehearsal", "migrated", "launch", "loaded_states", "unthread_server_factory", "ui_rehearsal"}
E2E_FOLDERS = {"deploy", "ui"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        folder = item.path.parent.name
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())) or folder in E2E_FOLDERS:
            item.add_marker(pytest.mark.e2e)
    # Longest first (a stable sort: the same order on every xdist worker), so the parallel run does
    # not end waiting on one long test picked up last while the other workers sit idle: Dagster in
    # other processes, then other end-to-end tests, then the rest.
    def weight(item) -> int:
        if "launch" in getattr(item, "fixturenames", ()) or item.path.parent.name in E2E_FOLDERS:
            return 0
        return 1 if item.get_closest_marker("e2e") else 2

    items.sort(key=weight)


def pytest_sessionfinish(session, exitstatus):
    """Drop the shared PostgreSQL template databases once every worker is done (on xdist's
    controller, or in a run without workers)."""
    if hasattr(session.config, "workerinput"):
        return
    from migration_pipeline_tests.rehearsal import drop_pg_templates

    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        drop_pg_templates(factory.getbasetemp())
