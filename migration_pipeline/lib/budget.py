"""A request budget shared by every client of one vendor account on this machine, across threads
AND processes, for first attempts and retries alike.

Why: a limit like Gladly's 10 requests/second holds for the whole organization, while one run
makes many clients at once (Dagster's multiprocess executor, partitions in parallel, sensors), each
pacing only itself; nine clients at 9/s each are 81/s. And after a 429 the whole account is over
its budget, not only the client that saw it.

How: the budget's state is one SQLite file per account under a folder every process of the
deployment sees (`MIGRATION_DATA_DIR/rate-budgets/`, see `default_budget_dir`), named by a hash of
the account key (never a credential). pyrate-limiter's `SQLiteBucket` keeps the sliding-window log
and decides admission; the file lock it comes with (filelock, an OS lock the kernel drops when a
process dies) makes each check-and-record atomic across processes, and a thread lock per file
queues one process's threads before they contend for the file. A second table holds "blocked
until": a client that sees a 429 (or the vendor's "none left this second") records it there, and
every client of the account waits it out.

The wait loop is ours rather than `Limiter.try_acquire(blocking=True)`: that loop retries with the
request's timestamp advanced by the planned sleep instead of reading the clock, so time lost to
oversleeping or to waiting for another process's lock would be recorded as earlier than it was,
and the window would admit early. Here every attempt is stamped with the clock, under the lock.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyrate_limiter import Duration, Rate, RateItem, SQLiteBucket
from pyrate_limiter.utils import validate_rate_list

BUDGET_FOLDER = "rate-budgets"
# How often a process waiting for another's file lock looks again (filelock's default is 50 ms,
# long next to a lock held for a millisecond).
LOCK_POLL_SECONDS = 0.002
# Longest single sleep while waiting, so a block recorded meanwhile is noticed soon.
MAX_SLEEP_SECONDS = 0.25
# No vendor block lasts longer; one that seems to is a wall clock stepped back (see below).
MAX_BLOCK_SECONDS = 900

_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()
# A child made by fork() must not inherit a lock some other thread of its parent held.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_process_locks.clear)


def pacing_rates(requests_per_second: float) -> list[Rate]:
    """The sliding-window rates for a pace: at most `requests_per_second` (rounded down) in any
    second, as `Limiter` has always paced; fractional rates below 1 as 1 per (1/rate) seconds."""
    if requests_per_second >= 1:
        return [Rate(int(requests_per_second), Duration.SECOND)]
    return [Rate(1, int(1000 / requests_per_second))]


def shared_pacing_rates(requests_per_second: float) -> list[Rate]:
    """`pacing_rates` plus a minimum gap of half the mean interval between two requests: a whole
    second's budget sent in one burst can straddle the vendor's second boundary (network jitter
    moves a request across it) and a leaky-bucket vendor refuses bursts; spread requests cannot,
    and the throughput is the same."""
    rates = pacing_rates(requests_per_second)
    spaced = [Rate(1, max(1, int(500 / requests_per_second))), *rates]
    # Below 2/s there is nothing to spread; above ~1000/s no gap in whole milliseconds is needed.
    return spaced if validate_rate_list(spaced) else rates


def default_budget_dir(data_dir: Path | str | None = None) -> Path:
    """Where budgets live unless a resource says otherwise: `<data_dir>/rate-budgets` (the data
    folder every process of a deployment shares; resources.py passes MIGRATION_DATA_DIR when it
    is set), else a per-user folder in the system temp dir (one per machine, whatever each
    process's working directory is)."""
    if data_dir:
        return Path(data_dir).expanduser() / BUDGET_FOLDER
    user = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
    return Path(tempfile.gettempdir()) / f"migration-pipeline-{user}" / BUDGET_FOLDER


def budget_file(folder: Path | str, vendor: str, account_key: str) -> Path:
    """The state file of one vendor account: named by a hash, so nothing about the account (and
    no credential, which must never be part of the key) shows in the file system."""
    digest = hashlib.sha256(f"{vendor}\n{account_key}".encode()).hexdigest()[:32]
    return Path(folder).expanduser() / f"{vendor}-{digest}.sqlite"


def _process_lock(path: Path) -> threading.Lock:
    with _process_locks_guard:
        return _process_locks.setdefault(str(path.resolve()), threading.Lock())


class SharedRequestBudget:
    """One vendor account's requests/second, drawn from by every client of it on this machine.

    `acquire()` before every request attempt; `block_for(seconds)` when the vendor says the
    account is over its budget. Not for sharing between processes as an object: each process (or
    client) opens its own on the same file. `close()` when done.
    """

    def __init__(self, path: Path | str, requests_per_second: float):
        if not requests_per_second or requests_per_second <= 0:
            raise ValueError("a shared budget needs a positive requests_per_second")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.requests_per_second = requests_per_second
        self._thread_lock = _process_lock(self.path)
        with self._thread_lock:
            self._bucket = SQLiteBucket.init_from_file(
                shared_pacing_rates(requests_per_second), table="requests", db_path=str(self.path), use_file_lock=True
            )
            self._file_lock = self._bucket.lock  # filelock.FileLock on <path>.lock, reentrant
            self._conn: sqlite3.Connection = self._bucket.conn
            with self._locked():
                self._conn.execute("CREATE TABLE IF NOT EXISTS blocked (id INTEGER PRIMARY KEY CHECK (id = 1), until_ms INTEGER)")
                self._conn.commit()

    @classmethod
    def for_account(cls, folder: Path | str, vendor: str, account_key: str, requests_per_second: float) -> SharedRequestBudget:
        return cls(budget_file(folder, vendor, account_key), requests_per_second)

    # -- the lock ------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._file_lock.acquire(poll_interval=LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            self._file_lock.release()

    # -- drawing from it ---------------------------------------------------------------------
    def acquire(self) -> float:
        """Wait until the account may send one more request and record it; returns the seconds
        waited. Every attempt of every client calls this, retries included."""
        started = time.monotonic()
        while True:
            wait = self._try_acquire()
            if wait <= 0:
                return time.monotonic() - started
            time.sleep(min(wait, MAX_SLEEP_SECONDS))

    def _try_acquire(self) -> float:
        """Record one request now if the account has room: 0. Otherwise the seconds to wait."""
        with self._thread_lock, self._locked():
            now_ms = time.time_ns() // 1_000_000
            blocked_until = self._blocked_until_ms()
            if now_ms < blocked_until:
                if blocked_until - now_ms > MAX_BLOCK_SECONDS * 1000:
                    self._forget_the_future(now_ms)
                    return 0.001
                return (blocked_until - now_ms) / 1000
            decision = self._bucket.put_decision(RateItem("request", now_ms))
            if decision.allowed:
                self._bucket.leak(now_ms)  # drop what left every window: the file stays small
                return 0.0
            self._forget_the_future(now_ms)
            return max(decision.retry_after_ms or 1, 1) / 1000

    def _forget_the_future(self, now_ms: int) -> None:
        """Stamps are wall-clock (the file outlives a reboot, which resets the monotonic clock),
        and every writer stamps under the lock, so a request stamped after `now` or a block beyond
        any vendor's can only come from a clock stepped back; kept, they would hold every client
        until the clock caught up."""
        self._conn.execute("DELETE FROM requests WHERE item_timestamp > ?", (now_ms,))
        self._conn.execute("DELETE FROM blocked WHERE until_ms > ?", (now_ms + MAX_BLOCK_SECONDS * 1000,))
        self._conn.commit()

    def block_for(self, seconds: float) -> None:
        """No client of the account sends anything for `seconds` from now (a later block that is
        already recorded stands)."""
        until_ms = time.time_ns() // 1_000_000 + int(seconds * 1000)
        with self._thread_lock, self._locked():
            self._conn.execute(
                "INSERT INTO blocked (id, until_ms) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET until_ms = max(until_ms, excluded.until_ms)",
                (until_ms,),
            )
            self._conn.commit()

    # -- reading it ---------------------------------------------------------------------------
    def blocked_until(self) -> float:
        """When the latest block recorded for the account ends (epoch seconds; 0 if none ever)."""
        with self._thread_lock, self._locked():
            return self._blocked_until_ms() / 1000

    def blocked_for(self) -> float:
        """Seconds left of the block recorded for the account (0 when none)."""
        return max(0.0, self.blocked_until() - time.time())

    def spent_in_last_second(self) -> int:
        """Requests the account recorded in the last second (every client, every process)."""
        since_ms = time.time_ns() // 1_000_000 - 1000
        with self._thread_lock, self._locked():
            row = self._conn.execute("SELECT COUNT(*) FROM requests WHERE item_timestamp >= ?", (since_ms,)).fetchone()
            return int(row[0])

    def _blocked_until_ms(self) -> int:
        row = self._conn.execute("SELECT until_ms FROM blocked WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._thread_lock:
            self._bucket.close()
