"""Upgrading a staging database from before pairs had namespaces: the first pair's tables move from
the default namespace into its own on first open, on SQLite (the file) and PostgreSQL (schema)."""

import sqlite3

import pytest
import sqlalchemy as sa

from migration_pipeline.lib.staging.adoption import AdoptionError, default_heir, register_default_heir
from migration_pipeline.lib.staging.db import StagingDatabase, agents, now_text, sqlite_path
from migration_pipeline.pairs.gladly_to_unthread.pair import NAME


def _agent(source_id: str) -> dict:
    return {"source_id": source_id, "source_system": "gladly", "name": source_id, "email": None, "active": True,
            "staged_at": now_text()}


def _stage_agents(url: str, namespace: str | None, *ids: str) -> None:
    db = StagingDatabase(url, namespace)
    try:
        db.create_schema()
        with db.begin() as conn:
            db.upsert(conn, agents, [_agent(i) for i in ids])
    finally:
        db.dispose()


def _agent_ids(url: str, namespace: str | None) -> list[str]:
    db = StagingDatabase(url, namespace)
    try:
        db.create_schema()
        with db.engine.connect() as conn:
            return sorted(conn.execute(sa.select(agents.c.source_id)).scalars())
    finally:
        db.dispose()


def _public_tables(url: str) -> set[str]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text("select tablename from pg_tables where schemaname = 'public'")).scalars())
    finally:
        engine.dispose()


def test_the_first_pair_is_the_default_namespaces_heir():
    assert default_heir() == NAME
    with pytest.raises(ValueError, match="already go to 'gladly_to_unthread'"):
        register_default_heir("zendesk_to_gladly")


def test_tables_from_before_namespaces_move_to_the_pair_once(staging_url):
    _stage_agents(staging_url, None, "a1", "a2")  # a database as the release before namespaces left it

    assert _agent_ids(staging_url, NAME) == ["a1", "a2"]

    if staging_url.startswith("sqlite"):
        legacy = sqlite_path(staging_url)
        assert not legacy.exists() and legacy.with_name("staging-gladly_to_unthread.db").exists()
        assert not list(legacy.parent.glob("*.adopting"))
    else:
        assert "stg_agents" not in _public_tables(staging_url)
    # Later opens change nothing; writes go to the pair's tables; another pair adopts nothing.
    _stage_agents(staging_url, NAME, "a3")
    assert _agent_ids(staging_url, NAME) == ["a1", "a2", "a3"]
    assert _agent_ids(staging_url, "zendesk_to_gladly") == []


def test_a_fresh_database_has_nothing_to_move(staging_url):
    assert _agent_ids(staging_url, NAME) == []
    if staging_url.startswith("sqlite"):
        assert not sqlite_path(staging_url).exists()


@pytest.mark.postgres
def test_rows_in_both_places_move_nothing_and_name_the_table(pg_database):
    _stage_agents(pg_database, NAME, "new")
    _stage_agents(pg_database, None, "old")

    with pytest.raises(AdoptionError, match=r"stg_agents hold rows both in schema 'public'.*nothing was moved"):
        _agent_ids(pg_database, NAME)
    assert _agent_ids(pg_database, None) == ["old"]  # all or nothing: every table stayed
    assert "stg_customers" in _public_tables(pg_database)


@pytest.mark.postgres
def test_an_empty_copy_on_either_side_gives_way(pg_database):
    _stage_agents(pg_database, None, "old")
    db = StagingDatabase(pg_database, "unrelated")  # not the heir: makes the schema, moves nothing
    db.create_schema()
    db.dispose()
    with sa.create_engine(pg_database.replace("postgresql://", "postgresql+psycopg://", 1)).begin() as conn:
        conn.execute(sa.text(f'create schema "{NAME}"'))
        conn.execute(sa.text(f'create table "{NAME}".stg_agents (like public.stg_agents including all)'))

    assert _agent_ids(pg_database, NAME) == ["old"]  # the pair's empty table was replaced
    assert _agent_ids(pg_database, "unrelated") == []


def test_a_sqlite_file_still_open_elsewhere_is_not_moved(tmp_path):
    url = f"sqlite:///{tmp_path / 'staging.db'}"
    _stage_agents(url, None, "a1")
    other = sqlite3.connect(tmp_path / "staging.db")  # a run of the old release still holding it
    other.execute("select count(*) from stg_agents").fetchall()
    try:
        with pytest.raises(AdoptionError, match="another process has staging.db open.*Nothing was changed"):
            StagingDatabase(url, NAME)
        assert (tmp_path / "staging.db").exists() and not (tmp_path / "staging-gladly_to_unthread.db").exists()
    finally:
        other.close()
    assert _agent_ids(url, NAME) == ["a1"]


def test_rows_written_to_the_old_file_after_the_move_are_refused_not_ignored(tmp_path):
    url = f"sqlite:///{tmp_path / 'staging.db'}"
    _stage_agents(url, None, "a1")
    assert _agent_ids(url, NAME) == ["a1"]  # moved
    _stage_agents(url, None, "late")  # a run of the old release, after the move: a new default file

    with pytest.raises(AdoptionError, match="both staging.db .* and staging-gladly_to_unthread.db hold staging rows"):
        StagingDatabase(url, NAME)
    (tmp_path / "staging.db").unlink()  # the operator merged or removed it
    assert _agent_ids(url, NAME) == ["a1"]


def test_an_empty_default_file_beside_the_pairs_is_left_alone(tmp_path):
    url = f"sqlite:///{tmp_path / 'staging.db'}"
    _stage_agents(url, NAME, "a1")
    default = StagingDatabase(url)  # tables, no rows (e.g. a tool opening the default namespace)
    default.create_schema()
    default.dispose()
    assert _agent_ids(url, NAME) == ["a1"]
