"""SQLite persistence for the Unthread emulator.

Why SQLite with JSON documents: a rehearsal migration writes 100,000 conversations and about
1,000,000 messages, and a restarted emulator must keep them (the pipeline resumes against it). Each
object is stored whole as JSON next to a few indexed real columns; list requests are translated into
SQL over those columns and `json_extract` expressions (see listing.py), with expression indexes on
the fields clients filter by (customerId, conversationId + ts, ...), so a page costs O(log N + limit).

Attachment bytes live in a folder next to the database (`<state>.files/<fileId>`), never in SQLite.

Thread safety: one connection guarded by a re-entrant lock; every write is its own transaction
(`BEGIN IMMEDIATE` ... `COMMIT`), so a write is durable once the handler returns, which is what the
"applied but response lost" fault relies on.
"""

from __future__ import annotations

import json
import re
import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .schema import RESOURCES, Resource

_SEGMENT = re.compile(r"^[A-Za-z0-9_\-:]+$")


def json_path(segments: Sequence[str]) -> str:
    """A JSON path literal such as `$."initialMessage"."ts"` (segments are validated by callers)."""
    for seg in segments:
        if not _SEGMENT.match(seg):
            raise ValueError(f"invalid path segment {seg!r}")
    return "$" + "".join(f'."{seg}"' for seg in segments)


def top_level_sql(resource: Resource, name: str, table_ref: str) -> str:
    """The SQL expression of a top-level field. Index definitions and queries both use this so
    SQLite recognises the expression and uses the index (it matches expressions textually)."""
    spec = resource.fields[name]
    prefix = f"{table_ref}." if table_ref else ""
    if spec.column:
        return f"{prefix}{spec.column}"
    return f"json_extract({prefix}doc, '{json_path([name])}')"


class Store:
    """Objects by resource, attachment metadata, workspace reference data and counters."""

    def __init__(self, state_path: Path | None):
        if state_path is None:
            state_path = Path(tempfile.mkdtemp(prefix="unthread-emulator-")) / "state.sqlite"
        self.path = Path(state_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.files_dir = self.path.with_name(self.path.name + ".files")
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # PostgreSQL's LIKE (behind Unthread's Sequelize, assumed) is case-sensitive; SQLite's is not.
        self._db.execute("PRAGMA case_sensitive_like=ON")
        self._create_schema()

    # -- schema -------------------------------------------------------------------------------

    def _create_schema(self) -> None:
        with self.transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS workspace_items (kind TEXT NOT NULL, id TEXT NOT NULL, "
                "doc TEXT NOT NULL, PRIMARY KEY (kind, id))"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS files (id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, "
                "message_id TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL, mimetype TEXT NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS files_conversation ON files(conversation_id)")
            for res in RESOURCES.values():
                self._create_resource_table(db, res)

    @staticmethod
    def _create_resource_table(db: sqlite3.Connection, res: Resource) -> None:
        t = res.name
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {t} (id TEXT PRIMARY KEY, parent_id TEXT, "
            "created_at TEXT NOT NULL, updated_at TEXT NOT NULL, doc TEXT NOT NULL)"
        )
        db.execute(f"CREATE INDEX IF NOT EXISTS {t}_created ON {t}(created_at, id)")
        db.execute(f"CREATE INDEX IF NOT EXISTS {t}_updated ON {t}(updated_at, id)")
        for i, fields in enumerate(res.json_indexes):
            cols = ", ".join(top_level_sql(res, f, "") for f in fields)
            db.execute(f"CREATE INDEX IF NOT EXISTS {t}_x{i} ON {t}({cols})")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, list(params)).fetchall()

    # -- objects ------------------------------------------------------------------------------

    def insert(self, resource: str, doc: dict[str, Any], parent_id: str | None = None) -> None:
        with self.transaction() as db:
            self.insert_in(db, resource, doc, parent_id)

    @staticmethod
    def insert_in(db: sqlite3.Connection, resource: str, doc: dict[str, Any], parent_id: str | None = None) -> None:
        db.execute(
            f"INSERT INTO {resource} (id, parent_id, created_at, updated_at, doc) VALUES (?, ?, ?, ?, ?)",
            (doc["id"], parent_id, doc["createdAt"], doc["updatedAt"], json.dumps(doc)),
        )

    def replace(self, resource: str, doc: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                f"UPDATE {resource} SET updated_at = ?, doc = ? WHERE id = ?",
                (doc["updatedAt"], json.dumps(doc), doc["id"]),
            )

    def get(self, resource: str, object_id: str) -> dict[str, Any] | None:
        rows = self.query(f"SELECT doc FROM {resource} WHERE id = ?", (object_id,))
        return json.loads(rows[0][0]) if rows else None

    def get_many(self, resource: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        unique = sorted({i for i in ids if isinstance(i, str)})
        if not unique:
            return {}
        marks = ",".join("?" * len(unique))
        rows = self.query(f"SELECT id, doc FROM {resource} WHERE id IN ({marks})", unique)
        return {row[0]: json.loads(row[1]) for row in rows}

    def exists(self, resource: str, object_id: str) -> bool:
        return bool(self.query(f"SELECT 1 FROM {resource} WHERE id = ?", (object_id,)))

    def delete(self, resource: str, object_id: str) -> bool:
        with self.transaction() as db:
            return db.execute(f"DELETE FROM {resource} WHERE id = ?", (object_id,)).rowcount > 0

    def delete_conversation(self, conversation_id: str) -> bool:
        """Delete a conversation with its messages and attachments (the rollback path)."""
        with self.transaction() as db:
            gone = db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount > 0
            db.execute("DELETE FROM messages WHERE parent_id = ?", (conversation_id,))
            file_ids = [r[0] for r in db.execute("SELECT id FROM files WHERE conversation_id = ?", (conversation_id,))]
            db.execute("DELETE FROM files WHERE conversation_id = ?", (conversation_id,))
        for file_id in file_ids:
            (self.files_dir / file_id).unlink(missing_ok=True)
        return gone

    def next_sequence(self, db: sqlite3.Connection, name: str) -> int:
        """The next value of a persistent counter (friendlyId), inside the caller's transaction."""
        row = db.execute("SELECT value FROM meta WHERE key = ?", (f"seq:{name}",)).fetchone()
        value = int(row[0]) + 1 if row else 1
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (f"seq:{name}", str(value)))
        return value

    def last_message_ts(self, conversation_id: str) -> str | None:
        """Served by the (conversationId, ts, id) index: messages' ts must strictly increase."""
        rows = self.query(
            "SELECT max(json_extract(doc, '$.\"ts\"')) FROM messages WHERE parent_id = ?", (conversation_id,)
        )
        return rows[0][0] if rows else None

    # -- workspace ----------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def upsert_workspace(self, items: dict[str, list[dict[str, Any]]], users: list[dict[str, Any]]) -> None:
        """Insert or refresh workspace reference data; users keep their first-seen createdAt."""
        with self.transaction() as db:
            for kind, docs in items.items():
                for doc in docs:
                    db.execute(
                        "INSERT OR REPLACE INTO workspace_items (kind, id, doc) VALUES (?, ?, ?)",
                        (kind, doc["id"], json.dumps(doc)),
                    )
            for user in users:
                row = db.execute("SELECT doc FROM users WHERE id = ?", (user["id"],)).fetchone()
                if row is None:
                    self.insert_in(db, "users", user)
                else:
                    kept = json.loads(row[0])
                    merged = {**user, "createdAt": kept["createdAt"], "updatedAt": kept["updatedAt"]}
                    if merged != kept:
                        db.execute("UPDATE users SET doc = ? WHERE id = ?", (json.dumps(merged), user["id"]))
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('workspace_seeded', '1')")

    def workspace_item(self, kind: str, item_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT doc FROM workspace_items WHERE kind = ? AND id = ?", (kind, item_id))
        return json.loads(rows[0][0]) if rows else None

    def all_users(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self.query("SELECT doc FROM users")]

    # -- files --------------------------------------------------------------------------------

    def file_path(self, file_id: str) -> Path:
        return self.files_dir / file_id

    @staticmethod
    def insert_file_in(db: sqlite3.Connection, record: dict[str, Any], conversation_id: str, message_id: str) -> None:
        db.execute(
            "INSERT INTO files (id, conversation_id, message_id, name, size, mimetype) VALUES (?, ?, ?, ?, ?, ?)",
            (record["id"], conversation_id, message_id, record["name"], record["size"], record["mimetype"]),
        )

    def get_file(self, conversation_id: str, file_id: str) -> dict[str, Any] | None:
        rows = self.query(
            "SELECT id, name, size, mimetype FROM files WHERE id = ? AND conversation_id = ?",
            (file_id, conversation_id),
        )
        if not rows:
            return None
        fid, name, size, mimetype = rows[0]
        return {"id": fid, "name": name, "size": size, "mimetype": mimetype}

    # -- admin --------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        counts = {name: self.query(f"SELECT count(*) FROM {name}")[0][0] for name in RESOURCES}
        counts["files"] = self.query("SELECT count(*) FROM files")[0][0]
        return counts
