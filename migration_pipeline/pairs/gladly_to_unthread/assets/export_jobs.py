"""Stage 1: Gladly export jobs archived byte for byte (the raw input of every later stage)."""

import time
from typing import Any

import dagster as dg

from migration_pipeline.pairs.day_figures import day_windows, record_by_day
from migration_pipeline.pairs.gladly_to_unthread.assets.external import gladly_export
from migration_pipeline.partitions import daily_partitions
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.gladly.archive import (
    CUSTOMER_CONVERSATIONS_LAYOUT,
    ITEMS_CSV_LAYOUT,
    TOPICS_CSV_LAYOUT,
    ArchivedJob,
    ExportArchive,
    ExportFilesGone,
    MissingExportWindow,
    UnsafeExportName,
    coverage_gaps,
)
from migration_pipeline.vendors.gladly.resources import GladlyResource
from migration_pipeline.pairs.gladly_to_unthread.pair import GROUP, NAME

# Support Tools exports of one conversation, one customer, or the topic configuration
PARTIAL_LAYOUTS = (CUSTOMER_CONVERSATIONS_LAYOUT, ITEMS_CSV_LAYOUT, TOPICS_CSV_LAYOUT)


@dg.asset(
    key_prefix=NAME,
    deps=[gladly_export],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"gladly", "file"},
    pool="gladly_api",
)
def gladly_export_jobs(
    context: dg.AssetExecutionContext, gladly: GladlyResource, storage: MigrationStorage
) -> dg.MaterializeResult:
    """Every COMPLETED Gladly export job whose data window overlaps the partition window, archived
    under MIGRATION_DATA_DIR/archive/gladly/jobs/<jobId>/ byte for byte with sha256 and line counts,
    plus every export dropped in the landing folder (ZIP, folder or loose JSONL from Gladly Support).

    Gladly deletes export files after 14 days, so each job is downloaded once, as soon as it is
    seen, and reused by every partition it covers. A landing export that cannot be used (no window,
    a link, an unsafe or bomb-like ZIP, ...) and a listed job that cannot be archived are logged
    as errors with their reason and listed in the metadata, while every other one is archived.
    Fails, naming the uncovered window and those reasons, when no job covers part of the partition.
    Each day's materialization counts the jobs covering that day (`figures` says which numbers).
    """
    started = time.monotonic()
    window = context.partition_time_window
    archive = ExportArchive(storage.root, storage.zip_limits())
    downloaded: set[str] = set()  # ids of the jobs archived now, and of those found archived already
    reused: set[str] = set()
    gone: list[object] = []  # exports that could not be used, each printable with its reason
    landing = archive.archive_from_landing(storage.landing_dir)
    for refused in landing.rejected:
        gone.append(refused)
        context.log.error(f"landing export refused, not archived: {refused}")
    for job, fresh in landing.archived:
        (downloaded if fresh else reused).add(job.job_id)
        context.log.info(f"landing export {'archived' if fresh else 'already archived'}: {job.describe()}")
    with gladly.client() as client:
        listed = [j for j in client.list_export_jobs(status="COMPLETED") if j.overlaps(window.start, window.end)]
        for job in listed:
            try:
                archived, fresh = archive.archive_from_api(client, job)
            except (ExportFilesGone, UnsafeExportName) as exc:
                # Keep archiving the others: whatever can still be saved must be, before it expires.
                gone.append(exc)
                context.log.error(str(exc))
                continue
            (downloaded if fresh else reused).add(job.id)
            context.log.info(
                f"job {job.id} [{job.parameters.start_at:%Y-%m-%d %H:%M} .. {job.parameters.end_at:%Y-%m-%d %H:%M}): "
                f"{'downloaded' if fresh else 'already archived'}, "
                f"{sum(f['lines'] for f in archived.files.values())} lines"
            )
        calls = client.stats.as_dict()

    covering = archive.jobs_overlapping(window.start, window.end)
    # A Support Tools export of one conversation or one customer holds only that: it never proves a
    # day complete, so only org-wide exports (API jobs, GET File Export, JSONL) count as coverage.
    whole_days = [j for j in covering if j.layout not in PARTIAL_LAYOUTS]
    gaps = coverage_gaps([(j.start_at, j.end_at) for j in whole_days], window.start, window.end)
    if gaps:
        missing = ", ".join(f"{a:%Y-%m-%d %H:%M}..{b:%Y-%m-%d %H:%M} UTC" for a, b in gaps)
        unusable = f" Exports that could not be used: {' | '.join(str(g) for g in gone)}." if gone else ""
        raise MissingExportWindow(
            f"No Gladly export job covers {missing}.{unusable} Gladly keeps export jobs for 14 days only: ask "
            f"Gladly Support for a one-time export of that window, or drop its files (ZIP or JSONL) "
            f"in {storage.landing_dir}, then materialize this partition again."
        )

    # a CSV is archived next to the JSONL made from it: count the lines once
    total_bytes = sum(f["bytes"] for j in covering for n, f in j.files.items() if n.endswith(".jsonl"))
    total_lines = sum(f["lines"] for j in covering for n, f in j.files.items() if n.endswith(".jsonl"))
    landed = {job.job_id for job, _ in landing.archived}
    per_day = {
        day: job_figures([j for j in covering if j.overlaps(start, end) or j.configuration], downloaded, reused, landed)
        for day, (start, end) in day_windows(context).items()
    }
    return dg.MaterializeResult(
        metadata={
            **record_by_day(context, per_day, job_figures(covering, downloaded, reused, landed)),
            "exports_unusable": dg.MetadataValue.int(len(gone)),
            "landing_refused": dg.MetadataValue.json(
                [{"source": r.source, "reason": r.reason} for r in landing.rejected]
            ),
            "bytes": dg.MetadataValue.int(total_bytes),
            "lines": dg.MetadataValue.int(total_lines),
            "api_calls": dg.MetadataValue.int(calls["requests"]),
            "api_retries": dg.MetadataValue.int(calls["retries"]),
            "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
        }
    )


def job_figures(jobs: list[ArchivedJob], downloaded: set[str], reused: set[str], landed: set[str]) -> dict[str, Any]:
    """The archived jobs covering a day (or the range): how many, which, and how many of them this
    run downloaded, found archived already, or took from the landing folder."""
    ids = [j.job_id for j in jobs]
    return {
        "jobs": len(ids),
        "job_ids": ids,
        "jobs_downloaded": len(downloaded.intersection(ids)),
        "jobs_reused": len(reused.intersection(ids)),
        "landing_exports": len(landed.intersection(ids)),
    }
