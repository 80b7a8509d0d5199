"""Stage 4: tickets loaded into Unthread, every created object recorded in the ledger."""

import time

import dagster as dg

from migration_pipeline.partitions import daily_partitions
from migration_pipeline.sources.gladly.resources import GladlyResource
from migration_pipeline.staging.db import utc_text
from migration_pipeline.staging.resources import StagingResource
from migration_pipeline.targets.unthread.loader import LoadSettings, UnthreadLoader, tickets_touching
from migration_pipeline.targets.unthread.resources import UnthreadResource


@dg.asset(
    deps=["split_tickets"],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="load",
    kinds={"unthread"},
    pool="unthread_api",
)
def unthread_loaded_records(
    context: dg.AssetExecutionContext, unthread: UnthreadResource, gladly: GladlyResource, staging: StagingResource
) -> dg.MaterializeResult:
    """The ledger of what is in Unthread: one row per Gladly customer, ticket, item and final
    status, each with its Unthread id. Tickets touching the partition are loaded oldest first:
    conversation (first item as its initial message, `onBehalfOf` the author), the other items
    as messages in source order, then the final status. Re-running finds everything in the
    ledger and sends nothing; an interrupted create is looked up on Unthread before re-sending."""
    started = time.monotonic()
    window = context.partition_time_window
    settings = LoadSettings(
        triage_channel_id=unthread.triage_channel_id,
        placeholder_user_id=unthread.placeholder_user_id,
        customer_mode=unthread.customer_mode,
        create_attempts=unthread.max_attempts,
        create_backoff_seconds=unthread.backoff_initial_seconds,
        lease_ttl_seconds=unthread.lease_ttl_seconds,
        max_file_bytes=unthread.max_file_bytes,
        run_id=context.run.run_id,
    )
    with staging.database() as db, unthread.client() as client, gladly.client() as source:
        ticket_ids = tickets_touching(db, utc_text(window.start), utc_text(window.end))
        context.log.info(f"{len(ticket_ids)} tickets touch {window.start:%Y-%m-%d}..{window.end:%Y-%m-%d}")
        loader = UnthreadLoader(db, client, settings, fetch_attachment=source.download_attachment)
        counts = loader.load_tickets(ticket_ids, window.end)
        calls = client.stats.as_dict()
    for error in counts.errors[:50]:
        context.log.error(error)
    return dg.MaterializeResult(
        metadata={
            "tickets": dg.MetadataValue.int(len(ticket_ids)),
            "customers_created": dg.MetadataValue.int(counts.customers_created),
            "conversations_created": dg.MetadataValue.int(counts.conversations_created),
            "messages_created": dg.MetadataValue.int(counts.messages_created),
            "statuses_patched": dg.MetadataValue.int(counts.statuses_patched),
            "recovered_from_ledger_intents": dg.MetadataValue.int(counts.recovered),
            "waited_for_another_run": dg.MetadataValue.int(counts.waited_for_lease),
            "failed": dg.MetadataValue.int(counts.failed),
            "tickets_blocked": dg.MetadataValue.int(counts.tickets_blocked),
            "unmatched_agents": dg.MetadataValue.int(len(counts.unmatched_agents)),
            "attachments_uploaded": dg.MetadataValue.int(counts.attachments_uploaded),
            "attachment_bytes": dg.MetadataValue.int(counts.attachment_bytes),
            "attachments_over_limit": dg.MetadataValue.int(counts.attachments_oversize),
            "api_calls": dg.MetadataValue.int(calls["requests"]),
            "api_retries": dg.MetadataValue.int(calls["retries"]),
            "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
        }
    )
