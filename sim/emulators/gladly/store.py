"""Read-only access to a Gladly dataset folder (see `sim.synth.dataset`).

Small files (organization, schedules, agents, topics, merges, job.json) are held in memory.
Everything that can be large (customers, conversations, transcripts and the union of every job's
`conversation_items.jsonl`) goes into a SQLite index, `gladly/.emulator-index.sqlite`, built by
streaming the files line by line, so a dataset of a million items never sits in memory. The
index carries a fingerprint (size and mtime of every source file); it is rebuilt when the
fingerprint changes and reused otherwise, so restarting the emulator on a big dataset is instant.

Rows are stored as compact JSON text and served as-is: a list endpoint joins the rows into one
JSON array without parsing them again.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from migration_pipeline.lib.jsonl import iter_jsonl
from sim.synth.dataset import DatasetLayout, read_json

from sim.emulators.timeutil import parse_rfc3339_ns

log = logging.getLogger(__name__)

INDEX_VERSION = 1
INDEX_NAME = ".emulator-index.sqlite"
ITEMS_FILE = "conversation_items.jsonl"
_BATCH = 5000

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (id TEXT PRIMARY KEY, conversation_id TEXT, session_id TEXT, ts_ns INTEGER,
                    body TEXT NOT NULL);
CREATE TABLE customers (id TEXT PRIMARY KEY, updated_ns INTEGER, body TEXT NOT NULL);
CREATE TABLE customer_keys (kind TEXT NOT NULL, value TEXT NOT NULL, customer_id TEXT NOT NULL);
CREATE TABLE conversations (id TEXT PRIMARY KEY, customer_id TEXT, created_ns INTEGER, body TEXT NOT NULL);
CREATE TABLE transcripts (item_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE attachments (id TEXT PRIMARY KEY, item_id TEXT NOT NULL, content_type TEXT, filename TEXT);
"""

_DERIVED = """
CREATE INDEX items_by_conversation ON items (conversation_id, ts_ns, id);
CREATE INDEX conversations_by_customer ON conversations (customer_id, created_ns, id);
INSERT INTO customer_keys (kind, value, customer_id)
  SELECT 'email', lower(json_extract(e.value, '$.normalized')), c.id
  FROM customers c, json_each(c.body, '$.emails') e
  WHERE e.type = 'object' AND json_type(e.value, '$.normalized') = 'text';
INSERT INTO customer_keys (kind, value, customer_id)
  SELECT 'phone', json_extract(p.value, '$.normalized'), c.id
  FROM customers c, json_each(c.body, '$.phones') p
  WHERE p.type = 'object' AND json_type(p.value, '$.normalized') = 'text';
INSERT INTO customer_keys (kind, value, customer_id)
  SELECT 'external', json_extract(c.body, '$.externalCustomerId'), c.id
  FROM customers c WHERE json_type(c.body, '$.externalCustomerId') = 'text';
INSERT INTO customer_keys (kind, value, customer_id)
  SELECT 'external', x.value, c.id
  FROM customers c, json_each(c.body, '$.externalCustomerIds') x
  WHERE json_type(c.body, '$.externalCustomerIds') = 'object' AND x.type = 'text';
CREATE INDEX customer_keys_lookup ON customer_keys (kind, value);
INSERT OR REPLACE INTO attachments (id, item_id, content_type, filename)
  SELECT json_extract(a.value, '$.id'), i.id, json_extract(a.value, '$.contentType'),
         json_extract(a.value, '$.filename')
  FROM items i, json_each(i.body, '$.content.attachments') a
  WHERE a.type = 'object' AND json_type(a.value, '$.id') = 'text';
"""


@dataclass(frozen=True)
class ExportJob:
    """One export job as found on disk: its API body plus what the emulator needs to serve it."""

    id: str
    directory: Path
    status: str
    updated_ns: int | None
    files: tuple[str, ...]
    body: dict[str, Any]


@dataclass(frozen=True)
class AttachmentFile:
    """Where an attachment's bytes live and how to label them."""

    id: str
    path: Path
    content_type: str
    filename: str | None


def _compact(obj: Any) -> str:
    """Strict, compact JSON (NaN/Infinity refused so SQLite's JSON functions can read every row)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _batched(rows: Iterable[tuple[Any, ...]], size: int = _BATCH) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _objects(path: Path) -> Iterator[dict[str, Any]]:
    """The well-formed JSON object lines of a JSONL file (malformed lines and non-objects skipped)."""
    for _, obj, _raw in iter_jsonl(path):
        if obj is not None:
            yield obj


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _item_rows(paths: Iterable[Path]) -> Iterator[tuple[Any, ...]]:
    for path in paths:
        for obj in _objects(path):
            item_id = _str_or_none(obj.get("id"))
            if item_id is None:
                continue
            try:
                body = _compact(obj)
            except ValueError:
                continue
            content = obj.get("content") if isinstance(obj.get("content"), dict) else {}
            session = _str_or_none(obj.get("sessionId")) or _str_or_none(content.get("sessionId"))
            yield (item_id, _str_or_none(obj.get("conversationId")), session,
                   parse_rfc3339_ns(obj.get("timestamp")), body)


def _keyed_rows(path: Path, key: str, *extra: str) -> Iterator[tuple[Any, ...]]:
    """(obj[key], *parsed timestamps/strings of `extra`, body) for each object with a string key."""
    for obj in _objects(path):
        ident = _str_or_none(obj.get(key))
        if ident is None:
            continue
        try:
            body = _compact(obj)
        except ValueError:
            continue
        values: list[Any] = []
        for name in extra:
            value = obj.get(name)
            values.append(parse_rfc3339_ns(value) if name.endswith("At") else _str_or_none(value))
        yield (ident, *values, body)


def _transcript_rows(path: Path) -> Iterator[tuple[str, str]]:
    """The voice-transcript API body is the stored line without the dataset's `itemId` key."""
    for obj in _objects(path):
        item_id = _str_or_none(obj.get("itemId"))
        if item_id is None:
            continue
        try:
            yield item_id, _compact({k: v for k, v in obj.items() if k != "itemId"})
        except ValueError:
            continue


def load_jobs(layout: DatasetLayout) -> dict[str, ExportJob]:
    """Every `jobs/<id>/job.json` that holds an object; unreadable ones are skipped with a warning."""
    jobs: dict[str, ExportJob] = {}
    for folder in layout.job_ids():
        directory = layout.job_dir(folder)
        try:
            body = read_json(directory / "job.json")
        except ValueError as exc:
            log.warning("skipping export job %s: job.json is not JSON (%s)", folder, exc)
            continue
        if not isinstance(body, dict):
            log.warning("skipping export job %s: job.json is not an object", folder)
            continue
        job_id = _str_or_none(body.get("id")) or folder
        files = body.get("files") if isinstance(body.get("files"), list) else []
        jobs[job_id] = ExportJob(
            id=job_id,
            directory=directory,
            status=str(body.get("status", "")),
            updated_ns=parse_rfc3339_ns(body.get("updatedAt")),
            files=tuple(f for f in files if isinstance(f, str)),
            body=body,
        )
    return jobs


def _jobs_in_order(jobs: dict[str, ExportJob]) -> list[ExportJob]:
    """Oldest first, so the newest export's copy of a duplicated item wins."""
    return sorted(jobs.values(), key=lambda j: (j.updated_ns or 0, j.id))


def _source_files(layout: DatasetLayout, jobs: dict[str, ExportJob]) -> list[Path]:
    files = [layout.customers, layout.conversations, layout.transcripts]
    for job in _jobs_in_order(jobs):
        files.append(job.directory / ITEMS_FILE)
    return files


def _fingerprint(layout: DatasetLayout, sources: list[Path]) -> str:
    parts: list[Any] = [INDEX_VERSION]
    for path in sources:
        try:
            st = path.stat()
        except FileNotFoundError:
            parts.append([str(path.relative_to(layout.root)), None])
            continue
        parts.append([str(path.relative_to(layout.root)), st.st_size, st.st_mtime_ns])
    return json.dumps(parts)


def _index_path(layout: DatasetLayout) -> Path:
    """`gladly/.emulator-index.sqlite`, or a temp-dir file when the dataset is read-only."""
    if os.access(layout.gladly, os.W_OK):
        return layout.gladly / INDEX_NAME
    digest = sha256(str(layout.gladly.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"gladly-emulator-index-{digest}.sqlite"


def _stored_fingerprint(path: Path) -> str | None:
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def build_index(path: Path, layout: DatasetLayout, jobs: dict[str, ExportJob], fingerprint: str) -> None:
    """Stream the dataset into a fresh SQLite file next to `path`, then swap it in atomically."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    try:
        _fill(conn, layout, jobs, fingerprint)
    except BaseException:
        conn.close()
        tmp.unlink(missing_ok=True)
        raise
    conn.close()
    os.replace(tmp, path)


def _fill(conn: sqlite3.Connection, layout: DatasetLayout, jobs: dict[str, ExportJob], fingerprint: str) -> None:
    """Load every large file into the index's tables, then derive lookup keys and attachments."""
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.executescript(_SCHEMA)
    item_files = [job.directory / ITEMS_FILE for job in _jobs_in_order(jobs)]
    for batch in _batched(_item_rows(item_files)):
        conn.executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?)", batch)
    for batch in _batched(_keyed_rows(layout.customers, "id", "updatedAt")):
        conn.executemany("INSERT OR REPLACE INTO customers VALUES (?, ?, ?)", batch)
    for batch in _batched(_keyed_rows(layout.conversations, "id", "customerId", "createdAt")):
        conn.executemany("INSERT OR REPLACE INTO conversations VALUES (?, ?, ?, ?)", batch)
    for batch in _batched(_transcript_rows(layout.transcripts)):
        conn.executemany("INSERT OR REPLACE INTO transcripts VALUES (?, ?)", batch)
    conn.executescript(_DERIVED)
    conn.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (fingerprint,))
    conn.commit()


class GladlyStore:
    """The dataset, indexed. Thread-safe; every query holds one lock on one SQLite connection."""

    def __init__(self, data_dir: Path | str):
        self.layout = DatasetLayout(data_dir)
        if not self.layout.gladly.is_dir():
            raise FileNotFoundError(f"{self.layout.gladly} does not exist: not a Gladly dataset folder")
        self.organization: dict[str, Any] | None = read_json(self.layout.organization)
        self.schedules: list[Any] = read_json(self.layout.schedule, []) or []
        self.agents: list[dict[str, Any]] = [a for a in read_json(self.layout.agents, []) or [] if isinstance(a, dict)]
        self.topics: list[dict[str, Any]] = [t for t in read_json(self.layout.topics, []) or [] if isinstance(t, dict)]
        merges = read_json(self.layout.merges, {}) or {}
        self.merges: dict[str, str] = {str(k): str(v) for k, v in merges.items()}
        self.jobs = load_jobs(self.layout)
        self.index_path = _index_path(self.layout)
        self._conn = self._open_index()
        self._lock = threading.Lock()

    # -- index lifecycle -------------------------------------------------------------------

    def _open_index(self) -> sqlite3.Connection:
        fingerprint = _fingerprint(self.layout, _source_files(self.layout, self.jobs))
        if _stored_fingerprint(self.index_path) != fingerprint:
            log.info("building the Gladly emulator index at %s", self.index_path)
            build_index(self.index_path, self.layout, self.jobs, fingerprint)
        return sqlite3.connect(f"file:{self.index_path}?mode=ro", uri=True, check_same_thread=False)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        rows = self._rows(sql, params)
        return rows[0][0] if rows else None

    # -- lookups ---------------------------------------------------------------------------

    def survivor(self, customer_id: str) -> str | None:
        """The surviving id a merged-away customer id now lives under (following chains), or None."""
        seen = {customer_id}
        current = self.merges.get(customer_id)
        while current is not None and current in self.merges and current not in seen:
            seen.add(current)
            current = self.merges[current]
        return current

    def customer(self, customer_id: str) -> str | None:
        return self._one("SELECT body FROM customers WHERE id = ?", (customer_id,))

    def customer_rows(self, kind: str, value: str) -> list[tuple[str, int | None, str]]:
        """(id, updatedAt in ns, body) of every profile matching one lookup key, newest first;
        merged-away ids excluded."""
        rows = self._rows(
            "SELECT DISTINCT c.id, c.updated_ns, c.body FROM customer_keys k JOIN customers c ON c.id = k.customer_id "
            "WHERE k.kind = ? AND k.value = ? ORDER BY c.updated_ns DESC, c.id",
            (kind, value),
        )
        return [(cid, updated_ns, body) for cid, updated_ns, body in rows if cid not in self.merges]

    def customer_conversations(self, customer_id: str, limit: int) -> tuple[list[str], bool]:
        """Oldest first by `createdAt`, at most `limit`; the flag says whether more exist."""
        rows = self._rows(
            "SELECT body FROM conversations WHERE customer_id = ? ORDER BY created_ns, id LIMIT ?",
            (customer_id, limit + 1),
        )
        return [r[0] for r in rows[:limit]], len(rows) > limit

    def conversation(self, conversation_id: str) -> str | None:
        return self._one("SELECT body FROM conversations WHERE id = ?", (conversation_id,))

    def conversation_items(self, conversation_id: str, session_id: str | None, limit: int) -> tuple[list[str], bool]:
        """Ascending by timestamp, ties by id, at most `limit`; the flag says whether more exist."""
        sql = "SELECT body FROM items WHERE conversation_id = ?"
        params: tuple[Any, ...] = (conversation_id,)
        if session_id is not None:
            sql += " AND session_id = ?"
            params += (session_id,)
        rows = self._rows(sql + " ORDER BY ts_ns, id LIMIT ?", (*params, limit + 1))
        return [r[0] for r in rows[:limit]], len(rows) > limit

    def last_item_of_types(self, conversation_id: str, content_types: tuple[str, ...]) -> str | None:
        """The conversation's latest item (by timestamp, then id) whose `content.type` is one of
        `content_types`, or None."""
        marks = ", ".join("?" for _ in content_types)
        return self._one(
            f"SELECT body FROM items WHERE conversation_id = ? AND json_extract(body, '$.content.type') IN ({marks}) "
            "ORDER BY ts_ns DESC, id DESC LIMIT 1",
            (conversation_id, *content_types),
        )

    def item(self, item_id: str) -> str | None:
        return self._one("SELECT body FROM items WHERE id = ?", (item_id,))

    def transcript(self, item_id: str) -> str | None:
        return self._one("SELECT body FROM transcripts WHERE item_id = ?", (item_id,))

    def attachment_file(self, attachment_id: str) -> AttachmentFile | None:
        """The attachment's bytes on disk and its declared content type, if both exist."""
        rows = self._rows("SELECT content_type, filename FROM attachments WHERE id = ?", (attachment_id,))
        path = safe_child(self.layout.attachments_dir, attachment_id)
        if not rows or path is None or not path.is_file():
            return None
        content_type, filename = rows[0]
        return AttachmentFile(attachment_id, path, content_type or "application/octet-stream", filename)

    def recording_path(self, item_id: str) -> Path | None:
        path = safe_child(self.layout.recordings_dir, f"{item_id}.mp3")
        return path if path is not None and path.is_file() else None

    def job_file_path(self, job: ExportJob, name: str) -> Path | None:
        """The file on disk if `name` is one of the job's listed files and exists."""
        if name not in job.files:
            return None
        path = safe_child(job.directory, name)
        return path if path is not None and path.is_file() else None


def safe_child(directory: Path, name: str) -> Path | None:
    """`directory/name` if `name` is a plain file name (no separators, no dot-dot), else None."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name or "\x00" in name:
        return None
    return directory / name
