"""Moving a pair's tables out of the default namespace into its own, once, on first open.

Before pairs had namespaces, the first pair's tables lived in the default one (the `public`
schema on PostgreSQL, the configured file on SQLite). A pair registers itself as their heir
(`register_default_heir`); opening its namespace then moves them over before anything else
touches the database, so an upgrade keeps the staged history, the ledger and the leases instead
of starting again (which would cost every extract again and, without the ledger, duplicates).

- PostgreSQL: `ALTER TABLE <default>.<t> SET SCHEMA <namespace>` for each of our tables, in the
  transaction (and under the advisory lock) that creates the schema: all or nothing. A table
  that holds rows in both places is a conflict: nothing is moved and the error names it.
- SQLite: the default file is renamed to the namespace's file, after switching it out of WAL (a
  switch SQLite grants only when no other connection has the file open, so a run still writing
  to it is never cut off). Serialized between processes by a lock file beside it.

No Dagster import; names no pair (the heir is registered by the pair's package).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_log = logging.getLogger(__name__)

_heir: str | None = None


class AdoptionError(RuntimeError):
    """The default namespace's tables could not be moved; nothing was changed."""


def register_default_heir(namespace: str) -> None:
    """Make `namespace` take over the tables the default namespace holds (one heir only)."""
    global _heir
    if _heir not in (None, namespace):
        raise ValueError(f"the default namespace's tables already go to {_heir!r}, not {namespace!r}")
    _heir = namespace


def default_heir() -> str | None:
    return _heir


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for in-memory databases and other engines)."""
    if not url.startswith("sqlite") or url in ("sqlite://", "sqlite:///:memory:"):
        return None
    return Path(url.partition(":///")[2])


def adopt_sqlite_file(legacy: Path, target: Path, tables: Iterable[str]) -> bool:
    """Rename `legacy` to `target` when `target` does not exist yet and `legacy` holds any of
    `tables`. Returns whether it moved the file. When both exist and `legacy` holds rows (a run of
    the old release wrote there after the move), refuse: those rows would be silently ignored, and
    a ledger row ignored is an object sent twice."""
    if not legacy.exists():
        return False
    if target.exists():
        if _sqlite_rows_in(legacy, tables):
            raise AdoptionError(
                f"both {legacy.name} (before pairs had namespaces) and {target.name} hold staging rows: a run of "
                f"the old release wrote to {legacy.name} after its tables moved. Nothing was changed; merge or remove "
                f"{legacy.name} and start again."
            )
        return False
    with _file_lock(target.with_name(target.name + ".adopting")):
        if target.exists() or not legacy.exists():  # another process moved it while we waited
            return False
        con = sqlite3.connect(legacy, timeout=10, isolation_level=None)
        try:
            present = {row[0] for row in con.execute("select name from sqlite_master where type = 'table'")}
            if not present & set(tables):
                return False
            try:
                mode = con.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
            except sqlite3.OperationalError as exc:
                mode = str(exc)
            if str(mode).lower() != "delete":
                raise AdoptionError(
                    f"staging tables in {legacy.name} are to move to {target.name}, but another process has "
                    f"{legacy.name} open ({mode}); stop the runs using it and start again. Nothing was changed."
                )
        finally:
            con.close()
        os.replace(legacy, target)
    _log.warning("staging tables moved from %s to %s (the pair's own namespace)", legacy.name, target.name)
    return True


def _sqlite_rows_in(path: Path, tables: Iterable[str]) -> list[str]:
    """Which of `tables` hold a row in the SQLite file at `path` (opened read-only)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        present = {row[0] for row in con.execute("select name from sqlite_master where type = 'table'")}
        return [t for t in sorted(set(tables) & present) if con.execute(f'select 1 from "{t}" limit 1').fetchone()]
    finally:
        con.close()


def adopt_pg_tables(conn: Connection, legacy_schema: str, namespace: str, tables: Iterable[str]) -> list[str]:
    """Move each of `tables` found in `legacy_schema` into `namespace` (which must exist), in the
    caller's transaction. A table already in `namespace` is replaced when empty; if both copies
    hold rows nothing is moved. Returns the tables moved."""
    if legacy_schema == namespace:
        return []
    wanted = sorted(set(tables))
    legacy = _pg_tables(conn, legacy_schema, wanted)
    if not legacy:
        return []
    ours = _pg_tables(conn, namespace, wanted)
    conflicts = [t for t in legacy if t in ours and _pg_has_rows(conn, namespace, t) and _pg_has_rows(conn, legacy_schema, t)]
    if conflicts:
        raise AdoptionError(
            f"staging tables {', '.join(conflicts)} hold rows both in schema {legacy_schema!r} (before pairs had "
            f"namespaces) and in {namespace!r}; nothing was moved. Keep one copy of each and start again."
        )
    moved = []
    for table in legacy:
        if table in ours:
            if not _pg_has_rows(conn, legacy_schema, table):
                continue  # keep ours; the legacy copy is empty
            conn.execute(sa.text(f'drop table "{namespace}"."{table}"'))
        conn.execute(sa.text(f'alter table "{legacy_schema}"."{table}" set schema "{namespace}"'))
        moved.append(table)
    if moved:
        _log.warning("staging tables moved from schema %s to %s: %s", legacy_schema, namespace, ", ".join(moved))
    return moved


def _pg_tables(conn: Connection, schema: str, names: list[str]) -> list[str]:
    rows = conn.execute(
        sa.text("select tablename from pg_tables where schemaname = :schema and tablename = any(:names)"),
        {"schema": schema, "names": names},
    )
    return sorted(row[0] for row in rows)


def _pg_has_rows(conn: Connection, schema: str, table: str) -> bool:
    return conn.execute(sa.text(f'select 1 from "{schema}"."{table}" limit 1')).first() is not None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (flock on `path`, removed afterwards)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: one process at a time is the operator's job
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            fcntl.flock(fh, fcntl.LOCK_UN)
