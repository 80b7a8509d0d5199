"""Leases on the database's clock, kept alive while their holder waits, and a ledger that
survives power loss (issue 12, item 11). Both engines, real databases."""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

import migration_pipeline.lib.staging.db as staging_db
from migration_pipeline.lib.staging.db import StagingDatabase, load_leases
from migration_pipeline.vendors.unthread.client import UnthreadClient
from migration_pipeline.vendors.unthread.loader import LoadSettings, UnthreadLoader

STAGING_TEXT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")  # utc_text's encoding


@pytest.fixture
def db(staging_db):
    return staging_db


@pytest.fixture
def loader_factory(db):
    """Loaders that never reach Unthread (no create is made here); closed at the end."""
    made: list[tuple[UnthreadLoader, UnthreadClient]] = []

    def make(ttl: float) -> UnthreadLoader:
        client = UnthreadClient("http://127.0.0.1:9/api", "never-sent")
        made.append((UnthreadLoader(db, client, LoadSettings(triage_channel_id="C0", lease_ttl_seconds=ttl)), client))
        return made[-1][0]

    yield make
    for loader, client in made:
        loader.close()
        client.close()


def _skew_clock(monkeypatch, offset: timedelta) -> None:
    """This process's wall clock is `offset` off (as on a badly synced machine)."""

    class Skewed(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) + offset

    monkeypatch.setattr(staging_db, "datetime", Skewed)


def _expiry(db: StagingDatabase, key: str) -> str:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(load_leases.c.expires_at).where(load_leases.c.lease_key == key)).scalar_one()


def test_a_process_whose_clock_runs_an_hour_ahead_cannot_take_a_live_lease(db, monkeypatch):
    assert db.try_lease("ticket:T1", "run-a", ttl_seconds=120)
    _skew_clock(monkeypatch, timedelta(hours=1))
    assert not db.try_lease("ticket:T1", "run-b", ttl_seconds=120)
    assert db.try_lease("ticket:T1", "run-a", ttl_seconds=120), "the holder still renews its own lease"


def test_a_lease_taken_by_a_process_whose_clock_runs_behind_is_not_already_expired(db, monkeypatch):
    _skew_clock(monkeypatch, timedelta(hours=-1))
    assert db.try_lease("ticket:T1", "run-a", ttl_seconds=120)
    monkeypatch.undo()
    assert not db.try_lease("ticket:T1", "run-b", ttl_seconds=120)


def test_lease_expiry_is_stored_in_the_staging_text_encoding(db):
    assert db.try_lease("ticket:T1", "run-a", ttl_seconds=90)
    expires = _expiry(db, "ticket:T1")
    assert STAGING_TEXT.match(expires), expires
    ahead = datetime.fromisoformat(expires) - datetime.fromisoformat(staging_db.now_text())
    assert timedelta(seconds=80) < ahead <= timedelta(seconds=90)


def test_a_crashed_owners_lease_expires_after_its_ttl_and_can_be_taken(db):
    assert db.try_lease("ticket:T1", "crashed-run", ttl_seconds=1)  # and then nothing renews it
    assert not db.try_lease("ticket:T1", "restart", ttl_seconds=1)
    time.sleep(1.3)
    assert db.try_lease("ticket:T1", "restart", ttl_seconds=1)


def test_a_lease_held_across_a_wait_longer_than_its_ttl_stays_held(db, loader_factory):
    """No create happens while the holder waits (a long Retry-After, a backoff): the heartbeat
    renews the lease anyway, so a second run cannot take over."""
    # 2 s TTL, beats every 0.67 s: a busy CI machine may delay one beat, not the two it takes to
    # lose it; 5 s is two and a half TTLs without a create.
    loader = loader_factory(ttl=2.0)
    with loader.lease("ticket:T1"), loader.lease("customer:C1"):
        time.sleep(5)
        assert not db.try_lease("ticket:T1", "second-run", ttl_seconds=1)
        assert not db.try_lease("customer:C1", "second-run", ttl_seconds=1)
        loader.renew_leases()  # still ours: a create may go ahead
    assert db.try_lease("ticket:T1", "second-run", ttl_seconds=1), "released on exit"


def test_a_lease_lost_while_waiting_stops_the_next_create_before_it_is_sent(db, loader_factory):
    loader = loader_factory(ttl=1.0)
    sent: list[str] = []
    with loader.lease("ticket:T1"):
        with db.begin() as conn:  # another run took it over (e.g. after a stall longer than the TTL)
            conn.execute(
                load_leases.update()
                .where(load_leases.c.lease_key == "ticket:T1")
                .values(owner="other-run", expires_at="9999-12-31T00:00:00.000000Z")
            )
        time.sleep(1.0)  # a few heartbeats
        with pytest.raises(RuntimeError, match=r"lost the lease on ticket:T1 .*stopping before any send"):
            loader.ensure("conversation:T1", "conversation", lambda: sent.append("x") or {"id": "X"}, lambda: None)
    assert sent == []
    assert _owner(db, "ticket:T1") == "other-run", "the loser neither renewed nor released the winner's lease"


def test_closing_the_loader_stops_its_heartbeat(db, loader_factory):
    loader = loader_factory(ttl=1.0)

    def heartbeats() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == f"lease-heartbeat-{loader.owner}"]

    assert heartbeats() == [], "no thread before the first lease"
    with loader.lease("ticket:T1"):
        assert [t.daemon for t in heartbeats()] == [True]
    loader.close()
    assert heartbeats() == []


def _owner(db: StagingDatabase, key: str) -> str | None:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(load_leases.c.owner).where(load_leases.c.lease_key == key)).scalar()


def test_the_sqlite_ledger_is_synced_fully(tmp_path, monkeypatch):
    """WAL with synchronous=NORMAL can lose the last commits on power loss: a ledger `done` row
    written after a create succeeded would vanish and the object be sent again. (The suite lowers
    it for speed through MIGRATION_SQLITE_SYNCHRONOUS; the default is what production gets.) The
    staging resource as the settings build it, for Dagster and the CLI alike."""
    from migration_pipeline.resources import staging_resource
    from migration_pipeline.settings import load_settings

    monkeypatch.setenv("MIGRATION_STAGING_URL", f"sqlite:///{tmp_path / 'staging.db'}")
    for variable, level in ((None, 2), ("normal", 1)):  # unset: FULL; the suite's NORMAL
        if variable is None:
            monkeypatch.delenv("MIGRATION_SQLITE_SYNCHRONOUS", raising=False)
        else:
            monkeypatch.setenv("MIGRATION_SQLITE_SYNCHRONOUS", variable)
        with staging_resource(load_settings(), env_vars=False).database() as db, db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == level
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db = StagingDatabase(f"sqlite:///{tmp_path / 'staging.db'}")  # the library's default, whatever the environment says
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    finally:
        db.dispose()
    with pytest.raises(ValueError, match="sqlite_synchronous must be EXTRA, FULL, NORMAL or OFF"):
        StagingDatabase(f"sqlite:///{tmp_path / 'staging.db'}", sqlite_synchronous="OFF; DROP")


def test_an_exclusive_block_longer_than_its_ttl_keeps_the_lease_and_releases_it_after(db):
    """The splitter's lease (the asset and the CLI): held by the heartbeat for as long as the
    split takes, however short the TTL, and free again afterwards."""
    from migration_pipeline.lib.staging.db import exclusive

    with exclusive(db, "split_tickets", "splitter-a", ttl_seconds=1.5, poll_seconds=0.05):
        time.sleep(3.5)
        assert not db.try_lease("split_tickets", "splitter-b", 1.5)
    assert db.try_lease("split_tickets", "splitter-b", 1.5)
