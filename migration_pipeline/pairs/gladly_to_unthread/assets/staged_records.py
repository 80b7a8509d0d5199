"""Stage 2: archived Gladly export files streamed into the staging database as canonical rows."""

import time

import dagster as dg

from migration_pipeline.pairs.day_figures import range_metadata, record_counts_by_day
from migration_pipeline.pairs.gladly_to_unthread.assets.export_jobs import gladly_export_jobs
from migration_pipeline.partitions import daily_partitions
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.gladly.archive import ExportArchive
from migration_pipeline.vendors.gladly.customers import customer_ids_needing_lookup, resolve_customers
from migration_pipeline.vendors.gladly.resources import GladlyResource
from migration_pipeline.vendors.gladly.staging import StageCounts, stage_job_file
from migration_pipeline.lib.staging.by_day import rows_by_day
from migration_pipeline.lib.staging.db import agents, conversation_items, utc_text
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.pairs.gladly_to_unthread.pair import GROUP, NAME, key

STAGED_KEYS = ("staged_customers", "staged_agents", "staged_topics", "staged_conversation_items")
_DESCRIPTIONS = {
    "staged_customers": "Gladly customers (export lines + REST profile facts: merges, custom attributes), "
    "one row per source id, with the surviving id for merged profiles.",
    "staged_agents": "Gladly agents from the export snapshots, flagged active when GET /agents still lists them.",
    "staged_topics": "Gladly topics (hierarchical through parentId, disabled ones kept).",
    "staged_conversation_items": "Every Gladly conversation item whose timestamp falls in the partition, "
    "one row per item id, with the job, file and line it came from.",
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(key(name), deps=[gladly_export_jobs], description=_DESCRIPTIONS[name], group_name=GROUP, kinds={"sql"})
        for name in STAGED_KEYS
    ],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="gladly_api",
)
def staged_gladly_records(
    context: dg.AssetExecutionContext, gladly: GladlyResource, storage: MigrationStorage, staging: StagingResource
):
    """Stream every archived export job overlapping the partition into staging (upsert by source
    id; items selected by timestamp into the window), quarantine bad lines with their reason, and
    resolve merged profiles and custom attributes over REST for customers never looked up before.
    Each day's staged_conversation_items materialization counts the items of that day in staging
    (`figures` says which numbers are the day's)."""
    started = time.monotonic()
    window = context.partition_time_window
    jobs = ExportArchive(storage.root).jobs_overlapping(window.start, window.end)
    totals = {name: StageCounts() for name in ("customers.jsonl", "agents.jsonl", "topics.jsonl", "conversation_items.jsonl")}
    with staging.database(NAME) as db:
        for job in jobs:
            for name in sorted(job.files):
                if name in totals:
                    totals[name].add(stage_job_file(db, job, name, (window.start, window.end)))
        items = totals["conversation_items.jsonl"]
        context.log.info(
            f"{len(jobs)} jobs: {items.staged} items staged, {items.quarantined} quarantined, "
            f"{items.skipped_outside_window} outside the window"
        )
        with gladly.client() as client:
            lo, hi = utc_text(window.start), utc_text(window.end)
            pending = customer_ids_needing_lookup(db, lo, hi)
            context.log.info(f"looking up {len(pending)} customers not seen before over REST")
            resolved = resolve_customers(db, client, pending)
            for unusable in resolved.unusable:
                context.log.warning(f"customer profile from Gladly's REST API not staged (kept as unusable): {unusable}")
            active = {a.id for a in client.list_agents()}
            with db.begin() as conn:
                conn.execute(agents.update().values(active=agents.c.source_id.in_(active)))
            calls = client.stats.as_dict()
        items_by_day = rows_by_day(db, conversation_items.c.ts, lo, hi)

    items_metadata = record_counts_by_day(context, {"items": items_by_day}, asset_key=key("staged_conversation_items"))
    duration = round(time.monotonic() - started, 3)
    common = {"jobs": dg.MetadataValue.int(len(jobs)), "duration_s": dg.MetadataValue.float(duration)}
    for name, file_name in zip(STAGED_KEYS, ("customers.jsonl", "agents.jsonl", "topics.jsonl", "conversation_items.jsonl")):
        counts = totals[file_name]
        metadata = {
            **common,
            **(items_metadata if name == "staged_conversation_items" else range_metadata(context.partition_keys, {})),
            "rows": dg.MetadataValue.int(counts.staged),
            "lines": dg.MetadataValue.int(counts.lines),
            "quarantined": dg.MetadataValue.int(counts.quarantined),
        }
        if name == "staged_customers":
            metadata |= {
                "rest_lookups": dg.MetadataValue.int(resolved.looked_up),
                "merged_profiles": dg.MetadataValue.int(resolved.merged),
                "not_found": dg.MetadataValue.int(resolved.not_found),
                "rest_answers_unusable": dg.MetadataValue.json(resolved.unusable[:100]),
                "api_calls": dg.MetadataValue.int(calls["requests"]),
            }
        if name == "staged_conversation_items":
            metadata["outside_window"] = dg.MetadataValue.int(counts.skipped_outside_window)
        yield dg.MaterializeResult(asset_key=key(name), metadata=metadata)

