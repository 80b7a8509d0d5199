"""Zendesk -> Gladly reconciliation: the source recounted from the archive, against staging, the
import files' outcomes and Gladly read back. No Dagster import.

Proof, per window (the comments whose created_at falls in it):
- every source comment (recounted from the archived deliveries, not from staging) is staged, or
  its record is quarantined with the reason (the quarantine names "comment <id>");
- every staged comment has exactly one outcome in imported_items: an import row (file, row), a
  reject (rejected.csv, reason) or a skip (the rule) - one row per item id, so never two;
- every person with a valid email has exactly one Gladly profile, read back by email;
and the same figures per UTC day, for the UI and the HTML report.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa

from migration_pipeline.lib.jsonl import read_jsonl
from migration_pipeline.lib.staging.db import StagingDatabase, conversation_items, imported_items, quarantine, utc_text
from migration_pipeline.vendors.zendesk.archive import ZendeskDelivery
from migration_pipeline.vendors.zendesk.export import ExportRecord, read_export_file
from migration_pipeline.vendors.zendesk.records import ZendeskTicket

LIST_LIMIT = 500  # ids listed per finding in metadata (the counts are always whole)


@dataclass
class Reconciliation:
    lo: str
    hi: str
    source_comments: int = 0
    staged: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    not_staged: list[str] = field(default_factory=list)  # source comments neither staged nor quarantined
    quarantined_comments: int = 0  # source comments whose record was quarantined (with its reason)
    no_outcome: list[str] = field(default_factory=list)  # staged items no import range has taken yet
    per_day: dict[str, Counter[str]] = field(default_factory=dict)
    persons_with_email: int = 0
    profiles_missing: list[str] = field(default_factory=list)
    profiles_duplicated: list[str] = field(default_factory=list)
    profiles_checked: bool = False

    @property
    def every_comment_accounted_for(self) -> bool:
        return not self.not_staged and not self.no_outcome

    @property
    def one_profile_per_person(self) -> bool:
        return not self.profiles_missing and not self.profiles_duplicated


def source_comments(deliveries: Iterable[ZendeskDelivery], lo: datetime, hi: datetime) -> dict[str, str]:
    """Comment id -> UTC day of every comment the archived deliveries hold in [lo, hi): embedded in
    ticket lines, or fetched from the API into the delivery's comments.jsonl."""
    found: dict[str, str] = {}

    def take(comment_id: object, created: object) -> None:
        if not isinstance(comment_id, int) or isinstance(comment_id, bool) or not isinstance(created, str | datetime):
            return
        when = created if isinstance(created, datetime) else _parse(created)
        if when is not None and lo <= when < hi:
            found[str(comment_id)] = when.astimezone(UTC).date().isoformat()

    for delivery in deliveries:
        for name in sorted(delivery.files):
            for entry in read_export_file(delivery.file_path(name)):
                if isinstance(entry, ExportRecord) and isinstance(entry.record, ZendeskTicket):
                    for comment in entry.record.comments or ():
                        take(comment.id, comment.created_at)
        if delivery.comments_path is not None:
            for line in read_jsonl(delivery.comments_path):
                comment = (line.obj or {}).get("comment")
                if isinstance(comment, dict):
                    take(comment.get("id"), comment.get("created_at"))
    return found


def _parse(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def reconcile(
    db: StagingDatabase,
    deliveries: Iterable[ZendeskDelivery],
    lo: datetime,
    hi: datetime,
    read_back: Callable[[str], int] | None = None,
    persons: Iterable[str] = (),
) -> Reconciliation:
    """The window's proof. `read_back(email)` counts Gladly profiles holding the email (None: not
    checked, e.g. no API); `persons` are the valid emails of the people the window's items name."""
    rec = Reconciliation(utc_text(lo), utc_text(hi))
    source = source_comments(deliveries, lo, hi)
    rec.source_comments = len(source)
    c, o = conversation_items.c, imported_items.c
    with db.engine.connect() as conn:
        staged = dict(conn.execute(
            sa.select(c.source_id, sa.func.substr(c.ts, 1, 10)).where(c.ts >= rec.lo, c.ts < rec.hi)
        ).all())
        outcome_of = dict(conn.execute(
            sa.select(o.item_id, o.outcome).join(conversation_items, conversation_items.c.source_id == o.item_id)
            .where(c.ts >= rec.lo, c.ts < rec.hi)
        ).all())
        reasons = [r for (r,) in conn.execute(sa.select(quarantine.c.reason).where(quarantine.c.reason.like("%comment %")))]
    rec.staged = len(staged)
    quarantined = _ids_named(reasons)
    for comment_id, day in sorted(source.items()):
        counts = rec.per_day.setdefault(day, Counter())
        counts["source"] += 1
        if comment_id in staged:
            continue
        if comment_id in quarantined:
            rec.quarantined_comments += 1
            counts["quarantined"] += 1
        else:
            rec.not_staged.append(comment_id)
            counts["missing"] += 1
    for item_id, day in sorted(staged.items()):
        counts = rec.per_day.setdefault(day, Counter())
        counts["staged"] += 1
        outcome = outcome_of.get(item_id)
        if outcome is None:
            rec.no_outcome.append(item_id)
            counts["no_outcome"] += 1
        else:
            rec.outcomes[outcome] += 1
            counts[outcome] += 1
    persons = sorted(set(persons))
    rec.persons_with_email = len(persons)
    if read_back is not None:
        rec.profiles_checked = True
        for email in persons:
            found = read_back(email)
            if found == 0:
                rec.profiles_missing.append(email)
            elif found > 1:
                rec.profiles_duplicated.append(email)
    return rec


def _ids_named(reasons: Iterable[str]) -> set[str]:
    """The comment ids quarantine reasons name ("... comment 123 ...")."""
    ids = set()
    for reason in reasons:
        words = reason.replace(",", " ").replace(":", " ").split()
        ids.update(words[i + 1] for i, w in enumerate(words[:-1]) if w == "comment" and words[i + 1].isdigit())
    return ids


def as_json(rec: Reconciliation) -> dict:
    return json.loads(json.dumps({
        "window": [rec.lo, rec.hi], "source_comments": rec.source_comments, "staged": rec.staged,
        "quarantined_comments": rec.quarantined_comments, "outcomes": dict(rec.outcomes),
        "not_staged": rec.not_staged[:LIST_LIMIT], "no_outcome": rec.no_outcome[:LIST_LIMIT],
        "per_day": {d: dict(c) for d, c in sorted(rec.per_day.items())},
        "persons_with_email": rec.persons_with_email, "profiles_checked": rec.profiles_checked,
        "profiles_missing": rec.profiles_missing[:LIST_LIMIT], "profiles_duplicated": rec.profiles_duplicated[:LIST_LIMIT],
    }))


def _window_customer_ids(lo: str, hi: str) -> sa.Select:
    return sa.select(conversation_items.c.customer_id).where(conversation_items.c.ts >= lo, conversation_items.c.ts < hi)


def window_customers(db: StagingDatabase, lo: str, hi: str) -> list[str]:
    """The staged customers whose comments fall in [lo, hi)."""
    with db.engine.connect() as conn:
        return sorted(conn.execute(_window_customer_ids(lo, hi).distinct()).scalars())


def window_emails(db: StagingDatabase, lo: str, hi: str) -> list[str]:
    """The valid emails (trimmed, lower case) of the customers whose comments fall in [lo, hi):
    each must have exactly one Gladly profile."""
    from migration_pipeline.lib.staging.db import customers
    from migration_pipeline.vendors.gladly.import_files import is_valid_email

    query = sa.select(customers.c.emails).where(customers.c.source_id.in_(_window_customer_ids(lo, hi)))
    with db.engine.connect() as conn:
        lists = conn.execute(query).scalars().all()
    return sorted({e.strip().lower() for emails in lists for e in (emails or []) if isinstance(e, str) and is_valid_email(e.strip())})
