"""Into Gladly: the last year of history as CUSTOMER_ACTIVITY items through the API (issue 15,
item 6, the optional API path). No Dagster import.

What is sent. The staged comments of a window [lo, hi) (item `ts`, UTC) that the import files
would hold as a row, decided by the pair's own shaping (pairs/zendesk_to_gladly/shaping.py, its
rules file): its skip rules (not_a_comment, spam, junk_customer, private_note, empty_conversation)
and the writer's reject reasons (import_files.reject_reason) apply unchanged, and the item carries
the text its file row would: the row's title (cut to 100 with an ellipsis as the writer cuts it),
its body (private label, links, attachment listing), `sourceName` the rules' source, `occurredAt`
the comment's time. Each comment of the window ends as exactly one of (first that applies):
- already_loaded: done in the ledger before (nothing sent, whatever its age now);
- in_import_files: an import range already recorded it (imported_items): left to the files;
- skipped, by reason: a shaping skip rule (its name); "older than a year: goes to the import
  files" (older than `max_age_days` before `now`, or before the send time, or refused by Gladly
  with a 400 naming `content.occurredAt`); no Gladly profile for its customer (`profile_index`);
  "rejected: <reason>" (a row the writer would reject); a body over 25,000 characters (the
  files split it into continuation rows, one API item cannot hold it);
- sent (this run's POST made it), already_there (409 `taken`: the item id was used), recovered
  (an earlier unknown outcome, a crash's intent or answers lost on every attempt, resolved by
  looking the item up);
- failed, with the item and the reason: a refusal (400, 404 unknown profile) recorded as `failed`
  in the ledger, the run goes on; or an outcome still unknown after every attempt (the intent
  stays, the next run looks the item up before sending). A 401/403 stops the run (AccessDenied).

Exactly once. Ledger key `activity:<item id>` (the ledger protocol and leases of lib/ledger.py);
the item's Gladly id is `stable_id` of that key, so a resend can only be refused (409), never
doubled, and a lost answer is resolved by GET /conversation-items/{id}.

`load()` returns the staged item ids now in Gladly through the API (ledger `done`, in the window):
the import-file writer leaves them out. `items_in_gladly(db, lo, hi)` answers the same from the
ledger alone, without a load.

Dry run: over a `vendors/gladly/plan.PlanningTarget` the same code plans instead: every item it
would POST is recorded with its body, not sent (counted `sent`), the ledger and leases are left as
they are, and the customers' profiles may be the ones the run's profile plan resolved (`profiles`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa

from migration_pipeline.lib.http import VendorAPIError
from migration_pipeline.lib.ledger import ExactlyOnce
from migration_pipeline.lib.staging.db import StagingDatabase, conversation_items, imported_items, ledger, utc_text
from migration_pipeline.lib import ledger_keys
from migration_pipeline.lib.ledger_keys import activity as activity_key
from migration_pipeline.pairs.zendesk_to_gladly.shaping import ImportRules, load_import_rules
from migration_pipeline.vendors.gladly.import_files import GLADLY_MAX_BODY, GLADLY_MAX_TITLE, cut_title, fits, reject_reason
from migration_pipeline.vendors.gladly.profile_load import AccessDenied, profile_index
from migration_pipeline.vendors.gladly.profiles import ActivityType, CustomerActivity, GladlyTarget, stable_id

# shaping's own decisions (this pair's module), so that an API item is exactly what its file row would be
from migration_pipeline.pairs.zendesk_to_gladly.shaping import (  # isort: skip
    _empty_tickets as shaping_empty_tickets,
    _import_row as shaping_import_row,
    _Plan as ShapingPlan,
    _selection as shaping_selection,
    _Skips as ShapingSkips,
)

ENTITY = "activity"
ACTIVITY_PREFIX = ledger_keys.prefix(ledger_keys.ACTIVITY)
DEFAULT_MAX_AGE_DAYS = 365
OLDER_THAN_A_YEAR = "older than a year: goes to the import files"
NO_PROFILE = "customer has no Gladly profile: goes to the import files"
BODY_TOO_LONG = f"body over {GLADLY_MAX_BODY:,} characters: goes to the import files"
REJECTED = "rejected: {reason}"
# shaping's selection takes the items a range recorded under its label plus those no range
# recorded; no range has this label (LABEL_RE never makes it), so only the unrecorded ones.
_NO_RANGE = "api:activity"
_END_OF_TIME = utc_text(datetime.max.replace(tzinfo=UTC))
_CHUNK = 500
_i, _m = conversation_items.c, imported_items.c


def activity_item_id(item_id: str) -> str:
    """The Gladly conversation-item id of a staged item's activity: the same on every run."""
    return stable_id(activity_key(item_id))


def _window(lo: datetime | None, hi: datetime | None) -> list[sa.ColumnElement[bool]]:
    return [*([_i.ts >= utc_text(lo)] if lo else []), *([_i.ts < utc_text(hi)] if hi else [])]


def items_in_gladly(db: StagingDatabase, lo: datetime | None = None, hi: datetime | None = None) -> set[str]:
    """The staged items of [lo, hi) (None: unbounded) that the ledger holds as sent to Gladly."""
    key = sa.literal(ACTIVITY_PREFIX) + _i.source_id
    query = (
        sa.select(_i.source_id)
        .select_from(conversation_items.join(ledger, ledger.c.source_key == key))
        .where(ledger.c.entity_type == ENTITY, ledger.c.state == "done", *_window(lo, hi))
    )
    with db.engine.connect() as conn:
        return set(conn.execute(query).scalars())


@dataclass(frozen=True)
class ActivityFailure:
    item_id: str
    customer_id: str  # the staged customer
    profile_id: str  # the Gladly profile it was sent to
    reason: str

    def __str__(self) -> str:
        return f"item {self.item_id} (customer {self.customer_id}, profile {self.profile_id}): {self.reason}"


@dataclass
class ActivityCounts:
    """Every staged comment of the window ends as exactly one of already_loaded, in_import_files,
    skipped (by reason), sent, already_there, recovered or failed (see the module doc)."""

    items: int = 0
    sent: int = 0
    already_there: int = 0
    recovered: int = 0
    resumed: int = 0  # of sent / already_there / recovered: items an earlier run left unfinished
    already_loaded: int = 0
    in_import_files: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    failures: list[ActivityFailure] = field(default_factory=list)
    waited_for_lease: int = 0
    errors: list[str] = field(default_factory=list)  # the protocol's

    def accounted(self) -> int:
        """The items given an outcome; equals `items` after a load."""
        return (self.already_loaded + self.in_import_files + self.skipped.total() + self.sent + self.already_there
                + self.recovered + len(self.failures))

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": self.items, "sent": self.sent, "already_there": self.already_there, "recovered": self.recovered,
            "resumed": self.resumed, "already_loaded": self.already_loaded, "in_import_files": self.in_import_files,
            "skipped": dict(self.skipped), "failed": len(self.failures),
            "failures": [str(f) for f in self.failures], "waited_for_lease": self.waited_for_lease,
        }


class _Candidate(NamedTuple):
    item_id: str
    customer_id: str
    profile_id: str


class _TooOld(Exception):
    """Gladly refused the item's occurredAt (its one-year rule): it goes to the import files."""


def _refused_as_too_old(exc: VendorAPIError) -> bool:
    errors = (exc.body or {}).get("errors") if isinstance(exc.body, dict) else None
    errors = [errors] if isinstance(errors, dict) else errors if isinstance(errors, list) else []
    return exc.status == 400 and any(isinstance(e, dict) and e.get("attr") == "content.occurredAt" for e in errors)


class ActivityLoader(ExactlyOnce):
    """Sends the last `max_age_days` of a window's comments as CUSTOMER_ACTIVITY items, exactly
    once (see the module doc). `now` is when the age is measured (default: the wall clock at
    construction); at send time it is `now` plus the time elapsed since. `profiles`: source customer
    id -> Gladly profile id (default: the ledger's, `profile_index`). Over a planning target
    (`target.plans_only`) it only plans. Close it (or use `with`) to stop the lease heartbeat."""

    def __init__(
        self,
        db: StagingDatabase,
        target: GladlyTarget,
        run_id: str | None,
        *,
        now: datetime | None = None,
        max_age_days: int = DEFAULT_MAX_AGE_DAYS,
        rules: ImportRules | None = None,
        activity_type: ActivityType = "EMAIL",
        profiles: Mapping[str, str] | None = None,
        create_attempts: int = 6,
        create_backoff_seconds: float = 0.5,
        lease_ttl_seconds: float = 120.0,
    ):
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.target = target
        self.now = (now or datetime.now(UTC)).astimezone(UTC)
        self.max_age = timedelta(days=max_age_days)
        self.rules = rules or load_import_rules()
        self.activity_type: ActivityType = activity_type
        self.counts = ActivityCounts()
        self.profiles = profiles
        super().__init__(db, run_id, counts=self.counts, create_attempts=create_attempts,
                         create_backoff_seconds=create_backoff_seconds, lease_ttl_seconds=lease_ttl_seconds,
                         dry_run=target.plans_only)
        self._started = time.monotonic()

    def send_time(self) -> datetime:
        """`now` moved on by the time elapsed since the loader was made."""
        return self.now + timedelta(seconds=time.monotonic() - self._started)

    def oldest_allowed(self, at: datetime | None = None) -> datetime:
        """The oldest comment time sent at `at` (default `now`)."""
        return (at or self.now) - self.max_age

    # -- the load ------------------------------------------------------------------------------
    def load(self, lo: datetime | None = None, hi: datetime | None = None) -> set[str]:
        """Send the comments of [lo, hi) (default lo: `max_age_days` before `now`; hi None: no
        end); the staged item ids of the window now in Gladly through the API. Counts accumulate
        in `counts` over calls."""
        lo = lo or self.oldest_allowed()
        done = items_in_gladly(self.db, lo, hi)
        profiles = profile_index(self.db) if self.profiles is None else self.profiles
        for chunk in _chunks(self._candidates(lo, hi, done, profiles), _CHUNK):
            rows = self._rows(lo, hi, chunk)
            for candidate in chunk:
                row = rows.get(candidate.item_id)
                if row is None:  # an import range recorded it since the selection: the files hold it
                    self.counts.in_import_files += 1
                    continue
                activity = self._activity(row)
                if activity is not None:
                    self._send(candidate, activity)
        in_gladly = items_in_gladly(self.db, lo, hi)
        if self.dry_run:  # and what it planned to send (its ledger is the run's OverlayLedger)
            in_gladly |= {key.removeprefix(ACTIVITY_PREFIX) for key in self.ledger.done(ENTITY)}
        return in_gladly

    def _plan(self, lo: datetime, hi: datetime | None) -> ShapingPlan:
        return ShapingPlan(_NO_RANGE, utc_text(lo), utc_text(hi) if hi else _END_OF_TIME, late_spans=[])

    def _candidates(self, lo: datetime, hi: datetime | None, done: set[str], profiles: dict[str, str]) -> list[_Candidate]:
        """Pass 1 (no bodies): count the window and decide every outcome that needs no body."""
        skips, plan = ShapingSkips(self.rules), self._plan(lo, hi)
        oldest = utc_text(self.oldest_allowed())
        recorded = sa.select(_i.source_id).join(imported_items, _m.item_id == _i.source_id).where(*_window(lo, hi))
        undecided: list[tuple[str, str | None, str, str]] = []  # (item, ticket, customer, ts)
        with self.db.engine.connect() as conn:
            for (item_id,) in conn.execute(recorded):
                self.counts.items += 1
                if item_id in done:
                    self.counts.already_loaded += 1
                else:
                    self.counts.in_import_files += 1
            for r in conn.execute(shaping_selection(plan, self.db.dialect, full=False).add_columns(_i.customer_id)):
                self.counts.items += 1
                if r.source_id in done:
                    self.counts.already_loaded += 1
                elif rule := skips.rule(r):
                    self.counts.skipped[rule] += 1
                else:
                    undecided.append((r.source_id, r.conversation_id, r.customer_id, r.ts))
            tickets = {t for _, t, _, _ in undecided if t is not None} if self.rules.skip.empty_conversations else set()
            empty = shaping_empty_tickets(conn, tickets, self.rules)
        candidates = []
        for item_id, ticket, customer_id, ts in undecided:
            reason = ("empty_conversation" if ticket in empty else OLDER_THAN_A_YEAR if ts < oldest
                      else NO_PROFILE if customer_id not in profiles else None)
            if reason:
                self.counts.skipped[reason] += 1
            else:
                candidates.append(_Candidate(item_id, customer_id, profiles[customer_id]))
        return candidates

    def _rows(self, lo: datetime, hi: datetime | None, chunk: Sequence[_Candidate]) -> dict[str, Any]:
        """Pass 2: the chunk's rows with bodies, as shaping selects them (still unrecorded)."""
        query = shaping_selection(self._plan(lo, hi), self.db.dialect, full=True).where(
            _i.source_id.in_([c.item_id for c in chunk]))
        with self.db.engine.connect() as conn:
            return {r.source_id: r for r in conn.execute(query)}

    def _activity(self, r: Any) -> CustomerActivity | None:
        """The activity of a staged row (what its import row holds), or None, counted skipped."""
        row = shaping_import_row(r, self.rules)
        reason = reject_reason(row)
        if reason:
            self.counts.skipped[REJECTED.format(reason=reason)] += 1
            return None
        if not fits(row.body, GLADLY_MAX_BODY):
            self.counts.skipped[BODY_TOO_LONG] += 1
            return None
        return CustomerActivity(
            id=activity_item_id(row.source_item_id), activity_type=self.activity_type,
            title=cut_title(row.title, GLADLY_MAX_TITLE)[0], body=row.body, source_name=row.source,
            occurred_at=row.timestamp,
        )

    def _send(self, candidate: _Candidate, activity: CustomerActivity) -> None:
        key = activity_key(candidate.item_id)
        outcome: list[str] = []  # what resolved the item, the last word wins

        def create() -> dict[str, Any]:
            try:
                made = self.target.add_activity(candidate.profile_id, activity)
            except VendorAPIError as exc:
                if exc.status in (401, 403):
                    raise AccessDenied(str(exc)) from exc
                if _refused_as_too_old(exc):
                    raise _TooOld(str(exc)) from exc
                raise
            outcome.append("sent" if made.created else "already_there")
            return {"id": made.id}

        def find() -> dict[str, Any] | None:
            found = self.target._existing_item(activity.id, candidate.profile_id)
            if found is None:
                return None
            outcome.append("recovered")
            return {"id": found.id}

        try:
            with self.lease(key):
                row = self.ledger.get(key)
                if row and row["state"] == "done":  # another run finished it meanwhile
                    self.counts.already_loaded += 1
                    return
                assert activity.occurred_at is not None
                left_unfinished = bool(row and row["state"] == "intent")
                if activity.occurred_at < self.oldest_allowed(self.send_time()) and not left_unfinished:
                    self.counts.skipped[OLDER_THAN_A_YEAR] += 1
                    return
                try:
                    item_id = self.ensure(key, ENTITY, create, find)
                except _TooOld:
                    self.ledger.forget(key)  # refused, so not in Gladly: the files take it
                    self.counts.skipped[OLDER_THAN_A_YEAR] += 1
                    return
        except VendorAPIError as exc:  # still unknown after every attempt: the intent stays
            if exc.status in (401, 403):
                raise AccessDenied(str(exc)) from exc
            self._fail(candidate, f"not resolved, looked up again next run: {exc}")
            return
        if item_id is None:  # refused: ensure recorded it as failed and counted it
            self._fail(candidate, (self.ledger.get(key) or {}).get("last_error") or "refused", counted=True)
            return
        last = outcome[-1] if outcome else "already_loaded"
        if last == "already_loaded":  # another run finished it while we waited for the lease
            self.counts.already_loaded += 1
            return
        if last != "recovered":  # ensure counts the recovered ones
            setattr(self.counts, last, getattr(self.counts, last) + 1)
        self.counts.resumed += left_unfinished

    def _fail(self, candidate: _Candidate, reason: str, counted: bool = False) -> None:
        self.counts.failed += not counted  # ensure counts the refusals it records
        self.counts.failures.append(ActivityFailure(candidate.item_id, candidate.customer_id, candidate.profile_id, reason))


def _chunks(items: Sequence[_Candidate], size: int) -> Iterator[Sequence[_Candidate]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
