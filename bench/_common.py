"""Helpers shared by the benchmarks (not a benchmark itself: run_all picks up bench_*.py only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_PG = os.environ.get("MIGRATION_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def fresh_pg_database(admin_url: str = DEFAULT_PG) -> Iterator[str]:
    """A new PostgreSQL database for one measured run, dropped afterwards; yields its URL."""
    import psycopg

    name = f"mp_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def staging_database(engine: str, sqlite_path, admin_url: str = DEFAULT_PG) -> Iterator[str]:
    """A staging URL for one measured run: a new SQLite file at `sqlite_path` (removed before and
    after), or a fresh PostgreSQL database."""
    if engine == "postgresql":
        with fresh_pg_database(admin_url) as url:
            yield url
        return
    files = [Path(f"{sqlite_path}{suffix}") for suffix in ("", "-wal", "-shm")]
    for f in files:
        f.unlink(missing_ok=True)
    try:
        yield f"sqlite:///{sqlite_path}"
    finally:
        for f in files:
            f.unlink(missing_ok=True)


def run_json(command: list[str]) -> dict | None:
    """Run one measured step in its own process (so its peak RSS and imports are its own) and
    return the last JSON line it printed; None (stderr tail shown) when it failed."""
    proc = subprocess.run(command, capture_output=True, text=True)
    return last_json(proc.stdout, proc.returncode, proc.stderr)


def last_json(stdout: str, returncode: int, stderr: str) -> dict | None:
    """A finished step's result: the last JSON line of its output; None (stderr tail shown) when
    it failed or printed none."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if returncode != 0 or not lines:
        sys.stderr.write(stderr[-4000:])
        return None
    return json.loads(lines[-1])


class PgBackendCpu:
    """CPU seconds PostgreSQL's server processes spent on one database, sampled from /proc while a
    measured run is connected to it (the client's rusage cannot see the server's work). Up to one
    sampling interval per connection is lost when a backend exits; Linux only."""

    def __init__(self, admin_url: str, database: str, interval: float = 0.25):
        self.admin_url, self.database, self.interval = admin_url, database, interval
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PgBackendCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def cpu_s(self) -> float:
        return round(sum(self.seen.values()), 2)

    def _run(self) -> None:
        import psycopg

        tick = os.sysconf("SC_CLK_TCK")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            while not self._stop.is_set():
                pids = [r[0] for r in conn.execute("select pid from pg_stat_activity where datname = %s", (self.database,))]
                for pid in pids:
                    try:
                        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    self.seen[pid] = max(self.seen.get(pid, 0.0), (int(fields[11]) + int(fields[12])) / tick)
                self._stop.wait(self.interval)
