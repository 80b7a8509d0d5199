"""Stage 3: Gladly's lifelong conversations cut into tickets."""

import time
from datetime import timedelta

import dagster as dg
from pydantic import Field

from migration_pipeline.core.splitting import RULE_VERSION
from migration_pipeline.partitions import daily_partitions
from migration_pipeline.staging.db import utc_text
from migration_pipeline.staging.resources import StagingResource
from migration_pipeline.staging.tickets import split_window


class SplitConfig(dg.Config):
    gap_days: float = Field(default=7.0, description="Silence longer than this starts a new ticket")


@dg.asset(
    deps=["staged_conversation_items", "staged_customers"],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="transform",
    kinds={"sql"},
)
def split_tickets(context: dg.AssetExecutionContext, config: SplitConfig, staging: StagingResource) -> dg.MaterializeResult:
    """Tickets cut from each Gladly conversation by the time-gap rule (ties broken by item id),
    with every item's ticket. Stable: tickets already cut are never re-cut; a new item joins the
    ticket whose span covers it, the ticket it continues, or starts a new one."""
    started = time.monotonic()
    window = context.partition_time_window
    with staging.database() as db:
        # One splitter at a time: a second run of the same range waits, then finds nothing to cut.
        owner = f"{context.run.run_id}:split"
        while not db.try_lease("split_tickets", owner, ttl_seconds=600):
            time.sleep(0.2)
        try:
            counts = split_window(db, utc_text(window.start), utc_text(window.end), timedelta(days=config.gap_days))
        finally:
            db.release_lease("split_tickets", owner)
    context.log.info(
        f"{counts.items_assigned} items into tickets: {counts.tickets_created} new, {counts.tickets_extended} extended"
    )
    return dg.MaterializeResult(
        metadata={
            "items_assigned": dg.MetadataValue.int(counts.items_assigned),
            "tickets_created": dg.MetadataValue.int(counts.tickets_created),
            "tickets_extended": dg.MetadataValue.int(counts.tickets_extended),
            "conversations": dg.MetadataValue.int(counts.conversations),
            "rule_version": dg.MetadataValue.text(RULE_VERSION),
            "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
        }
    )
