"""Fixtures shared by every test package: generated datasets and running emulators."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from migration_pipeline.emulators.common import FaultConfig, RunningServer

GLADLY_USER = "migration.bot@example.com"
GLADLY_TOKEN = "gladly-test-token-0123456789"
UNTHREAD_KEY = "unthread-test-key-0123456789"
DATASET_END = date(2026, 11, 20)
# Emulator clock for tests: early morning after the last day, once its daily job has landed.
DATASET_NOW = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """50 customers x 20 days ending DATASET_END (every kind of mess the generator makes): daily
    jobs plus a one-time job for the history older than Gladly's 14 days."""
    from migration_pipeline.synth.generator import generate

    out = tmp_path_factory.mktemp("dataset")
    generate(out, customers=50, days=20, seed=11, end=DATASET_END)
    return out


@pytest.fixture
def gladly_server_factory():
    """Start Gladly emulators on a dataset; stopped at the end of the test."""
    from migration_pipeline.emulators.gladly import create_app

    servers: list[RunningServer] = []

    def start(data_dir: Path, faults: FaultConfig | None = None, now: datetime | None = DATASET_NOW, **kw):
        app = create_app(data_dir, api_user=GLADLY_USER, api_token=GLADLY_TOKEN, faults=faults, now=now, **kw)
        server = RunningServer(app).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# -- staging databases -----------------------------------------------------------------------
def _pg_admin_url() -> str:
    import os

    return os.environ.get("MIGRATION_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_admin():
    """A connection to the test PostgreSQL server; skips without one, except under CI=true."""
    import os

    import psycopg

    url = _pg_admin_url()
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires PostgreSQL at {url}: {exc}")
        pytest.skip(f"no PostgreSQL at {url} ({exc.__class__.__name__}); set MIGRATION_TEST_PG_URL")
    yield conn, url
    conn.close()


@pytest.fixture
def pg_database(pg_admin):
    """A fresh database for one test, dropped afterwards; yields its URL."""
    import uuid

    conn, url = pg_admin
    name = f"mp_test_{uuid.uuid4().hex[:12]}"
    conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def staging_url(request, tmp_path) -> str:
    """The staging database URL, once per engine: a SQLite file and a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'staging.db'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def unthread_server_factory(tmp_path):
    """Start Unthread emulators (state in tmp_path) seeded with a dataset's workspace."""
    from migration_pipeline.emulators.unthread import create_app

    servers: list[RunningServer] = []

    def start(workspace: dict | None = None, faults: FaultConfig | None = None, name: str = "unthread", **kw):
        kw.setdefault("rate_limit_per_second", None)
        app = create_app(
            api_key=UNTHREAD_KEY, state_path=tmp_path / f"{name}.sqlite", workspace=workspace, faults=faults, **kw
        )
        server = RunningServer(app).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
