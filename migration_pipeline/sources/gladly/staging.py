"""Stream archived Gladly export files into the staging database. No Dagster import.

Files are read line by line (never whole in memory) and written in batches inside one
transaction per file, so a crash leaves each file either fully staged or not at all, and a
re-run upserts the same rows again. A line that is not JSON, or a record that cannot be mapped,
goes to the quarantine table with its job, file, line, reason and raw text; the run goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from migration_pipeline.core.model import Item
from migration_pipeline.core.splitting import encode_change
from migration_pipeline.sources.gladly.archive import ArchivedJob
from migration_pipeline.sources.gladly.parse import (
    RecordError,
    parse_agent,
    parse_customer,
    parse_item,
    parse_topic,
)
from migration_pipeline.staging.db import (
    BULK_BATCH,
    StagingDatabase,
    agents,
    conversation_items,
    customers,
    now_text,
    topics,
    utc_text,
)
from migration_pipeline.synth.dataset import iter_jsonl

BATCH = BULK_BATCH
# Also flush on raw size, so a run of huge lines (HTML mail with inline images) cannot hold a
# batch of thousands of them in memory: peak memory stays flat whatever the export holds.
BATCH_BYTES = 16 * 1024 * 1024


@dataclass
class StageCounts:
    lines: int = 0
    staged: int = 0
    skipped_outside_window: int = 0
    quarantined: int = 0

    def add(self, other: StageCounts) -> None:
        self.lines += other.lines
        self.staged += other.staged
        self.skipped_outside_window += other.skipped_outside_window
        self.quarantined += other.quarantined


def _item_row(item: Item, job_id: str, file_name: str, line_no: int, staged_at: str) -> dict[str, Any]:
    return {
        "source_id": item.source_id,
        "customer_id": item.customer_id,
        "conversation_id": item.conversation_id,
        "ts": utc_text(item.timestamp),
        "kind": item.kind,
        "author_type": item.author_type,
        "author_id": item.author_id,
        "channel": item.channel,
        "subject": item.subject,
        "text": item.text,
        "html": item.html,
        "attachments": [a.__dict__ for a in item.attachments],
        "payload": item.payload,
        "job_id": job_id,
        "file_name": file_name,
        "line_no": line_no,
        "staged_at": staged_at,
        "split_change": encode_change(item.status_change, item.topics_added, item.topics_removed),
    }


def _customer_row(obj: dict[str, Any], job_id: str, staged_at: str) -> dict[str, Any]:
    c = parse_customer(obj)
    return {
        "source_id": c.source_id,
        "name": c.name,
        "primary_email": c.primary_email,
        "emails": list(c.emails),
        "phones": list(c.phones),
        "external_ids": c.external_ids,
        "custom_attributes": c.custom_attributes,
        "merged_into": None,
        "job_id": job_id,
        "staged_at": staged_at,
    }


def _agent_row(obj: dict[str, Any], _job: str, staged_at: str) -> dict[str, Any]:
    a = parse_agent(obj)
    return {"source_id": a.source_id, "name": a.name, "email": a.email, "active": a.active, "staged_at": staged_at}


def _topic_row(obj: dict[str, Any], _job: str, staged_at: str) -> dict[str, Any]:
    t = parse_topic(obj)
    return {
        "source_id": t.source_id,
        "name": t.name,
        "disabled": t.disabled,
        "parent_id": t.parent_id,
        "staged_at": staged_at,
    }


ENTITY_FILES = {
    "customers.jsonl": (customers, _customer_row),
    "agents.jsonl": (agents, _agent_row),
    "topics.jsonl": (topics, _topic_row),
}


def stage_job_file(
    db: StagingDatabase,
    job: ArchivedJob,
    file_name: str,
    window: tuple[datetime, datetime] | None = None,
) -> StageCounts:
    """Stage one archived file. Items outside `window` are skipped (another partition stages them)."""
    counts = StageCounts()
    path = job.file_path(file_name)
    staged_at = now_text()
    if file_name == "conversation_items.jsonl":
        table = conversation_items
        lo, hi = (utc_text(window[0]), utc_text(window[1])) if window else (None, None)

        def to_row(obj: dict[str, Any], line_no: int) -> dict[str, Any] | None:
            row = _item_row(parse_item(obj), job.job_id, file_name, line_no, staged_at)
            if lo is not None and not (lo <= row["ts"] < hi):
                counts.skipped_outside_window += 1
                return None
            return row

    elif file_name in ENTITY_FILES:
        table, mapper = ENTITY_FILES[file_name]

        def to_row(obj: dict[str, Any], line_no: int) -> dict[str, Any] | None:
            return mapper(obj, job.job_id, staged_at)

    else:
        return counts  # a file this pipeline does not know; the archive keeps it

    with db.begin() as conn:
        # bulk_upsert takes the engine's fast path (COPY on PostgreSQL); the last line for an id wins.
        batch: list[dict[str, Any]] = []
        batch_bytes = 0
        bad: list[dict[str, Any]] = []
        for row, size in _rows(job.job_id, file_name, path, to_row, counts, bad):
            batch.append(row)
            batch_bytes += size
            if len(batch) >= BATCH or batch_bytes >= BATCH_BYTES:
                db.bulk_upsert(conn, table, batch)
                batch.clear()
                batch_bytes = 0
            if len(bad) >= BATCH:
                db.quarantine(conn, bad)
                bad.clear()
        db.bulk_upsert(conn, table, batch)
        db.quarantine(conn, bad)
    return counts


def _rows(
    job_id: str,
    file_name: str,
    path,
    to_row: Callable[[dict[str, Any], int], dict[str, Any] | None],
    counts: StageCounts,
    bad: list[dict[str, Any]],
) -> Iterator[tuple[dict[str, Any], int]]:
    """(row, raw line length) for each good line; bad lines go to `bad` with their reason."""
    for line_no, obj, raw in iter_jsonl(path):
        counts.lines += 1
        if obj is None:
            reason = "not a JSON object (malformed or truncated line)"
        else:
            try:
                row = to_row(obj, line_no)
            except RecordError as exc:
                reason = str(exc)
            else:
                if row is not None:
                    counts.staged += 1
                    yield row, len(raw)
                continue
        counts.quarantined += 1
        bad.append({"job_id": job_id, "file_name": file_name, "line_no": line_no, "reason": reason, "raw_text": raw})

