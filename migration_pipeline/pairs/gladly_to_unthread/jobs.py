"""Jobs for the review before cutover: sample run, dry run, rollback (launch them from the UI).

The sample and dry runs record observations of unthread_loaded_records, never a materialization
(so no day looks loaded and a backfill of missing days still loads it), and every run of them
carries its mode in the `migration/mode` run tag."""

from typing import Optional

import dagster as dg
from pydantic import Field

from migration_pipeline.pairs.gladly_to_unthread.assets.loaded_records import unthread_loaded_records
from migration_pipeline.pairs.spec import DRY_RUN, MODE_TAG, SAMPLE
from migration_pipeline.pairs.gladly_to_unthread.assets.preflight import unthread_preflight
from migration_pipeline.pairs.gladly_to_unthread.assets.tickets import split_tickets
from migration_pipeline.lib.staging.db import utc_text
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.vendors.unthread.resources import UnthreadResource
from migration_pipeline.vendors.unthread.rollback import execute_rollback, plan_rollback
from migration_pipeline.pairs.gladly_to_unthread.pair import NAME

# Without the load's checks (no_writes_refused, dead_letters, freshness): a review run materializes
# no load to check. The split's check (every item in a ticket) still runs: that cut is real.
_LOAD_STEPS = dg.AssetSelection.assets(
    split_tickets, unthread_preflight, unthread_loaded_records
) - dg.AssetSelection.checks_for_assets(unthread_loaded_records)
# Run config names ops: an op made by @asset is named after its key (`gladly_to_unthread__<asset>`)
PREFLIGHT_OP, LOAD_OP = unthread_preflight.op.name, unthread_loaded_records.op.name

sample_migration = dg.define_asset_job(
    "sample_migration",
    selection=_LOAD_STEPS,
    config={"ops": {LOAD_OP: {"config": {"sample_customers": 10}}}},
    tags={MODE_TAG: SAMPLE},
    description="The N messiest customers (default 10; edit sample_customers in the launchpad) split, loaded into "
    "the configured Unthread workspace and read back, for the mapping review before the full run. Wipe it "
    "with the rollback job (sample: true) or `migration-pipeline rollback --sample --yes`.",
)

dry_run_migration = dg.define_asset_job(
    "dry_run_migration",
    selection=_LOAD_STEPS,
    config={
        "ops": {
            PREFLIGHT_OP: {"config": {"offline": True}},
            LOAD_OP: {"config": {"dry_run": True}},
        }
    },
    tags={MODE_TAG: DRY_RUN},
    description="Every Unthread payload of the selected days built exactly as a real run would and written to "
    "MIGRATION_DATA_DIR/dry-run/<run id>/*.jsonl; nothing is sent and the ledger is not touched.",
)


class RollbackConfig(dg.Config):
    run_id: Optional[str] = Field(default=None, description="Roll back what this run created (ledger run id)")
    range_start: Optional[str] = Field(default=None, description="First UTC day (YYYY-MM-DD) of a range to roll back")
    range_end: Optional[str] = Field(default=None, description="Last UTC day (inclusive) of the range")
    sample: bool = Field(default=False, description="Roll back every sample run")
    execute: bool = Field(default=False, description="False: only list what would be deleted; True: delete it")


@dg.op(pool="unthread_api")
def rollback_from_ledger(
    context: dg.OpExecutionContext, config: RollbackConfig, staging: StagingResource, unthread: UnthreadResource
) -> dg.Output:
    """Delete from Unthread what a run, a day range or the sample runs created (conversations
    with their messages, then customers nothing else uses), driven by the ledger, and mark the
    ledger rows rolled_back so a later run recreates them. Lists only, unless `execute`."""
    window = None
    if config.range_start:
        from datetime import datetime, timedelta

        start = datetime.fromisoformat(config.range_start + "T00:00:00+00:00")
        end = datetime.fromisoformat((config.range_end or config.range_start) + "T00:00:00+00:00") + timedelta(days=1)
        window = (utc_text(start), utc_text(end))
    with staging.database(NAME) as db:
        plan = plan_rollback(db, run_id=config.run_id, window=window, sample=config.sample)
        context.log.info(plan.render())
        metadata = {
            "conversations": dg.MetadataValue.int(len(plan.conversations)),
            "customers_considered": dg.MetadataValue.int(len(plan.customers)),
            "plan": dg.MetadataValue.md("```\n" + plan.render() + "```"),
        }
        if config.execute and not plan.empty:
            with unthread.client() as client:
                result = execute_rollback(db, client, plan, lease_ttl_seconds=unthread.lease_ttl_seconds)
            context.log.info(result.render())
            metadata.update(
                conversations_deleted=dg.MetadataValue.int(result.conversations_deleted),
                customers_deleted=dg.MetadataValue.int(result.customers_deleted),
                ledger_rows_rolled_back=dg.MetadataValue.int(result.ledger_rows_rolled_back),
            )
    return dg.Output(None, metadata=metadata)


@dg.job(description="Roll back a run, a day range or the sample runs from Unthread (lists only unless execute: true)")
def rollback_unthread():
    rollback_from_ledger()
