"""Stage 3: every write to Gladly's API, in one step: customer profiles, then activity items.

One step for both (a multi-asset, either may be selected alone) so that a dry run can plan both:
a dry run records no materialization, and Dagster skips every step downstream of an asset step
that yields none, so the activity items could not be planned in a step of their own after the
profiles. Run config (launchpad `ops: zendesk_to_gladly__gladly_api_writes: config:`): `enabled`, `max_age_days`,
`rules_file` for the activity items, and `dry_run`.
"""

from contextlib import ExitStack
from typing import Any

import dagster as dg
from pydantic import Field

from migration_pipeline.pairs.day_figures import range_metadata
from migration_pipeline.pairs.spec import DRY_RUN, FULL, log_mode
from migration_pipeline.pairs.zendesk_to_gladly.assets.activity_items import ACTIVITY, ACTIVITY_SPEC, ActivityItemsConfig, write_activity_items
from migration_pipeline.pairs.zendesk_to_gladly.assets.profiles import PROFILES, PROFILES_SPEC, write_profiles
from migration_pipeline.pairs.zendesk_to_gladly.pair import NAME
from migration_pipeline.partitions import daily_partitions
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.gladly.plan import ACTIVITY_ITEMS, PROFILES as PROFILE_WRITES, PlanningTarget, WritePlan
from migration_pipeline.vendors.gladly.profile_load import profile_index
from migration_pipeline.vendors.gladly.profiles import GladlyTarget
from migration_pipeline.vendors.gladly.resources import GladlyResource

# A dry run's observations name what a real run would do with what it did.
DRY_RUN_NAMES = {"created": "would_create", "matched_existing": "would_match_existing", "updated": "would_update",
                 "sent": "would_create"}


class GladlyWritesConfig(ActivityItemsConfig):
    dry_run: bool = Field(
        default=False,
        description="Plan instead of write: every POST/PATCH a real run would send goes to "
        "MIGRATION_DATA_DIR/dry-run/<run id>/profiles.jsonl and activity_items.jsonl (reads, e.g. lookups by email, "
        "are sent); the ledger and leases are untouched, and the days are observed, not materialized",
    )


@dg.multi_asset(
    name=f"{NAME}__gladly_api_writes",  # the pair's op-name convention (`<pair>__<step>`): unique across pairs
    specs=[PROFILES_SPEC, ACTIVITY_SPEC],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="gladly_api",
    can_subset=True,
)
def gladly_api_writes(
    context: dg.AssetExecutionContext,
    config: GladlyWritesConfig,
    gladly: GladlyResource,
    staging: StagingResource,
    storage: MigrationStorage,
):
    """The run's writes to Gladly's API: the profiles of the window's persons (materialized as
    soon as they are written), then, when enabled, the activity items. With `dry_run` nothing is
    written: the same code plans it over a planning target (vendors/gladly/plan.py), the plan goes
    to MIGRATION_DATA_DIR/dry-run/<run id>/, and each day of each asset gets an observation with
    the figures a real run would have (would_create, would_match_existing ...), no materialization."""
    window = context.partition_time_window
    span = (window.start, window.end)
    selected = context.selected_asset_keys
    log_mode(context, "Gladly writes mode", DRY_RUN if config.dry_run else FULL, "config dry_run",
             "nothing is materialized")
    with ExitStack() as stack:
        db = stack.enter_context(staging.database(NAME))
        client = stack.enter_context(gladly.client())
        plan = stack.enter_context(WritePlan(storage.root / "dry-run" / context.run.run_id)) if config.dry_run else None
        target = PlanningTarget(client, plan) if plan is not None else GladlyTarget(client)
        profiles = None
        if PROFILES in selected:
            figures, resolved = write_profiles(context, db, target, span)
            # a dry run's activity items go to the profiles it planned, as the real run's would
            profiles = {**profile_index(db), **resolved} if plan is not None else None
            yield from record(context, PROFILES, figures, plan, PROFILE_WRITES)
        if ACTIVITY in selected:
            figures = write_activity_items(context, db, target, config, span, profiles)
            yield from record(context, ACTIVITY, figures, plan, ACTIVITY_ITEMS)
    if plan is not None:
        context.log.info(f"dry run: nothing was sent to Gladly; the plan is in {plan.out_dir}")


def record(context: dg.AssetExecutionContext, asset_key: dg.AssetKey, figures: dict[str, Any],
           plan: WritePlan | None, kind: str):
    """A real run's materialization of `asset_key`; in a dry run, an observation of each day instead."""
    if plan is None:
        yield dg.MaterializeResult(asset_key=asset_key, metadata={**range_metadata(context.partition_keys, {}), **figures})
        return
    observed = {
        **range_metadata(context.partition_keys, {}),
        "mode": DRY_RUN,
        **{DRY_RUN_NAMES.get(name, name): value for name, value in figures.items()},
        "planned_writes": dg.MetadataValue.int(plan.planned(kind)),
        "plan_file": dg.MetadataValue.path(str(plan.path(kind))),
    }
    for day in context.partition_keys:
        context.log_event(dg.AssetObservation(asset_key=asset_key, partition=day, metadata=observed))

