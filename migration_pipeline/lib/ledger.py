"""The load ledger protocol and leases, once for every target: what makes a load exactly-once.
No Dagster import.

Ledger protocol (table `ledger`, one row per target object, keyed by a source key, lib/ledger_keys.py):
1. before a create request, an `intent` row is committed;
2. after it, the row is completed (`done`) with the target id;
3. an `intent` found on a later run means the outcome is unknown (crash, lost response): the
   object is looked up on the target (by whatever the target's loader stamped on it) and only
   re-sent if it is not there.
A 4xx validation error is recorded as `failed` with the vendor's message and not retried in the
run. Leases (table `load_leases`) keep two runs off the same object: a second run waits, a crashed
run's lease expires after its TTL, and a heartbeat renews the held ones while a request waits.
A dry run (`ExactlyOnce(dry_run=True)`) reads the real ledger, keeps its own writes in memory
(`OverlayLedger`) and takes no lease: it changes nothing another run sees.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

import sqlalchemy as sa

from migration_pipeline.lib.http import VendorAPIError
from migration_pipeline.lib.staging.db import LeaseKeeper, StagingDatabase, ledger, now_text


class Ledger:
    def __init__(self, db: StagingDatabase, run_id: str | None):
        self.db, self.run_id = db, run_id

    def get(self, key: str) -> dict[str, Any] | None:
        with self.db.engine.connect() as conn:
            row = conn.execute(sa.select(ledger).where(ledger.c.source_key == key)).mappings().first()
        return dict(row) if row else None

    def forget(self, key: str) -> None:
        """Drop a key whose write the workspace cannot take at all (an optional extra it lacks)."""
        with self.db.begin() as conn:
            conn.execute(ledger.delete().where(ledger.c.source_key == key))

    def write(self, key: str, entity: str, state: str, *, target_id=None, parent=None, error=None) -> None:
        """One committed upsert; `attempts` counts the intents (requests) ever made for the key."""
        row = {
            "source_key": key,
            "entity_type": entity,
            "parent_key": parent,
            "target_id": target_id,
            "state": state,
            "attempts": 1 if state == "intent" else 0,
            "last_error": error,
            "run_id": self.run_id,
            "updated_at": now_text(),
        }
        with self.db.begin() as conn:
            self.db.upsert(conn, ledger, [row], accumulate=("attempts",))


class OverlayLedger(Ledger):
    """Reads the real ledger, writes to memory: a dry run never changes what a real run sees."""

    def __init__(self, db: StagingDatabase, run_id: str | None):
        super().__init__(db, run_id)
        self.rows: dict[str, dict[str, Any] | None] = {}  # None: forgotten in this run

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows[key] if key in self.rows else super().get(key)

    def forget(self, key: str) -> None:
        self.rows[key] = None

    def write(self, key: str, entity: str, state: str, *, target_id=None, parent=None, error=None) -> None:
        self.rows[key] = {
            "source_key": key, "entity_type": entity, "parent_key": parent, "target_id": target_id, "state": state,
            "attempts": 0, "last_error": error, "run_id": self.run_id, "updated_at": now_text(),
        }

    def done(self, entity: str) -> dict[str, str]:
        """Key -> target id of what this run recorded as done for `entity`."""
        return {k: r["target_id"] for k, r in self.rows.items() if r and r["entity_type"] == entity and r["state"] == "done"}


class ProtocolCounts(Protocol):
    recovered: int  # intents resolved by finding the object on the target
    waited_for_lease: int  # keys another run was loading at the same time
    failed: int
    errors: list[str]


@dataclass
class Counts:
    """The protocol's counts, for a loader that keeps no others."""

    recovered: int = 0
    waited_for_lease: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class ExactlyOnce:
    """The protocol for one run: `ensure` a target object once, under `lease`s. A target's loader
    derives from it (or holds one) and supplies `create` and `find` per object. With `dry_run` the
    ledger is an `OverlayLedger` and no lease is taken (its target must send no write)."""

    def __init__(
        self,
        db: StagingDatabase,
        run_id: str | None,
        *,
        counts: ProtocolCounts | None = None,
        create_attempts: int = 6,
        create_backoff_seconds: float = 0.5,
        lease_ttl_seconds: float = 120.0,
        dry_run: bool = False,
    ):
        self.db = db
        self.dry_run = dry_run
        self.ledger = OverlayLedger(db, run_id) if dry_run else Ledger(db, run_id)
        self.counts: Any = counts if counts is not None else Counts()
        self.create_attempts, self.create_backoff_seconds = create_attempts, create_backoff_seconds
        self.lease_ttl_seconds = lease_ttl_seconds
        self.owner = f"{run_id or 'run'}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._leases = LeaseKeeper(db, self.owner, lease_ttl_seconds)  # heartbeat: close() stops it

    # -- leases: one writer at a time per key ---------------------------------------------------
    @contextmanager
    def lease(self, key: str) -> Iterator[None]:
        """Hold the lease on `key`, waiting while another live run holds it (a dry run takes none:
        it sends nothing, so it races no one, and the leases table stays as it was)."""
        if self.dry_run:
            yield
            return
        waited, deadline = False, time.monotonic() + 10 * self.lease_ttl_seconds
        while not self._leases.acquire(key):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{key} stayed leased by another run for {10 * self.lease_ttl_seconds:.0f}s")
            waited = True
            time.sleep(0.2)
        self.counts.waited_for_lease += waited
        try:
            yield
        finally:
            self._leases.release(key)

    def renew_leases(self) -> None:
        """Called before each create: the heartbeat keeps our leases live while we wait; stop
        here if one of them was taken over by another run meanwhile."""
        if self.dry_run:
            return
        lost = self._leases.confirm()
        if lost is not None:
            raise RuntimeError(f"lost the lease on {lost} to another run; stopping before any send")

    def close(self) -> None:
        """Stop the lease heartbeat; whoever creates a loader closes it (or uses `with`)."""
        self._leases.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the protocol, once for every kind of object -----------------------------------------
    def ensure(
        self,
        key: str,
        entity: str,
        create: Callable[[], dict[str, Any]],
        find: Callable[[], dict[str, Any] | None],
        parent: str | None = None,
        optional: bool = False,
    ) -> str | None:
        """The target id for `key`: from the ledger, found on the target, or created now.

        Whenever an earlier attempt's outcome is unknown (an intent left by a crash, a 5xx, a
        dropped connection), the object is looked up before anything is sent again. For an
        `optional` object (an extra the workspace may not offer) a refusal is raised to the
        caller instead of being recorded as a failed write."""
        row = self.ledger.get(key)
        if row and row["state"] == "done":
            return row["target_id"]
        unknown = bool(row and row["state"] == "intent")
        last_error: VendorAPIError | None = None
        for attempt in range(self.create_attempts):
            if unknown:
                found = find()
                if found is not None:
                    self.ledger.write(key, entity, "done", target_id=found["id"], parent=parent)
                    self.counts.recovered += 1
                    return found["id"]
            if attempt:
                time.sleep(min(self.create_backoff_seconds * 2 ** (attempt - 1), 30.0))
            self.renew_leases()
            self.ledger.write(key, entity, "intent", parent=parent)
            try:
                created = create()
            except VendorAPIError as exc:
                if not exc.retryable and optional:
                    raise
                if not exc.retryable:
                    self.ledger.write(key, entity, "failed", parent=parent, error=str(exc))
                    self.counts.failed += 1
                    self.counts.errors.append(f"{key}: {exc}")
                    return None
                unknown, last_error = True, exc
                continue
            self.ledger.write(key, entity, "done", target_id=created["id"], parent=parent)
            return created["id"]
        assert last_error is not None
        raise last_error  # the intent stays: the next run looks the object up before re-sending

