"""Asset checks along the pipeline, each reading staging (and the archive) for the run's window.

The reconciliation at the end of the graph proves the whole window; these say, at the stage where
it happens, what went wrong and stop the run there when nothing downstream could be right:
- `export_coverage` (blocking): archived exports cover the whole window;
- `quarantine_rate` (blocking above MIGRATION_MAX_QUARANTINE_RATE): export lines quarantined and
  not accepted by a reviewer, a warning while few, an error past the limit;
- `items_all_in_tickets` (blocking): every staged item of the window is in exactly one ticket;
- `dead_letters` (warning): writes Unthread refused that are still open for the window;
- `newest_partition_fresh` (warning): the delta syncs keep up, the newest partition staged and
  loaded is yesterday's; `freshness_sensor` (off by default) runs it when no run does.

A check runs after its asset in every job that targets the asset (a blocking one that fails stops
what is downstream and fails the run); in a run without partitions (a check launched on its own)
the window is every complete day so far.

Freshness is a check of its own, not Dagster's `FreshnessPolicy`: a policy judges when an asset
last materialized, not which day it holds (a backfill of old days would look fresh), and the
factory checks that judge partitions (`build_time_partition_freshness_checks`) are superseded.
"""

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import sqlalchemy as sa

from migration_pipeline.pairs.gladly_to_unthread.assets.export_jobs import PARTIAL_LAYOUTS, gladly_export_jobs
from migration_pipeline.pairs.gladly_to_unthread.assets.loaded_records import unthread_loaded_records
from migration_pipeline.pairs.gladly_to_unthread.assets.tickets import split_tickets
from migration_pipeline.pairs.gladly_to_unthread.pair import NAME, key
from migration_pipeline.pairs.gladly_to_unthread.checks.reconciliation import (
    ACCEPTED_LOSSES_FILE,
    quarantined_lines,
    window_dead_letters,
    dead_letter_reason,
    load_accepted_losses,
)
from migration_pipeline.lib import ledger_keys
from migration_pipeline.pairs.day_figures import midnight as _midnight, run_window
from migration_pipeline.pairs.quarantine_check import (  # noqa: F401  (max_quarantine_rate: re-exported)
    MAX_QUARANTINE_RATE,
    QUARANTINE_RATE_ENV,
    max_quarantine_rate,
    quarantine_rate_result,
)
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.gladly.archive import EXPORT_FILE_NAMES, ExportArchive, coverage_gaps
from migration_pipeline.lib.staging.db import conversation_items, utc_text
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.lib.staging.sql import run_model
from migration_pipeline.vendors.unthread.resources import UnthreadResource

MAX_LISTED = 50  # records named in a check's metadata
FRESHNESS_CHECK = "newest_partition_fresh"
FRESHNESS_ASSETS = (key("staged_conversation_items"), key("unthread_loaded_records"))
# Gladly's export of day D lands around 02:00 UTC on D+1 and the delta schedule runs at 06:00, so
# day D should be staged and loaded by 08:00 on D+1: 32 hours after its window ends.
MAX_PARTITION_LAG = timedelta(hours=32)
MAX_LAG_TEXT = f"{MAX_PARTITION_LAG.total_seconds() / 3600:g} h"




def _span(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} UTC"


def _listed(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> dg.JsonMetadataValue:
    return dg.MetadataValue.json([{c: row[c] for c in columns} for row in rows[:MAX_LISTED]])


@dg.asset_check(
    asset=gladly_export_jobs,
    blocking=True,
    description="The archived org-wide Gladly exports (API jobs, and landing exports with a window) cover "
    "the whole window, with their files on disk. A gap needs a person: ask Gladly Support for a "
    "one-time export of it and drop it in the landing folder.",
)
def export_coverage(context: dg.AssetCheckExecutionContext, storage: MigrationStorage) -> dg.AssetCheckResult:
    start, end = run_window(context)
    jobs = ExportArchive(storage.root).jobs_overlapping(start, end)
    # as the asset counts coverage: a one-conversation or one-customer export never proves a day complete
    whole = [j for j in jobs if j.layout not in PARTIAL_LAYOUTS]
    files_gone = {j.job_id: [n for n in sorted(j.files) if not j.file_path(n).exists()] for j in whole}
    covering = [j for j in whole if not files_gone[j.job_id]]
    gaps = coverage_gaps([(j.start_at, j.end_at) for j in covering], start, end)
    uncovered = [_span(a, b) for a, b in gaps]
    gone = [{"job_id": job_id, "files_missing": names} for job_id, names in files_gone.items() if names]
    if gaps:
        description = (
            f"No archived Gladly export covers {', '.join(uncovered[:10])}"
            + (f" ({len(gone)} archived jobs have files missing on disk)" if gone else "")
            + ". Gladly keeps export jobs for 14 days only: ask Gladly Support for a one-time export of that window, "
            f"or drop its files (ZIP or JSONL) in {storage.landing_dir}, then materialize the partition again."
        )
    else:
        description = f"{len(covering)} archived exports cover {_span(start, end)}"
    return dg.AssetCheckResult(
        passed=not gaps,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "uncovered": dg.MetadataValue.json(uncovered[:MAX_LISTED]),
            "covering_jobs": dg.MetadataValue.json([
                {"job_id": j.job_id, "window": _span(j.start_at, j.end_at), "from": j.origin or j.source}
                for j in covering[:MAX_LISTED]
            ]),
            "jobs_with_files_missing": dg.MetadataValue.json(gone[:MAX_LISTED]),
            "partial_exports_not_counted": dg.MetadataValue.int(len(jobs) - len(whole)),
        },
    )


@dg.asset_check(
    asset=key("staged_conversation_items"),
    blocking=True,
    description="Lines of the window's export files (items, customers, agents, topics) quarantined at staging "
    f"and not accepted in {ACCEPTED_LOSSES_FILE}: a warning while they stay within {QUARANTINE_RATE_ENV} "
    f"(now {MAX_QUARANTINE_RATE:.2%} of the lines), an error that stops the run past it.",
)
def quarantine_rate(
    context: dg.AssetCheckExecutionContext, storage: MigrationStorage, staging: StagingResource
) -> dg.AssetCheckResult:
    start, end = run_window(context)
    jobs = ExportArchive(storage.root).jobs_overlapping(start, end)
    with staging.database(NAME) as db:
        quarantined = quarantined_lines(db, [j.job_id for j in jobs])
    # a reviewer's sign-off (the file the reconciliation reads): accepted lines are not counted
    accepted = load_accepted_losses(storage.root / ACCEPTED_LOSSES_FILE)
    lines = sum(f["lines"] for j in jobs for n, f in j.files.items() if n in EXPORT_FILE_NAMES)
    return quarantine_rate_result(quarantined, lines, accepted, MAX_QUARANTINE_RATE, f"the window's {len(jobs)} export jobs")


@dg.asset_check(
    asset=split_tickets,
    blocking=True,
    description="Every staged item of the window is in exactly one ticket after splitting "
    "(dbt_like_sql/rpt_items_not_in_tickets.sql); nothing unsplit reaches the load.",
)
def items_all_in_tickets(context: dg.AssetCheckExecutionContext, staging: StagingResource) -> dg.AssetCheckResult:
    start, end = run_window(context)
    lo, hi = utc_text(start), utc_text(end)
    with staging.database(NAME) as db:
        unsplit = run_model(db, "rpt_items_not_in_tickets", lo=lo, hi=hi)
        staged = db.count(conversation_items, sa.and_(conversation_items.c.ts >= lo, conversation_items.c.ts < hi))
    if unsplit:
        named = ", ".join(f"{u['item_id']} ({u['reason']})" for u in unsplit[:5])
        description = (f"{len(unsplit)} of {staged} staged items of the window are not in exactly one ticket: {named}"
                       f"{' ...' if len(unsplit) > 5 else ''}; materialize split_tickets for the window again")
    else:
        description = f"all {staged} staged items of the window are in exactly one ticket"
    return dg.AssetCheckResult(
        passed=not unsplit,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "staged_items": dg.MetadataValue.int(staged),
            "not_in_one_ticket": dg.MetadataValue.int(len(unsplit)),
            "items": _listed(unsplit, ("item_id", "ts", "conversation_id", "customer_id", "ticket_id", "reason")),
        },
    )


@dg.asset_check(
    asset=unthread_loaded_records,
    description="No write Unthread refused is still open for the window (ledger rows `failed` of its tickets and "
    "customers: dead letters, dbt_like_sql/rpt_dead_letters.sql). A warning: the next run retries each, and "
    "reconciliation_report is the gate that names the items they hold back. no_writes_refused reports this "
    "run's refusals; this, every refusal of the window still open.",
)
def dead_letters(
    context: dg.AssetCheckExecutionContext, staging: StagingResource, unthread: UnthreadResource
) -> dg.AssetCheckResult:
    start, end = run_window(context)
    lo, hi = utc_text(start), utc_text(end)
    with staging.database(NAME) as db:
        tickets = run_model(db, "rpt_ticket_sizes", lo=lo, hi=hi)
        failed = run_model(db, "rpt_dead_letters")
    # the window's refusals as the reconciliation counts them (its customers: their one in single mode)
    single = unthread.customer_mode == "single"
    customers = {ledger_keys.SINGLE_CUSTOMER_ID} if single else {t["customer_id"] for t in tickets}
    letters = window_dead_letters(failed, {t["ticket_id"] for t in tickets}, customers)
    by_reason = Counter(dead_letter_reason(d["reason"]) for d in letters)
    if letters:
        reasons = "; ".join(f"{reason} ({n})" for reason, n in by_reason.most_common(3))
        description = (f"{len(letters)} writes refused by Unthread are still open for the window (the next run "
                       f"retries each; fix the cause first): {reasons}")
    else:
        description = "no refused write open for the window"
    return dg.AssetCheckResult(
        passed=not letters,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "open_dead_letters": dg.MetadataValue.int(len(letters)),
            "by_reason": dg.MetadataValue.json(dict(by_reason.most_common())),
            "dead_letters": _listed(letters, ("source_key", "entity_type", "parent_key", "attempts", "reason", "updated_at")),
        },
    )


def fresh_partition_keys(now: datetime) -> list[str]:
    """Daily partition keys, newest first, whose window ended at most MAX_PARTITION_LAG before `now`."""
    day = _midnight(now) - timedelta(days=1)
    keys = []
    while day + timedelta(days=1) >= now - MAX_PARTITION_LAG:
        keys.append(f"{day:%Y-%m-%d}")
        day -= timedelta(days=1)
    return keys


def _freshness_result(instance: dg.DagsterInstance, asset_key: dg.AssetKey, now: datetime) -> dg.AssetCheckResult:
    # Materializations only: a dry or sample run of the load records observations, it loads no day.
    due = fresh_partition_keys(now)
    newest = max(instance.get_materialized_partitions(asset_key), default=None)
    fresh = newest is not None and newest >= due[-1]
    if fresh:
        description = f"partition {newest} is materialized (each day is due {MAX_LAG_TEXT} after it ends)"
    else:
        seen = f"the newest materialized is {newest}" if newest else "no partition is materialized yet"
        description = (f"the delta syncs are behind: partition {due[-1]} or newer should be materialized by now, "
                       f"{seen}; turn on the daily_delta_sync schedule or the new_gladly_export_jobs sensor, "
                       "or materialize the missing days")
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=FRESHNESS_CHECK,
        passed=fresh,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "expected_partition": dg.MetadataValue.text(due[-1]),
            "newest_partition": dg.MetadataValue.text(newest or ""),
            "max_lag_hours": dg.MetadataValue.float(MAX_PARTITION_LAG.total_seconds() / 3600),
        },
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            FRESHNESS_CHECK,
            asset=asset,
            description=f"Before cutover the delta syncs keep up: a partition whose day ended at most "
            f"{MAX_LAG_TEXT} ago is materialized (dry and sample runs materialize nothing). freshness_sensor "
            "runs it when nothing is materialized.",
        )
        for asset in FRESHNESS_ASSETS
    ],
    can_subset=True,
)
def newest_partition_fresh(context: dg.AssetCheckExecutionContext):
    now = datetime.now(UTC)
    for check_key in context.selected_asset_check_keys:
        yield _freshness_result(context.instance, check_key.asset_key, now)


@dg.sensor(
    target=dg.AssetSelection.checks(newest_partition_fresh),
    minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Runs newest_partition_fresh every hour, so a stopped delta sync shows up even when nothing "
    "is materialized (every materialization of the staged and loaded assets runs it too).",
)
def freshness_sensor():
    hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")
    return dg.RunRequest(run_key=f"freshness:{hour}", asset_check_keys=list(newest_partition_fresh.check_keys))


PIPELINE_CHECKS = [export_coverage, quarantine_rate, items_all_in_tickets, dead_letters, newest_partition_fresh]
