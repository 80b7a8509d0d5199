"""Stream archived Gladly export files into the staging database. No Dagster import.

Files are read line by line (never whole in memory) and written in batches inside one
transaction per file, so a crash leaves each file either fully staged or not at all, and a
re-run upserts the same rows again. A line that is not UTF-8 or not JSON (core.jsonl), a record
that cannot be mapped, or a value too wide for its staging column goes to the quarantine table
with its job, file, line, reason and raw text; the run goes on. Every check that one engine
would enforce (PostgreSQL: column widths, no NUL in text) is made here for both, so SQLite and
PostgreSQL stage and quarantine exactly the same lines.

A file made from a Support Tools CSV (`job.converted`, see archive.py / support_tools.py) is staged
the same way; line N of it is CSV row N, each of its quarantine reasons starts "<csv> row N: ", and
a row the converter could not read is quarantined with the converter's reason. Topics made from a
Topics CSV only seed: a topic id already staged (from an export's topics.jsonl, which has the
API's parentId) keeps its row, so the two sources never make two rows nor fight over one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from migration_pipeline.lib.allocations import fewer_collections
from migration_pipeline.lib.jsonl import RAW_TEXT_LIMIT, read_jsonl, storable_text
from migration_pipeline.contract import Item
from migration_pipeline.vendors.gladly.archive import ArchivedJob
from migration_pipeline.vendors.gladly.parse import (
    RecordError,
    parse_agent,
    parse_customer,
    parse_item,
    parse_topic,
)
from migration_pipeline.vendors.gladly.support_tools import row_error
from migration_pipeline.lib.staging.widths import Widths, column_widths, too_wide
from migration_pipeline.lib.staging.db import (
    BULK_BATCH,
    StagingDatabase,
    agent_columns,
    agents,
    conversation_items,
    customer_columns,
    customers,
    item_columns,
    now_text,
    topics,
    utc_text,
)

_log = logging.getLogger(__name__)

BATCH = BULK_BATCH
# Also flush on raw size, so a run of huge lines (HTML mail with inline images) cannot hold a
# batch of thousands of them in memory: peak memory stays flat whatever the export holds.
BATCH_BYTES = 16 * 1024 * 1024
# A quarantined line keeps RAW_TEXT_LIMIT of its raw text (lib/jsonl.py); a reason this much.
REASON_LIMIT = 2000
# What a mapper may raise on a line of a shape nobody foresaw: that line is quarantined as
# "unexpected" (and logged with its traceback) instead of failing the whole file. Anything else
# (a database error, MemoryError, an interrupt) still stops the file.
UNEXPECTED = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError, RecursionError)


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
    return {**item_columns(item), "job_id": job_id, "file_name": file_name, "line_no": line_no, "staged_at": staged_at}


def customer_row(obj: dict[str, Any], job_id: str, staged_at: str) -> dict[str, Any]:
    # no merged_into: set by the customer lookups (a 301), a re-staged export line must not clear it
    return {**customer_columns(parse_customer(obj)), "job_id": job_id, "staged_at": staged_at}


def _agent_row(obj: dict[str, Any], _job: str, staged_at: str) -> dict[str, Any]:
    return {**agent_columns(parse_agent(obj)), "staged_at": staged_at}


def _topic_row(obj: dict[str, Any], _job: str, staged_at: str) -> dict[str, Any]:
    t = parse_topic(obj)
    return {
        "source_id": t.source_id,
        "source_system": t.source_system,
        "name": t.name,
        "disabled": t.disabled,
        "parent_id": t.parent_id,
        "staged_at": staged_at,
    }


ENTITY_FILES = {
    "customers.jsonl": (customers, customer_row),
    "agents.jsonl": (agents, _agent_row),
    "topics.jsonl": (topics, _topic_row),
}


@fewer_collections()
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

    converted_from = (job.converted.get(file_name) or {}).get("from")
    where = None
    if converted_from:
        to_row, where = _from_csv(to_row), lambda line_no: f"{converted_from} row {line_no}: "
    # A Topics CSV seeds: it never replaces a topic row already staged (module docstring).
    update = not (converted_from and table is topics)
    with db.begin() as conn:
        # bulk_upsert takes the engine's fast path (COPY on PostgreSQL); the last line for an id wins.
        good = _Batch(lambda rows: db.bulk_upsert(conn, table, rows, update=update))
        bad = _Batch(lambda rows: db.quarantine(conn, rows))
        for is_good, row, size in _rows(job.job_id, file_name, path, to_row, column_widths(table), counts, where):
            (good if is_good else bad).add(row, size)
        good.flush()
        bad.flush()
    return counts


def _from_csv(
    to_row: Callable[[dict[str, Any], int], dict[str, Any] | None],
) -> Callable[[dict[str, Any], int], dict[str, Any] | None]:
    """`to_row` for a file made from a CSV: a bad row's marker line raises its recorded reason."""

    def mapped(obj: dict[str, Any], line_no: int) -> dict[str, Any] | None:
        reason = row_error(obj)
        if reason is not None:
            raise RecordError(reason)
        return to_row(obj, line_no)

    return mapped


class _Batch:
    """Rows written `BATCH` at a time or sooner when their raw lines reach `BATCH_BYTES`."""

    def __init__(self, write: Callable[[list[dict[str, Any]]], Any]):
        self.write, self.rows, self.bytes = write, [], 0

    def add(self, row: dict[str, Any], size: int) -> None:
        self.rows.append(row)
        self.bytes += size
        if len(self.rows) >= BATCH or self.bytes >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.write(self.rows)
        self.rows, self.bytes = [], 0


def _rows(
    job_id: str,
    file_name: str,
    path,
    to_row: Callable[[dict[str, Any], int], dict[str, Any] | None],
    widths: tuple[tuple[str, int], ...],
    counts: StageCounts,
    where: Callable[[int], str] | None = None,
) -> Iterator[tuple[bool, dict[str, Any], int]]:
    """(True, row, raw line length) for each good line, (False, quarantine row, its size) for
    each bad one; lines skipped by `to_row` (outside the window) yield nothing. `where(line_no)`
    prefixes each quarantine reason (for a converted file: which CSV row)."""
    logged = False
    for line in read_jsonl(path):
        counts.lines += 1
        reason = line.error
        if reason is None:
            try:
                row = to_row(line.obj, line.line_no)
                if row is not None:
                    check_widths(row, widths)
            except RecordError as exc:
                reason = str(exc)
            except UNEXPECTED as exc:
                # A mapper bug must not cost the file, nor hide: the line says "unexpected" and
                # the first one per file is logged with its traceback.
                reason = f"unexpected: {type(exc).__name__}: {exc}"
                if not logged:
                    _log.warning("unexpected error staging line %d of %s in job %s", line.line_no, file_name, job_id, exc_info=True)
                    logged = True
            else:
                if row is not None:
                    counts.staged += 1
                    yield True, row, len(line.raw)
                continue
        counts.quarantined += 1
        if where is not None:
            reason = where(line.line_no) + str(reason)
        raw = storable_text(line.raw, RAW_TEXT_LIMIT)
        yield False, {
            "job_id": job_id,
            "file_name": file_name,
            "line_no": line.line_no,
            "reason": storable_text(reason, REASON_LIMIT),
            "raw_text": raw,
        }, len(raw)


# The export field behind each bounded column, for reasons a reader of the export understands.
_SOURCE_FIELDS = {
    "source_id": "id",
    "customer_id": "customerId",
    "conversation_id": "conversationId",
    "author_id": "initiator.id",
    "source_kind": "content.type",
    "parent_id": "parentId",
}


def check_widths(row: dict[str, Any], widths: Widths) -> None:
    if problem := too_wide(row, widths, _SOURCE_FIELDS):
        record = str(row.get("source_id", ""))
        record = record if len(record) <= 64 else record[:64] + "…"
        raise RecordError(f"record {record}: {problem}")