"""Stage 5: source reconciled against the target, with blocking checks."""

import json
import time

import dagster as dg
from pydantic import Field

from migration_pipeline.checks.reconciliation import Reconciliation, reconcile
from migration_pipeline.partitions import daily_partitions
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.sources.gladly.archive import ExportArchive
from migration_pipeline.staging.resources import StagingResource
from migration_pipeline.targets.unthread.resources import UnthreadResource

VARIANCE_CHECK = "variance_within_tolerance"
ORDER_CHECK = "messages_in_source_order"
DUPLICATE_CHECK = "no_duplicate_messages"


class ReconciliationConfig(dg.Config):
    max_variance: float = Field(default=0.001, description="Largest tolerated share of source items missing")


@dg.asset(
    deps=["unthread_loaded_records"],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="reconcile",
    kinds={"unthread", "sql"},
    pool="unthread_api",
    check_specs=[
        dg.AssetCheckSpec(VARIANCE_CHECK, asset="reconciliation_report", blocking=True,
                          description="Source items missing from Unthread on readback stay within max_variance (0.1%)"),
        dg.AssetCheckSpec(ORDER_CHECK, asset="reconciliation_report", blocking=True,
                          description="Every loaded conversation's messages are in source order"),
        dg.AssetCheckSpec(DUPLICATE_CHECK, asset="reconciliation_report", blocking=True,
                          description="No source item appears in Unthread more than once"),
    ],
)
def reconciliation_report(
    context: dg.AssetExecutionContext,
    config: ReconciliationConfig,
    storage: MigrationStorage,
    staging: StagingResource,
    unthread: UnthreadResource,
):
    """Counts of source items (re-read from the archived export files), staged, quarantined, in
    tickets, loaded and read back from Unthread, per day; the variance; and every missing item
    with the stage where it stopped and why. Written to MIGRATION_DATA_DIR/reports/ as JSON and
    markdown."""
    started = time.monotonic()
    window = context.partition_time_window
    jobs = ExportArchive(storage.root).jobs_overlapping(window.start, window.end)
    with staging.database() as db, unthread.client() as client:
        rec = reconcile(db, client, jobs, window.start, window.end)
        calls = client.stats.as_dict()
    reports = storage.root / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    stem = f"reconciliation-{window.start:%Y-%m-%d}_{window.end:%Y-%m-%d}"
    (reports / f"{stem}.json").write_text(json.dumps(rec.as_dict(), indent=1, default=str), encoding="utf-8")
    summary = render_markdown(rec)
    (reports / f"{stem}.md").write_text(summary, encoding="utf-8")
    context.log.info(summary.splitlines()[2] if len(summary.splitlines()) > 2 else summary)

    yield dg.MaterializeResult(
        metadata={
            "source_items": dg.MetadataValue.int(rec.source_items),
            "staged": dg.MetadataValue.int(rec.staged),
            "quarantined_lines": dg.MetadataValue.int(rec.quarantined_lines),
            "in_tickets": dg.MetadataValue.int(rec.in_tickets),
            "loaded": dg.MetadataValue.int(rec.loaded),
            "read_back": dg.MetadataValue.int(rec.read_back),
            "missing": dg.MetadataValue.int(len(rec.missing)),
            "dead_letters": dg.MetadataValue.int(len(rec.dead_letters)),
            "variance": dg.MetadataValue.float(rec.variance),
            "api_calls": dg.MetadataValue.int(calls["requests"]),
            "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
            "report": dg.MetadataValue.path(str(reports / f"{stem}.md")),
            "summary": dg.MetadataValue.md(summary),
        }
    )
    yield dg.AssetCheckResult(
        check_name=VARIANCE_CHECK,
        passed=rec.variance <= config.max_variance,
        metadata={
            "variance": dg.MetadataValue.float(rec.variance),
            "missing": dg.MetadataValue.int(len(rec.missing)),
            "missing_by_stage": dg.MetadataValue.json(dict(rec.missing_by_stage)),
        },
    )
    yield dg.AssetCheckResult(
        check_name=ORDER_CHECK,
        passed=not rec.out_of_order,
        metadata={
            "conversations_checked": dg.MetadataValue.int(rec.conversations_checked),
            "out_of_order": dg.MetadataValue.json(rec.out_of_order[:50]),
        },
    )
    yield dg.AssetCheckResult(
        check_name=DUPLICATE_CHECK,
        passed=not rec.duplicates,
        metadata={"duplicates": dg.MetadataValue.int(len(rec.duplicates)),
                  "examples": dg.MetadataValue.json(rec.duplicates[:50])},
    )


def render_markdown(rec: Reconciliation) -> str:
    lines = [
        f"# Reconciliation {rec.window[0][:10]} .. {rec.window[1][:10]} (UTC, end exclusive)",
        "",
        f"source {rec.source_items} · staged {rec.staged} · quarantined lines {rec.quarantined_lines} · "
        f"in tickets {rec.in_tickets} · loaded {rec.loaded} · read back {rec.read_back} · "
        f"variance {rec.variance:.4%} · conversations checked {rec.conversations_checked} · "
        f"out of order {len(rec.out_of_order)} · duplicates {len(rec.duplicates)}",
        "",
        "| day | staged | in tickets | loaded |",
        "|---|---|---|---|",
        *[f"| {d['day']} | {d['staged']} | {d['in_tickets']} | {d['loaded']} |" for d in rec.by_day],
    ]
    if rec.quarantine_reasons:
        lines += ["", "## Quarantined lines", "", "| reason | lines |", "|---|---|"]
        lines += [f"| {reason} | {n} |" for reason, n in rec.quarantine_reasons.most_common()]
    if rec.dead_letters:
        lines += ["", f"## Dead letters ({len(rec.dead_letters)}): refused by the target; the next run retries them",
                  "", "| source key | attempts | reason |", "|---|---|---|"]
        lines += [f"| {d['source_key']} | {d['attempts']} | {d['reason']} |" for d in rec.dead_letters[:200]]
    if rec.missing:
        lines += ["", f"## Missing from Unthread ({len(rec.missing)})", "", "| item | stage | reason |", "|---|---|---|"]
        lines += [f"| {m['item_id']} | {m['stage']} | {m['reason']} |" for m in rec.missing[:200]]
    return "\n".join(lines) + "\n"
