"""Cutover in Gladly: after the final delta, close the Gladly conversations that were migrated.

The job Gladly's Support Tools "Bulk close conversations" does by hand (a CSV of
`conversationId`, an optional topic applied before closing, a results CSV with success or error
per conversation; shared/vendor-apis/gladly-support-tools.md), driven by the ledger so that only
what reached Unthread is touched. No Dagster import.

1. `plan_cutover`: every Gladly conversation the staging database knows, and whether it counts
   as migrated: it has tickets, EVERY ticket is `done` in the ledger (`ticket:<id>`), and every
   one of its staged items is loaded. "Loaded" is the reconciliation's own definition: the
   `rpt_unloaded_items` model (dbt_like_sql/) that `checks.reconciliation.reconcile` reads, so
   the two never disagree. The rest is skipped with the reason, never touched. Customer-activity
   pseudo-conversations (`activity:<customer>`) are not Gladly conversations and are left out.
2. Dry run: the plan as a results CSV (`would_close` / `already_closed` / `skipped`); no request
   is sent (no client needed).
3. Run: per conversation, GET it (already CLOSED -> `already_closed`, nothing written), add the
   topic if asked and not on it yet, PATCH status CLOSED with `force` (default false), so Gladly's
   own refusals (topics required, customer waiting) come back as `failed` with Gladly's message.
   Progress is kept in the ledger under `cutover-close:<conversation id>`: `intent` before the
   first write, `done` after the 204 (or when Gladly already shows CLOSED). A re-run reports a
   `done` conversation `already_closed` without a request; a crash resumes (an `intent` is read
   back with a GET before anything is sent again). A refusal is recorded as state `refused`
   with Gladly's message - not `failed`, which the reconciliation reads as a write Unthread
   refused - and is retried by the next run.
4. The results CSV (`conversationId,status,error`) lands in MIGRATION_DATA_DIR/reports/.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from migration_pipeline.lib import ledger_keys
from migration_pipeline.lib.files import atomic_write_text
from migration_pipeline.lib.http import VendorAPIError
from migration_pipeline.vendors.gladly.client import GladlyClient
from migration_pipeline.lib.staging.db import (
    LeaseKeeper,
    StagingDatabase,
    conversation_items,
    ledger,
    now_text,
    tickets,
)
from migration_pipeline.lib.staging.sql import run_model

log = logging.getLogger(__name__)

LEDGER_ENTITY = "cutover_close"
REFUSED = "refused"  # a state of our own: `failed` rows are read as refused Unthread writes (rpt_dead_letters)
LEASE_KEY = "cutover-close"  # one cutover run at a time
LEASE_TTL_SECONDS = 120.0
CSV_COLUMNS = ("conversationId", "status", "error")
STATUSES = ("closed", "already_closed", "failed", "skipped", "would_close")
ACTIVITY_PREFIX = "activity:"  # the timeline of items outside any conversation (dbt_like_sql/int_unassigned_items)
# Every staged timestamp sorts between these (staging stores fixed-width UTC text).
_ALL_TIME = ("0000-01-01T00:00:00.000000Z", "9999-12-31T23:59:59.999999Z")
_CHUNK = 500


@dataclass(frozen=True)
class CutoverPlan:
    """Which Gladly conversations to close, and which to leave alone and why."""

    to_close: list[str]
    skipped: dict[str, str]  # conversation id -> why it does not count as migrated
    closed_before: set[str]  # of to_close: `done` in the ledger by an earlier cutover run

    @property
    def conversations(self) -> int:
        return len(self.to_close) + len(self.skipped)


@dataclass(frozen=True)
class CutoverRow:
    """One line of the results CSV."""

    conversation_id: str
    status: str
    error: str = ""


@dataclass
class CutoverResult:
    rows: list[CutoverRow]
    dry_run: bool
    csv_path: Path | None = None
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.counts = Counter({s: 0 for s in STATUSES})
        self.counts.update(r.status for r in self.rows)

    def summary(self) -> str:
        what = "dry run (nothing sent)" if self.dry_run else "cutover"
        counts = ", ".join(f"{self.counts[s]} {s}" for s in STATUSES if self.counts[s] or s in ("closed", "skipped"))
        return f"Gladly {what}: {len(self.rows)} conversations: {counts}; results in {self.csv_path}"


# -- the plan ---------------------------------------------------------------------------------


def plan_cutover(db: StagingDatabase) -> CutoverPlan:
    """Every Gladly conversation in staging (tickets or staged items), split into those to close
    (migrated: every ticket done, every staged item loaded) and those skipped, with the reason."""
    ticket_done = sa.case((ledger.c.state == "done", 1), else_=0)
    per_conversation = (
        sa.select(
            tickets.c.conversation_id,
            sa.func.count().label("tickets"),
            sa.func.sum(ticket_done).label("done"),
            sa.func.min(sa.case((ledger.c.state.is_(None) | (ledger.c.state != "done"), tickets.c.ticket_id))).label("example"),
        )
        .select_from(tickets.outerjoin(ledger, ledger.c.source_key == ledger_keys.ticket_sql(tickets.c.ticket_id)))
        .where(tickets.c.conversation_id.not_like(ACTIVITY_PREFIX + "%"))
        .group_by(tickets.c.conversation_id)
    )
    staged_counts = (
        sa.select(conversation_items.c.conversation_id, sa.func.count())
        .where(conversation_items.c.conversation_id.is_not(None))
        .group_by(conversation_items.c.conversation_id)
    )
    with db.engine.connect() as conn:
        ticket_rows = {r.conversation_id: r for r in conn.execute(per_conversation)}
        staged = {cid: int(n) for cid, n in conn.execute(staged_counts)}
    unloaded: dict[str, list[dict[str, Any]]] = {}
    for row in run_model(db, "rpt_unloaded_items", lo=_ALL_TIME[0], hi=_ALL_TIME[1]):
        if row["conversation_id"]:
            unloaded.setdefault(row["conversation_id"], []).append(row)
    to_close, skipped = [], {}
    for conversation_id in sorted(set(ticket_rows) | set(staged)):
        reason = _skip_reason(ticket_rows.get(conversation_id), staged.get(conversation_id, 0), unloaded.get(conversation_id, []))
        if reason is None:
            to_close.append(conversation_id)
        else:
            skipped[conversation_id] = reason
    done = {ledger_keys.parse(key).id for key, row in _cutover_ledger(db, to_close).items() if row["state"] == "done"}
    return CutoverPlan(to_close=to_close, skipped=skipped, closed_before=done)


def _skip_reason(ticket_row: Any, staged: int, unloaded: list[dict[str, Any]]) -> str | None:
    """Why a conversation does not count as migrated, or None when it does."""
    if ticket_row is None:
        return f"not migrated: not split into tickets yet ({staged} staged items)"
    total, done = int(ticket_row.tickets), int(ticket_row.done or 0)
    if done < total:
        return f"not migrated: {total - done} of {total} tickets not loaded into Unthread (e.g. {ledger_keys.ticket(ticket_row.example)})"
    if unloaded:
        first = unloaded[0]
        why = f"{first['stage']}" + (f": {first['reason']}" if first.get("reason") else "")
        return f"not migrated: {len(unloaded)} of {staged} staged items not loaded (e.g. item {first['item_id']}, {why})"
    return None


def _cutover_ledger(db: StagingDatabase, conversation_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The ledger rows `cutover-close:<id>` of these conversations, by key."""
    keys = [ledger_keys.cutover_close(c) for c in conversation_ids]
    out: dict[str, dict[str, Any]] = {}
    with db.engine.connect() as conn:
        for start in range(0, len(keys), _CHUNK):
            query = sa.select(ledger).where(ledger.c.source_key.in_(keys[start : start + _CHUNK]))
            out.update({row["source_key"]: dict(row) for row in conn.execute(query).mappings()})
    return out


def _write_ledger(db: StagingDatabase, conversation_id: str, state: str, run_id: str | None, *, outcome=None, error=None) -> None:
    """One committed upsert of `cutover-close:<id>`; `attempts` counts the intents (write attempts)."""
    row = {
        "source_key": ledger_keys.cutover_close(conversation_id),
        "entity_type": LEDGER_ENTITY,
        "parent_key": None,
        "target_id": outcome,
        "state": state,
        "attempts": 1 if state == "intent" else 0,
        "last_error": error,
        "run_id": run_id,
        "updated_at": now_text(),
    }
    with db.begin() as conn:
        db.upsert(conn, ledger, [row], accumulate=("attempts",))


# -- dry run and run ----------------------------------------------------------------------------


def dry_run_rows(plan: CutoverPlan) -> list[CutoverRow]:
    """What a run would do, from the staging database alone (nothing is sent)."""
    rows = [CutoverRow(c, "already_closed" if c in plan.closed_before else "would_close") for c in plan.to_close]
    rows += [CutoverRow(c, "skipped", why) for c, why in plan.skipped.items()]
    return sorted(rows, key=lambda r: r.conversation_id)


def close_conversations(
    db: StagingDatabase,
    client: GladlyClient,
    plan: CutoverPlan,
    *,
    topic_id: str | None = None,
    force: bool = False,
    run_id: str | None = None,
    progress: Callable[[CutoverRow], None] | None = None,
) -> list[CutoverRow]:
    """Close every conversation of the plan (topic first when given); skipped ones untouched.

    One run at a time (a lease on the staging database); a topic that Gladly does not have, or
    has disabled, stops the run before anything is written. Gladly's refusals of one
    conversation are recorded and the run goes on; 401/403 stop it (nothing else would pass)."""
    if topic_id:
        _check_topic(client, topic_id)
    owner = f"{run_id or 'cutover'}:{uuid.uuid4().hex[:8]}"
    keeper = LeaseKeeper(db, owner, LEASE_TTL_SECONDS)
    rows: list[CutoverRow] = []
    try:
        while not keeper.acquire(LEASE_KEY):
            time.sleep(0.5)
        try:
            state = _cutover_ledger(db, plan.to_close)
            for conversation_id in plan.to_close:
                if keeper.confirm() is not None:
                    raise RuntimeError("lost the cutover lease to another run; stopping before any further write")
                row = _close_one(db, client, conversation_id, state.get(ledger_keys.cutover_close(conversation_id)), topic_id, force, run_id)
                rows.append(row)
                if progress is not None:
                    progress(row)
        finally:
            keeper.release(LEASE_KEY)
    finally:
        keeper.close()
    rows += [CutoverRow(c, "skipped", why) for c, why in plan.skipped.items()]
    return sorted(rows, key=lambda r: r.conversation_id)


def _check_topic(client: GladlyClient, topic_id: str) -> None:
    topic = next((t for t in client.list_topics() if t.id == topic_id), None)
    if topic is None:
        raise ValueError(f"topic {topic_id!r} does not exist in Gladly: nothing was closed")
    if topic.disabled:
        raise ValueError(f"topic {topic_id!r} ({topic.name}) is disabled in Gladly: nothing was closed")


def _close_one(
    db: StagingDatabase,
    client: GladlyClient,
    conversation_id: str,
    ledger_row: dict[str, Any] | None,
    topic_id: str | None,
    force: bool,
    run_id: str | None,
) -> CutoverRow:
    if ledger_row is not None and ledger_row["state"] == "done":
        return CutoverRow(conversation_id, "already_closed")  # by an earlier run: no request
    step = "read"
    try:
        conversation = client.get_conversation(conversation_id)
        if conversation is None:
            raise _Gone()
        if str(conversation.get("status", "")).upper() == "CLOSED":
            # Closed by an earlier attempt of ours (an intent left by a crash) or by someone else.
            ours = ledger_row is not None and ledger_row["state"] == "intent"
            outcome = "closed" if ours else "already_closed"
            _write_ledger(db, conversation_id, "done", run_id, outcome=outcome)
            return CutoverRow(conversation_id, outcome)
        _write_ledger(db, conversation_id, "intent", run_id)
        if topic_id and topic_id not in (conversation.get("topicIds") or []):
            step = "add topic"
            client.add_topics(conversation_id, [topic_id])
        step = "close"
        client.close_conversation(conversation_id, force=force)
    except _Gone:
        error = "read -> 404: not_exist conversation does not exist"
        _write_ledger(db, conversation_id, REFUSED, run_id, error=error)
        return CutoverRow(conversation_id, "failed", error)
    except VendorAPIError as exc:
        if exc.status in (401, 403):
            raise
        error = f"{step} -> {exc.status}: {exc.detail}" if exc.status else f"{step}: {exc.detail}"
        if not exc.retryable:  # Gladly answered and refused: nothing applied
            _write_ledger(db, conversation_id, REFUSED, run_id, error=error)
        # else (5xx / no answer after every retry): the intent stays; the next run reads the
        # conversation back before sending anything again.
        return CutoverRow(conversation_id, "failed", error)
    _write_ledger(db, conversation_id, "done", run_id, outcome="closed")
    return CutoverRow(conversation_id, "closed")


class _Gone(Exception):
    """GET answered 404: the conversation no longer exists in Gladly."""


# -- results file -----------------------------------------------------------------------------


def _cell(text: str) -> str:
    """A free-text cell that a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_results_csv(rows: list[CutoverRow], reports_dir: Path, *, dry_run: bool, label: str | None = None) -> Path:
    """`conversationId,status,error` (the Support Tools bulk-close results shape) under
    `reports_dir`, named by UTC time (and `label`, e.g. a run id), written atomically."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    suffix = re.sub(r"[^A-Za-z0-9_.-]", "-", label or uuid.uuid4().hex[:8])[:64]
    path = reports_dir / f"gladly-cutover-close-{stamp}-{suffix}{'-dry-run' if dry_run else ''}.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows((r.conversation_id, r.status, _cell(r.error)) for r in rows)
    return atomic_write_text(path, buffer.getvalue())


def run_cutover(
    db: StagingDatabase,
    client: GladlyClient | None,
    reports_dir: Path,
    *,
    dry_run: bool = True,
    topic_id: str | None = None,
    force: bool = False,
    run_id: str | None = None,
    progress: Callable[[CutoverRow], None] | None = None,
) -> CutoverResult:
    """Plan, then dry run (default: sends nothing, `client` may be None) or close, and write the
    results CSV. The one entry point of the Dagster job and the CLI."""
    plan = plan_cutover(db)
    if dry_run:
        rows = dry_run_rows(plan)
    else:
        if client is None:
            raise ValueError("a Gladly client is needed to close conversations (dry_run=False)")
        rows = close_conversations(db, client, plan, topic_id=topic_id, force=force, run_id=run_id, progress=progress)
    result = CutoverResult(rows=rows, dry_run=dry_run)
    result.csv_path = write_results_csv(rows, reports_dir, dry_run=dry_run, label=run_id)
    log.info(result.summary())
    return result
