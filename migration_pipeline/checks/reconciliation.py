"""Reconcile source against target for a window, independently of the load path. No Dagster import.

Three independent views of the same items:
- source: the archived export files themselves, re-read here (ids whose timestamp is in the
  window), plus the quarantined lines of those files;
- pipeline: staged, in tickets and loaded, from the staging database (dbt_like_sql/rpt_*);
- target: read back from Unthread — every conversation the ledger says it created, its messages
  listed with cursor pagination and the source item markers read out of their text.
Every source item that is not read back is listed with the stage where it stopped and why, and
each conversation's messages are checked to be in source order.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from migration_pipeline.core.http import VendorAPIError
from migration_pipeline.sources.gladly.archive import ArchivedJob
from migration_pipeline.staging.db import StagingDatabase, conversation_items, ledger, quarantine, ticket_items, utc_text
from migration_pipeline.staging.sql import run_model
from migration_pipeline.targets.unthread.client import UnthreadClient
from migration_pipeline.targets.unthread.loader import MARKER

MARKER_RE = re.compile(r"`" + re.escape(MARKER) + r"([^`#]+)(?:#(\d+))?`")
MAX_LISTED = 500


@dataclass
class Reconciliation:
    window: tuple[str, str]
    source_items: int = 0
    staged: int = 0
    quarantined_lines: int = 0
    in_tickets: int = 0
    loaded: int = 0
    read_back: int = 0
    conversations_checked: int = 0
    out_of_order: list[dict[str, Any]] = field(default_factory=list)
    conversations_gone: list[dict[str, Any]] = field(default_factory=list)  # loaded, now 404 on Unthread
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # a source item found more than once
    missing: list[dict[str, Any]] = field(default_factory=list)
    missing_by_stage: Counter = field(default_factory=Counter)
    quarantine_reasons: Counter = field(default_factory=Counter)
    by_day: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)

    @property
    def variance(self) -> float:
        """Share of source items not read back from the target (0.0 = all there)."""
        if not self.source_items:
            return 0.0
        return (self.source_items - self.read_back) / self.source_items

    def as_dict(self) -> dict[str, Any]:
        return {
            "window": list(self.window),
            "source_items": self.source_items,
            "staged": self.staged,
            "quarantined_lines": self.quarantined_lines,
            "in_tickets": self.in_tickets,
            "loaded": self.loaded,
            "read_back": self.read_back,
            "variance": self.variance,
            "conversations_checked": self.conversations_checked,
            "out_of_order": self.out_of_order[:MAX_LISTED],
            "conversations_gone": self.conversations_gone[:MAX_LISTED],
            "duplicates": self.duplicates[:MAX_LISTED],
            "missing_count": len(self.missing),
            "missing_by_stage": dict(self.missing_by_stage),
            "missing": self.missing[:MAX_LISTED],
            "quarantine_reasons": dict(self.quarantine_reasons),
            "by_day": self.by_day,
            "dead_letters": self.dead_letters[:MAX_LISTED],
        }


def source_item_ids(jobs: list[ArchivedJob], lo: str, hi: str) -> set[str]:
    """Item ids in the archived files whose timestamp is in [lo, hi), read straight from the files."""
    ids: set[str] = set()
    for job in jobs:
        path = job.file_path("conversation_items.jsonl")
        if "conversation_items.jsonl" not in job.files or not path.exists():
            continue
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    obj = json.loads(line)
                    ts = utc_text(datetime.fromisoformat(obj["timestamp"]))
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue
                if lo <= ts < hi and isinstance(obj.get("id"), str):
                    ids.add(obj["id"])
    return ids


def reconcile(
    db: StagingDatabase, client: UnthreadClient, jobs: list[ArchivedJob], start: datetime, end: datetime
) -> Reconciliation:
    lo, hi = utc_text(start), utc_text(end)
    rec = Reconciliation(window=(lo, hi))
    source = source_item_ids(jobs, lo, hi)
    rec.source_items = len(source)

    rec.by_day = run_model(db, "rpt_items_by_day", lo=lo, hi=hi)
    rec.dead_letters = run_model(db, "rpt_dead_letters")
    rec.staged = sum(d["staged"] for d in rec.by_day)
    rec.in_tickets = sum(int(d["in_tickets"] or 0) for d in rec.by_day)
    rec.loaded = sum(int(d["loaded"] or 0) for d in rec.by_day)

    job_ids = [j.job_id for j in jobs]
    with db.engine.connect() as conn:
        for reason, n in conn.execute(
            sa.select(quarantine.c.reason, sa.func.count())
            .where(quarantine.c.job_id.in_(job_ids))
            .group_by(quarantine.c.reason)
        ):
            rec.quarantine_reasons[reason] += n
        rec.quarantined_lines = sum(rec.quarantine_reasons.values())
        staged_ids = {
            r[0]
            for r in conn.execute(
                sa.select(conversation_items.c.source_id).where(conversation_items.c.ts >= lo, conversation_items.c.ts < hi)
            )
        }

    read_back = _read_back(db, client, lo, hi, rec)
    rec.read_back = len(source & read_back)

    unloaded = {row["item_id"]: row for row in run_model(db, "rpt_unloaded_items", lo=lo, hi=hi)}
    for item_id in sorted(source - read_back):
        if item_id not in staged_ids:
            entry = {"item_id": item_id, "stage": "staging", "reason": _quarantine_reason(db, job_ids, item_id)}
        elif item_id in unloaded:
            row = unloaded[item_id]
            entry = {"item_id": item_id, "stage": row["stage"], "reason": row["reason"] or "not attempted"}
        else:
            entry = {"item_id": item_id, "stage": "target", "reason": "loaded, but not found in Unthread on readback"}
        rec.missing.append(entry)
        rec.missing_by_stage[entry["stage"]] += 1
    return rec


def _quarantine_reason(db: StagingDatabase, job_ids: list[str], item_id: str) -> str:
    query = sa.select(quarantine.c.reason, quarantine.c.job_id, quarantine.c.line_no).where(
        quarantine.c.job_id.in_(job_ids), quarantine.c.raw_text.contains(f'"{item_id}"')
    )
    with db.engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return "not staged (no quarantine record)"
    return f"quarantined: {row.reason} (job {row.job_id}, line {row.line_no})"


def _read_back(db: StagingDatabase, client: UnthreadClient, lo: str, hi: str, rec: Reconciliation) -> set[str]:
    """Item ids found in the Unthread conversations of every ticket touching the window."""
    touching = (
        sa.select(ledger.c.source_key, ledger.c.target_id)
        .where(ledger.c.entity_type == "conversation", ledger.c.state == "done")
        .where(
            sa.exists().where(
                sa.literal("ticket:") + ticket_items.c.ticket_id == ledger.c.source_key,
                ticket_items.c.ts >= lo,
                ticket_items.c.ts < hi,
            )
        )
    )
    found: set[str] = set()
    with db.engine.connect() as conn:
        conversations = conn.execute(touching).all()
    for source_key, target_id in conversations:
        ticket_id = source_key.removeprefix("ticket:")
        expected = _ticket_item_order(db, ticket_id)
        seen: list[str] = []
        try:
            for message in client.iter_messages(target_id):
                for item_id, part in MARKER_RE.findall(message.get("text") or ""):
                    if part in ("", "1"):
                        seen.append(item_id)
        except VendorAPIError as exc:
            if exc.status != 404:
                raise
            rec.conversations_gone.append({"ticket_id": ticket_id, "conversation_id": target_id})
        rec.conversations_checked += 1
        for item_id, n in Counter(seen).items():
            if n > 1 or item_id in found:
                rec.duplicates.append({"item_id": item_id, "conversation_id": target_id, "copies": n})
        found.update(seen)
        order = [i for i in seen if i in expected]
        if order != sorted(order, key=expected.__getitem__):
            rec.out_of_order.append({"ticket_id": ticket_id, "conversation_id": target_id})
    return found


def _ticket_item_order(db: StagingDatabase, ticket_id: str) -> dict[str, int]:
    query = (
        sa.select(ticket_items.c.item_id)
        .where(ticket_items.c.ticket_id == ticket_id)
        .order_by(ticket_items.c.ts, ticket_items.c.item_id)
    )
    with db.engine.connect() as conn:
        return {row[0]: n for n, row in enumerate(conn.execute(query))}
