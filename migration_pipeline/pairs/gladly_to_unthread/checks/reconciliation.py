"""Reconcile source against target for a window, independently of the load path. No Dagster import.

Three independent views of the same items:
- source: the archived export files themselves, re-read here (ids whose timestamp is in the
  window), plus the quarantined lines of those files;
- pipeline: staged, in tickets and loaded, from the staging database (dbt_like_sql/rpt_*);
- target: read back from Unthread — every conversation the ledger says it created (all of them,
  never a sample), its messages listed with cursor pagination and the source item markers read
  out of their text; the conversations' customers; every customer of the workspace.
Every source item that is not read back is listed with the stage where it stopped and why. On
the read-back messages it also checks source order, duplicates and who each message is from
(customer attribution); on the read-back customers, that merged Gladly profiles did not become
separate or duplicate Unthread customers.

Nothing is lost silently: `losses` names, with the stage and the reason, every source item not
read back, every line of the window's export files that never became a loaded item (a line that
cannot even be placed in a day, a quarantined line of any file) and every write the target
refused. A reviewer may accept a loss in the accepted-losses file (`load_accepted_losses`); the
blocking check passes only when every loss is accepted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from migration_pipeline.lib import ledger_keys, markers
from migration_pipeline.lib.http import VendorAPIError
from migration_pipeline.lib.jsonl import iter_jsonl
from migration_pipeline.lib.reconcile.full_lists import BOOL, INT, STRING, STRINGS, Columns
from migration_pipeline.lib.reconcile.accepted_losses import (  # noqa: F401  (re-exported for the pair)
    ACCEPTED_LOSSES_FILE,
    line_key,
    load_accepted_losses,
    write_accepted_losses,
)
from migration_pipeline.vendors.gladly.archive import ArchivedJob
from migration_pipeline.lib.staging.db import (
    StagingDatabase,
    agents,
    conversation_items,
    customer_lookups,
    customers,
    ledger,
    quarantine,
    surviving_customers,
    ticket_items,
    tickets,
    utc_text,
)
from migration_pipeline.lib.staging.sql import run_model
from migration_pipeline.vendors.unthread.client import UnthreadClient
from migration_pipeline.vendors.unthread.loader import EMAIL_RE

MAX_LISTED = 500
ITEMS_FILE = "conversation_items.jsonl"
_ID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

Identity = tuple[str, str]  # ("id", user id) | ("email", lower-case email) | ("name", display name)


_TICKET_CONVERSATION = (("ticket_id", STRING), ("conversation_id", STRING))

# Each list of a `Reconciliation` (attribute and Parquet file name) with the columns of its rows
# (lib/reconcile/full_lists.py writes them whole).
FULL_LISTS: dict[str, Columns] = {
    "missing": (("item_id", STRING), ("day", STRING), ("stage", STRING), ("reason", STRING)),
    "losses": (
        ("key", STRING), ("kind", STRING), ("stage", STRING), ("reason", STRING), ("accepted", STRING),
        ("item_id", STRING), ("day", STRING), ("lines", STRINGS), ("job_id", STRING), ("file", STRING),
        ("line", INT), ("unplaceable", BOOL),
    ),
    "stale_acceptances": (("key", STRING),),
    "dead_letters": (
        ("source_key", STRING), ("entity_type", STRING), ("parent_key", STRING), ("attempts", INT),
        ("reason", STRING), ("updated_at", STRING),
    ),
    "out_of_order": _TICKET_CONVERSATION,
    "conversations_gone": _TICKET_CONVERSATION,
    "duplicates": (("item_id", STRING), ("conversation_id", STRING), ("copies", INT)),
    "unmatched_agents": (("agent_id", STRING), ("name", STRING), ("email", STRING), ("active", BOOL), ("items", INT)),
    "attribution_mismatches": (
        ("item_id", STRING), ("conversation_id", STRING), ("message_id", STRING), ("expected", STRING), ("found", STRING),
    ),
    "conversation_customer_mismatches": (
        *_TICKET_CONVERSATION, ("gladly_customer", STRING), ("expected_customer", STRING), ("found_customer", STRING),
    ),
    "duplicate_customers": (("gladly_id", STRING), ("unthread_ids", STRINGS)),
    "merged_customers_on_target": (("gladly_id", STRING), ("merged_into", STRING), ("unthread_ids", STRINGS)),
    "customers_missing_on_target": (("gladly_id", STRING),),
}


@dataclass
class Reconciliation:
    window: tuple[str, str]
    source_items: int = 0
    staged: int = 0
    quarantined_lines: int = 0
    in_tickets: int = 0
    loaded: int = 0
    read_back: int = 0
    tickets_in_window: int = 0
    conversations_expected: int = 0  # every ticket of the window whose conversation the ledger says exists
    conversations_checked: int = 0
    out_of_order: list[dict[str, Any]] = field(default_factory=list)
    conversations_gone: list[dict[str, Any]] = field(default_factory=list)  # loaded, now 404 on Unthread
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # a source item found more than once
    missing: list[dict[str, Any]] = field(default_factory=list)
    missing_by_stage: Counter = field(default_factory=Counter)
    quarantine_reasons: Counter = field(default_factory=Counter)
    dead_letter_reasons: Counter = field(default_factory=Counter)
    by_day: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    ticket_sizes: list[int] = field(default_factory=list)  # items per ticket, every ticket of the window
    agents_seen: int = 0  # agents who authored items in the window
    unmatched_agents: list[dict[str, Any]] = field(default_factory=list)  # no Unthread user with their email
    # customer attribution: each read-back message's author against the source item's author
    messages_attributed: int = 0
    messages_unverifiable: int = 0  # the target showed no author at all for the message
    attribution_mismatches: list[dict[str, Any]] = field(default_factory=list)
    conversation_customer_mismatches: list[dict[str, Any]] = field(default_factory=list)
    # merged profiles: Unthread customers stamped with a Gladly id
    target_customers: int = 0
    duplicate_customers: list[dict[str, Any]] = field(default_factory=list)  # one Gladly id, several customers
    merged_customers_on_target: list[dict[str, Any]] = field(default_factory=list)  # a merged-away id has one
    customers_missing_on_target: list[dict[str, Any]] = field(default_factory=list)  # expected, not found
    # every non-blank line of the window's item files that has no id or no readable timestamp
    unplaceable_lines: int = 0
    # items and unplaceable lines missing on the target that a reviewer accepted (not in the variance)
    accepted_missing: int = 0
    # what the target does not have, each with key, kind, stage, reason and `accepted` (why, or None)
    losses: list[dict[str, Any]] = field(default_factory=list)
    stale_acceptances: list[str] = field(default_factory=list)  # accepted keys that match no loss

    @property
    def variance(self) -> float:
        """Share of the source not read back from the target and not accepted by a reviewer (0.0 =
        all there or signed off): items timestamped in the window plus the lines that cannot be
        placed in any day (counted as lost: nothing says where they belong). An accepted loss is
        still listed; leaving it in the share would fail a small partition that holds one forever."""
        total = self.source_items + self.unplaceable_lines
        if not total:
            return 0.0
        return max(0, total - self.read_back - self.accepted_missing) / total

    @property
    def unaccepted_losses(self) -> list[dict[str, Any]]:
        return [loss for loss in self.losses if not loss.get("accepted")]

    @property
    def attribution_ok(self) -> bool:
        return not self.attribution_mismatches and not self.conversation_customer_mismatches

    @property
    def merged_profiles_ok(self) -> bool:
        return not (self.duplicate_customers or self.merged_customers_on_target or self.customers_missing_on_target)

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
            "unplaceable_lines": self.unplaceable_lines,
            "losses_count": len(self.losses),
            "losses_unaccepted": len(self.unaccepted_losses),
            "losses": self.unaccepted_losses[:MAX_LISTED] + [loss for loss in self.losses if loss.get("accepted")][:MAX_LISTED],
            "stale_acceptances": self.stale_acceptances[:MAX_LISTED],
            "tickets_in_window": self.tickets_in_window,
            "conversations_expected": self.conversations_expected,
            "conversations_checked": self.conversations_checked,
            "out_of_order": self.out_of_order[:MAX_LISTED],
            "conversations_gone": self.conversations_gone[:MAX_LISTED],
            "duplicates": self.duplicates[:MAX_LISTED],
            "missing_count": len(self.missing),
            "missing_by_stage": dict(self.missing_by_stage),
            "missing": self.missing[:MAX_LISTED],
            "quarantine_reasons": dict(self.quarantine_reasons),
            "dead_letter_reasons": dict(self.dead_letter_reasons),
            "by_day": self.by_day,
            "dead_letters": self.dead_letters[:MAX_LISTED],
            "ticket_sizes": dict(sorted(Counter(self.ticket_sizes).items())),
            "agents_seen": self.agents_seen,
            "unmatched_agents": self.unmatched_agents[:MAX_LISTED],
            "messages_attributed": self.messages_attributed,
            "messages_unverifiable": self.messages_unverifiable,
            "attribution_mismatches": self.attribution_mismatches[:MAX_LISTED],
            "conversation_customer_mismatches": self.conversation_customer_mismatches[:MAX_LISTED],
            "target_customers": self.target_customers,
            "duplicate_customers": self.duplicate_customers[:MAX_LISTED],
            "merged_customers_on_target": self.merged_customers_on_target[:MAX_LISTED],
            "customers_missing_on_target": self.customers_missing_on_target[:MAX_LISTED],
        }


@dataclass
class SourceRecount:
    """Every non-blank line of the window's conversation_items.jsonl files, by what it is."""

    days: dict[str, str] = field(default_factory=dict)  # item id -> UTC day, items timestamped in the window
    lines: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # item id -> its (job, line) in the window
    unplaceable: list[tuple[str, int]] = field(default_factory=list)  # (job, line): no id or no readable timestamp
    files_missing: list[str] = field(default_factory=list)  # jobs whose archive lists the file but has no file


def _placed(obj: dict[str, Any] | None) -> tuple[str, str] | None:
    """(item id, UTC timestamp text) of a parsed line, or None when it has no string id or no
    timestamp that can be read (such a line cannot be placed in any window)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"]:
        return None
    try:
        return obj["id"], utc_text(datetime.fromisoformat(obj["timestamp"]))
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return None


def recount_source(jobs: list[ArchivedJob], lo: str, hi: str) -> SourceRecount:
    """Read the archived item files straight from disk (not through staging), counting every
    non-blank line: items timestamped in [lo, hi) with where each of their lines is, and every
    line that cannot be placed in a day at all. Lines are numbered as staging numbers them."""
    recount = SourceRecount()
    for job in jobs:
        path = job.file_path(ITEMS_FILE)
        if not path.exists():
            if ITEMS_FILE in job.files:
                recount.files_missing.append(job.job_id)
            continue
        for line_no, obj, _raw in iter_jsonl(path):
            placed = _placed(obj)
            if placed is None:
                recount.unplaceable.append((job.job_id, line_no))
                continue
            item_id, ts = placed
            if lo <= ts < hi:
                recount.days[item_id] = ts[:10]
                recount.lines.setdefault(item_id, []).append((job.job_id, line_no))
    return recount


def source_items_by_day(jobs: list[ArchivedJob], lo: str, hi: str) -> dict[str, str]:
    """Item id -> UTC day, for the items in the archived files whose timestamp is in [lo, hi),
    read straight from the files."""
    return recount_source(jobs, lo, hi).days


def dead_letter_reason(error: str | None) -> str:
    """A refusal's reason without the ids and numbers that make every message unique, so that
    refusals group by cause (`400: body.value: N characters exceeds the limit of N`)."""
    text = (error or "unknown").split(" -> ", 1)[-1]
    text = _ID_RE.sub("<id>", text)
    return re.sub(r"\d+", "N", text)[:200]


def reconcile(
    db: StagingDatabase,
    client: UnthreadClient,
    jobs: list[ArchivedJob],
    start: datetime,
    end: datetime,
    *,
    placeholder_user_id: str | None = None,
    customer_mode: str = "per_person",
    accepted: Mapping[str, str] | None = None,
) -> Reconciliation:
    """Compare the window's source items with staging and with what Unthread holds now.

    `placeholder_user_id` and `customer_mode` are the load settings the expected authors and
    customers follow (the same as the loader's); `accepted` is the reviewed accepted-losses list
    (`load_accepted_losses`)."""
    lo, hi = utc_text(start), utc_text(end)
    rec = Reconciliation(window=(lo, hi))
    recount = recount_source(jobs, lo, hi)
    source_days = recount.days
    source = set(source_days)
    rec.source_items = len(source)
    rec.unplaceable_lines = len(recount.unplaceable)

    pipeline_days = {d["day"]: d for d in run_model(db, "rpt_items_by_day", lo=lo, hi=hi)}
    rec.dead_letters = run_model(db, "rpt_dead_letters")
    rec.dead_letter_reasons = Counter(dead_letter_reason(d["reason"]) for d in rec.dead_letters)
    rec.staged = sum(int(d["staged"] or 0) for d in pipeline_days.values())
    rec.in_tickets = sum(int(d["in_tickets"] or 0) for d in pipeline_days.values())
    rec.loaded = sum(int(d["loaded"] or 0) for d in pipeline_days.values())
    sizes = run_model(db, "rpt_ticket_sizes", lo=lo, hi=hi)
    rec.tickets_in_window = len(sizes)
    rec.ticket_sizes = [int(t["item_count"]) for t in sizes]

    job_ids = [j.job_id for j in jobs]
    quarantined = quarantined_lines(db, job_ids)
    rec.quarantine_reasons = Counter(quarantined.values())
    rec.quarantined_lines = len(quarantined)
    with db.engine.connect() as conn:
        staged_from = {  # item id -> the (job, line) its staged row came from
            r[0]: (r[1], r[2])
            for r in conn.execute(
                sa.select(conversation_items.c.source_id, conversation_items.c.job_id, conversation_items.c.line_no)
                .where(conversation_items.c.ts >= lo, conversation_items.c.ts < hi)
            )
        }

    users = client.list_users()
    people = _People(db, users, placeholder_user_id)
    authors = run_model(db, "rpt_agent_authors", lo=lo, hi=hi)
    rec.agents_seen = len(authors)
    rec.unmatched_agents = [
        {"agent_id": a["agent_id"], "name": a["name"], "email": a["email"], "active": bool(a["active"]), "items": int(a["items"])}
        for a in authors
        if (a["email"] or "").strip().lower() not in people.users_by_email
    ]

    read_back = _read_back(db, client, lo, hi, rec, people, customer_mode)
    rec.read_back = len(source & read_back)
    _check_customers(db, client, rec, customer_mode, {t["customer_id"] for t in sizes})

    read_back_days = Counter(source_days[i] for i in source & read_back)
    source_counts = Counter(source_days.values())
    rec.by_day = [
        {
            "day": day,
            "source": source_counts.get(day, 0),
            "staged": int((pipeline_days.get(day) or {}).get("staged") or 0),
            "in_tickets": int((pipeline_days.get(day) or {}).get("in_tickets") or 0),
            "loaded": int((pipeline_days.get(day) or {}).get("loaded") or 0),
            "read_back": read_back_days.get(day, 0),
        }
        for day in sorted(set(source_counts) | set(pipeline_days))
    ]

    unloaded = {row["item_id"]: row for row in run_model(db, "rpt_unloaded_items", lo=lo, hi=hi)}
    for item_id in sorted(source - read_back):
        if item_id not in staged_from:
            entry = {"item_id": item_id, "stage": "staging", "reason": _quarantine_reason(recount.lines[item_id], quarantined)}
        elif item_id in unloaded:
            row = unloaded[item_id]
            entry = {"item_id": item_id, "stage": row["stage"], "reason": row["reason"] or _NOT_ATTEMPTED.get(row["stage"], "not attempted")}
        else:
            entry = {"item_id": item_id, "stage": "target", "reason": "loaded, but not found in Unthread on readback"}
        entry["day"] = source_days[item_id]
        rec.missing.append(entry)
        rec.missing_by_stage[entry["stage"]] += 1

    window_tickets = {t["ticket_id"] for t in sizes}
    window_customers = {"*"} if customer_mode == "single" else {t["customer_id"] for t in sizes}
    dead_letters = window_dead_letters(rec.dead_letters, window_tickets, window_customers)
    rec.losses = _losses(rec, recount, read_back, quarantined, staged_from, dead_letters)
    _accept(rec, accepted or {})
    return rec


# Why an item stopped where it did when the ledger recorded no error for it.
_NOT_ATTEMPTED = {
    "split": "not in a ticket (split_tickets has not assigned it)",
    "load": "in a ticket, not loaded (not attempted: an earlier write of its ticket failed, or the load has not run)",
    "load: intent": "a create was interrupted (intent in the ledger); the next run looks it up on Unthread first",
}


def quarantined_lines(db: StagingDatabase, job_ids: list[str]) -> dict[tuple[str, str, int], str]:
    """(job, file, line) -> quarantine reason, for every quarantined line of the given jobs."""
    out: dict[tuple[str, str, int], str] = {}
    query = sa.select(quarantine.c.job_id, quarantine.c.file_name, quarantine.c.line_no, quarantine.c.reason)
    with db.engine.connect() as conn:
        for start in range(0, len(job_ids), 500):
            chunk = job_ids[start : start + 500]
            for job_id, file_name, line_no, reason in conn.execute(query.where(quarantine.c.job_id.in_(chunk))):
                out[(job_id, file_name, int(line_no))] = reason
    return out


def _quarantine_reason(lines: list[tuple[str, int]], quarantined: dict[tuple[str, str, int], str]) -> str:
    """Why an item of these source lines was not staged: the quarantine record of its lines."""
    for job_id, line_no in reversed(lines):  # the last line of an item is the one staging keeps
        reason = quarantined.get((job_id, ITEMS_FILE, line_no))
        if reason is not None:
            return f"quarantined: {reason} (job {job_id}, line {line_no})"
    return "not staged (no quarantine record: staging has not read its file)"


def window_dead_letters(
    dead_letters: list[dict[str, Any]], window_tickets: set[str], window_customers: set[str]
) -> list[dict[str, Any]]:
    """The refused writes that belong to the window: of its tickets (the ticket, its messages,
    tags and status: keyed or parented by `ticket:<id>`) and of their customers, plus refusals
    tied to no ticket or customer (a tag), which every window reports until they are retried."""
    out = []
    for d in dead_letters:
        key = ledger_keys.parse(str(d["source_key"]))
        parent = ledger_keys.parse(d["parent_key"]) if d.get("parent_key") else None
        if parent is not None and parent.entity == ledger_keys.TICKET:
            belongs = parent.id in window_tickets
        elif key.entity in (ledger_keys.TICKET, ledger_keys.STATUS, ledger_keys.TAGS):
            belongs = key.id in window_tickets
        elif key.entity == ledger_keys.CUSTOMER:
            belongs = key.id in window_customers
        else:
            belongs = True
        if belongs:
            out.append(d)
    return out


def _losses(
    rec: Reconciliation,
    recount: SourceRecount,
    read_back: set[str],
    quarantined: dict[tuple[str, str, int], str],
    staged_from: dict[str, tuple[str, int]],
    dead_letters: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Everything of the window the target does not have, each named once with its stage and
    reason: items not read back, lines that never became an item (or whose item was read back
    from another line), export files gone from the archive, and refused writes that no missing
    item already explains."""
    losses = [_item_loss(m, recount.lines[m["item_id"]]) for m in rec.missing]
    explained = {(job, ITEMS_FILE, n) for m in rec.missing for job, n in recount.lines[m["item_id"]]}
    for job_id, line_no in recount.unplaceable:
        explained.add((job_id, ITEMS_FILE, line_no))
        reason = quarantined.get((job_id, ITEMS_FILE, line_no))
        losses.append(_line_loss(
            job_id, ITEMS_FILE, line_no,
            "cannot be placed in a day (no item id or no readable timestamp); "
            + (f"quarantined: {reason}" if reason is not None else "not quarantined: staging has not read this line"),
        ) | {"unplaceable": True})
    losses += _other_quarantined_lines(recount, read_back, quarantined, staged_from, explained)
    losses += [
        {"key": f"file:{job_id}/{ITEMS_FILE}", "kind": "file", "job_id": job_id, "file": ITEMS_FILE,
         "stage": "archive", "reason": "listed in the job's archive.json but not in the archive folder"}
        for job_id in recount.files_missing
    ]
    missing_items = {m["item_id"] for m in rec.missing}
    for d in dead_letters:
        key = str(d["source_key"])
        parsed = ledger_keys.parse(key)
        if parsed.entity == ledger_keys.MESSAGE and parsed.id in missing_items:
            continue  # named with its item, the vendor's message as the reason
        losses.append({"key": f"ledger:{key}", "kind": "write", "stage": "load: failed",
                       "reason": f"refused by Unthread: {d['reason'] or 'no message'}"})
    return losses


def _item_loss(missing: dict[str, Any], where: list[tuple[str, int]]) -> dict[str, Any]:
    return {
        "key": f"item:{missing['item_id']}", "kind": "item", "item_id": missing["item_id"], "day": missing["day"],
        "stage": missing["stage"], "reason": missing["reason"], "lines": [line_key(job, ITEMS_FILE, n) for job, n in where],
    }


def _other_quarantined_lines(
    recount: SourceRecount,
    read_back: set[str],
    quarantined: dict[tuple[str, str, int], str],
    staged_from: dict[str, tuple[str, int]],
    explained: set[tuple[str, str, int]],
) -> list[dict[str, Any]]:
    """Quarantined lines no item loss names: of the other files (customers, agents, topics),
    and item lines of the window whose item was read back from another of its lines."""
    read_back_lines = {(job, ITEMS_FILE, n): item for item, where in recount.lines.items() if item in read_back for job, n in where}
    out = []
    for (job_id, file_name, line_no), reason in sorted(quarantined.items()):
        if (job_id, file_name, line_no) in explained:
            continue
        if file_name == ITEMS_FILE:
            item = read_back_lines.get((job_id, file_name, line_no))
            if item is None or staged_from.get(item) == (job_id, line_no):
                continue  # timestamped outside the window (its window names it), or a stale record: it staged since
            reason = f"{reason}; item {item} was read back from another line, without this line's content"
        out.append(_line_loss(job_id, file_name, line_no, f"quarantined: {reason}"))
    return out


def _line_loss(job_id: str, file_name: str, line_no: int, reason: str) -> dict[str, Any]:
    return {"key": line_key(job_id, file_name, line_no), "kind": "line", "job_id": job_id, "file": file_name,
            "line": line_no, "stage": "staging", "reason": reason}


def _accept(rec: Reconciliation, accepted: Mapping[str, str]) -> None:
    """Mark each loss a reviewer accepted (by its key; an item also when every one of its
    source lines is accepted), and list accepted keys that match no loss."""
    used: set[str] = set()
    for loss in rec.losses:
        why = accepted.get(loss["key"])
        if why is not None:
            used.add(loss["key"])
        elif loss["kind"] == "item" and loss["lines"] and all(k in accepted for k in loss["lines"]):
            used.update(loss["lines"])
            why = "; ".join(dict.fromkeys(accepted[k] for k in loss["lines"]))
        loss["accepted"] = why
    rec.stale_acceptances = sorted(set(accepted) - used)
    rec.accepted_missing = sum(1 for loss in rec.losses if loss["accepted"] and (loss["kind"] == "item" or loss.get("unplaceable")))


class _People:
    """Who each source item should appear to be from on Unthread, by the loader's mapping rule:
    an agent as the workspace user with the agent's email (else the placeholder user, else the
    agent's name); anyone else as the item's customer, by email when it is valid, else by name.
    Identities are compared, not payloads, so a match by user id or by email both count."""

    def __init__(self, db: StagingDatabase, users: list[dict[str, Any]], placeholder_user_id: str | None):
        self.db = db
        self.placeholder = placeholder_user_id
        self.users_by_email = {u["email"].strip().lower(): u["id"] for u in users if isinstance(u.get("email"), str)}
        with db.engine.connect() as conn:
            self.agents = {r["source_id"]: r for r in conn.execute(sa.select(agents)).mappings()}
        self.customers: dict[str, Any] = {}
        self.survivors: dict[str, str] = {}  # merged-away id -> surviving profile

    def customer_rows(self, ids: set[str]) -> None:
        wanted = [i for i in ids if i and i not in self.customers]
        if not wanted:
            return
        with self.db.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                for row in conn.execute(sa.select(customers).where(customers.c.source_id.in_(chunk))).mappings():
                    self.customers[row["source_id"]] = row
            self.survivors.update(surviving_customers(conn, wanted))
        for i in wanted:
            self.customers.setdefault(i, None)

    def _by_email(self, email: str) -> set[Identity]:
        found: set[Identity] = {("email", email)}
        if email in self.users_by_email:  # the target resolves a known email to its user
            found.add(("id", self.users_by_email[email]))
        return found

    def expected(self, item: Any, ticket_customer: str | None) -> set[Identity]:
        if item["author_type"] == "agent" and item["author_id"]:
            agent = self.agents.get(item["author_id"])
            email = ((agent and agent["email"]) or "").strip().lower()
            if email in self.users_by_email:
                return self._by_email(email)
            if self.placeholder:
                return {("id", self.placeholder)}
            return {("name", (agent and agent["name"]) or f"Gladly agent {item['author_id']}")}
        # the profile the item's customer is today: for a merged-away one, the survivor's, as the
        # loader posts it (its own would be a stale name or no email at all)
        customer_id = item["customer_id"] or ticket_customer
        self.customer_rows({customer_id} if customer_id else set())
        row = self.customers.get(customer_id) if customer_id else None
        survivor = self.survivors.get(customer_id) if customer_id else None
        if survivor:
            self.customer_rows({survivor})
            if self.customers.get(survivor) is not None:
                customer_id, row = survivor, self.customers[survivor]
        email = (row and row["primary_email"]) or ""
        if email and EMAIL_RE.match(email):
            return self._by_email(email.lower())
        return {("name", (row and row["name"]) or f"Gladly customer {customer_id}")}


def found_identity(message: dict[str, Any]) -> Identity | None:
    """Who a read-back message is from: the workspace user it is posted as, else the person it
    was posted on behalf of; None when the target shows neither."""
    user = message.get("user") or {}
    if isinstance(user, dict) and user.get("id"):
        return ("id", str(user["id"]))
    behalf = message.get("onBehalfOf") or {}
    if isinstance(behalf, dict):
        if behalf.get("id"):
            return ("id", str(behalf["id"]))
        if behalf.get("email"):
            return ("email", str(behalf["email"]).strip().lower())
    sent_by = message.get("sentByUser") or {}
    if isinstance(sent_by, dict) and sent_by.get("email"):
        return ("email", str(sent_by["email"]).strip().lower())
    if isinstance(behalf, dict) and behalf.get("name"):
        return ("name", str(behalf["name"]))
    return None


def _read_back(
    db: StagingDatabase,
    client: UnthreadClient,
    lo: str,
    hi: str,
    rec: Reconciliation,
    people: _People,
    customer_mode: str,
) -> set[str]:
    """Item ids found in the Unthread conversations of every ticket touching the window."""
    touching = (
        sa.select(ledger.c.source_key, ledger.c.target_id)
        .where(ledger.c.entity_type == "conversation", ledger.c.state == "done")
        .where(
            sa.exists().where(
                ledger_keys.ticket_sql(ticket_items.c.ticket_id) == ledger.c.source_key,
                ticket_items.c.ts >= lo,
                ticket_items.c.ts < hi,
            )
        )
        .order_by(ledger.c.source_key)
    )
    found: set[str] = set()
    with db.engine.connect() as conn:
        conversations = conn.execute(touching).all()
    rec.conversations_expected = len(conversations)
    customer_of = _conversation_customers(client, [target for _, target in conversations])
    for source_key, target_id in conversations:
        ticket_id = ledger_keys.parse(source_key).id
        expected = _ticket_items(db, ticket_id)
        ticket_customer = next(iter(expected.values()))["ticket_customer"] if expected else None
        people.customer_rows({r["customer_id"] for r in expected.values()} | {ticket_customer})
        _check_conversation_customer(db, rec, ticket_id, target_id, ticket_customer, customer_of, customer_mode)
        seen: list[str] = []
        try:
            for message in client.iter_messages(target_id):
                text = message.get("text") or ""
                seen += [m.item_id for m in markers.find(text) if m.first]
                _check_attribution(rec, people, expected, ticket_customer, target_id, message, text)
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
        if order != sorted(order, key=lambda i: expected[i]["position"]):
            rec.out_of_order.append({"ticket_id": ticket_id, "conversation_id": target_id})
    return found


def _check_attribution(
    rec: Reconciliation, people: _People, expected: dict[str, Any], ticket_customer, conversation_id: str, message, text: str
) -> None:
    # every marker, attachment follow-ups (`#f2`) included: each of those messages has an author too
    item_ids = dict.fromkeys(m.item_id for m in markers.find(text, any_part=True) if m.item_id in expected)
    for item_id in item_ids:
        who = found_identity(message)
        if who is None:
            rec.messages_unverifiable += 1
            continue
        rec.messages_attributed += 1
        accepted = people.expected(expected[item_id], ticket_customer)
        if who not in accepted:
            rec.attribution_mismatches.append({
                "item_id": item_id,
                "conversation_id": conversation_id,
                "message_id": message.get("id"),
                "expected": " or ".join(f"{k}:{v}" for k, v in sorted(accepted)),
                "found": f"{who[0]}:{who[1]}",
            })


def _conversation_customers(client: UnthreadClient, conversation_ids: list[str]) -> dict[str, str | None]:
    """Conversation id -> the id of its customer on Unthread (None when the customer it points
    at no longer exists), 100 conversations a request."""
    out: dict[str, str | None] = {}
    for start in range(0, len(conversation_ids), 100):
        chunk = conversation_ids[start : start + 100]
        body = {"select": ["id", "customerId", "customer.id"], "where": [{"field": "id", "operator": "in", "value": chunk}]}
        for row in client.iter_list("/conversations/list", body):
            out[row["id"]] = (row.get("customer") or {}).get("id")
    return out


def _check_conversation_customer(
    db: StagingDatabase, rec: Reconciliation, ticket_id, conversation_id, ticket_customer, customer_of, customer_mode
) -> None:
    if conversation_id not in customer_of or not ticket_customer:
        return  # gone from the target: reported by the message readback
    key = ledger_keys.single_customer() if customer_mode == "single" else ledger_keys.customer(ticket_customer)
    with db.engine.connect() as conn:
        expected = conn.execute(
            sa.select(ledger.c.target_id).where(ledger.c.source_key == key, ledger.c.state == "done")
        ).scalar()
    if customer_of[conversation_id] != expected:
        rec.conversation_customer_mismatches.append({
            "ticket_id": ticket_id,
            "conversation_id": conversation_id,
            "gladly_customer": ticket_customer,
            "expected_customer": expected,
            "found_customer": customer_of[conversation_id],
        })


def _ticket_items(db: StagingDatabase, ticket_id: str) -> dict[str, dict[str, Any]]:
    """A ticket's items in source order, with what their expected author depends on."""
    query = (
        sa.select(
            ticket_items.c.item_id,
            conversation_items.c.author_type,
            conversation_items.c.author_id,
            conversation_items.c.customer_id,
            tickets.c.customer_id.label("ticket_customer"),
        )
        .select_from(
            ticket_items.join(tickets, tickets.c.ticket_id == ticket_items.c.ticket_id).outerjoin(
                conversation_items, conversation_items.c.source_id == ticket_items.c.item_id
            )
        )
        .where(ticket_items.c.ticket_id == ticket_id)
        .order_by(ticket_items.c.ts, ticket_items.c.item_id)
    )
    with db.engine.connect() as conn:
        return {row["item_id"]: {**row, "position": n} for n, row in enumerate(conn.execute(query).mappings())}


def _check_customers(
    db: StagingDatabase, client: UnthreadClient, rec: Reconciliation, customer_mode: str, window_customers: set[str]
) -> None:
    """Merged profiles: every Unthread customer stamped with a Gladly id, read back. No Gladly id
    has two; no merged-away id has one; each surviving customer of the window has exactly one."""
    stamped: dict[str, list[str]] = {}
    body = {"select": ["id", "externalCrmMetadata"], "order": ["createdAt", "id"]}
    for row in client.iter_list("/customers/list", body):
        rec.target_customers += 1
        gladly_id = markers.stamped_customer((row.get("externalCrmMetadata") or {}).get("id"))
        if gladly_id is not None:
            stamped.setdefault(gladly_id, []).append(row["id"])
    with db.engine.connect() as conn:
        merged = {
            r[0]: r[1]
            for r in conn.execute(
                sa.select(customer_lookups.c.customer_id, customer_lookups.c.surviving_id).where(
                    customer_lookups.c.status == "moved"
                )
            )
        }
        merged.update(
            {
                r[0]: r[1]
                for r in conn.execute(
                    sa.select(customers.c.source_id, customers.c.merged_into).where(customers.c.merged_into.is_not(None))
                )
                if r[0] not in merged
            }
        )
        loaded = set(
            conn.execute(
                sa.select(ledger.c.source_key).where(ledger.c.entity_type == "customer", ledger.c.state == "done")
            ).scalars()
        )
    for gladly_id, ids in sorted(stamped.items()):
        if len(ids) > 1:
            rec.duplicate_customers.append({"gladly_id": gladly_id, "unthread_ids": ids})
        if gladly_id in merged:
            rec.merged_customers_on_target.append(
                {"gladly_id": gladly_id, "merged_into": merged[gladly_id], "unthread_ids": ids}
            )
    expected = {ledger_keys.SINGLE_CUSTOMER_ID} if customer_mode == "single" else window_customers
    for gladly_id in sorted(expected):
        # only customers the ledger says were created: one not loaded yet is a load gap, counted
        # by the variance check, not a profile problem
        if ledger_keys.customer(gladly_id) in loaded and not stamped.get(gladly_id):
            rec.customers_missing_on_target.append({"gladly_id": gladly_id})
