"""Optional stage 3b: the last year of history as Gladly CUSTOMER_ACTIVITY items through the API."""

import dagster as dg
from pydantic import Field

from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.pairs.day_figures import range_metadata
from migration_pipeline.pairs.zendesk_to_gladly.activity_items import DEFAULT_MAX_AGE_DAYS, ActivityLoader
from migration_pipeline.pairs.zendesk_to_gladly.pair import NAME, stage
from migration_pipeline.pairs.zendesk_to_gladly.shaping import load_import_rules
from migration_pipeline.vendors.gladly.profiles import GladlyTarget
from migration_pipeline.vendors.gladly.resources import GladlyResource


class ActivityItemsConfig(dg.Config):
    enabled: bool = Field(default=False, description="Send the window's comments of the last year as CUSTOMER_ACTIVITY items "
                          "(off: every comment goes to the import files)")
    max_age_days: int = Field(default=DEFAULT_MAX_AGE_DAYS, ge=1, le=DEFAULT_MAX_AGE_DAYS,
                              description="How recent a comment must be to go through the API (Gladly takes at most a year)")
    rules_file: str | None = Field(default=None, description="The import rules the files use (default: the packaged import_rules.yaml)")


@stage("gladly_activity_items", deps=["gladly_customer_profiles"], kinds={"gladly"}, pool="gladly_api")
def gladly_activity_items(
    context: dg.AssetExecutionContext, config: ActivityItemsConfig, gladly: GladlyResource, staging: StagingResource
) -> dg.MaterializeResult:
    """Off by default. When enabled: the window's comments of the last year that the import files
    would hold as rows, each posted once as a CUSTOMER_ACTIVITY on its customer's Gladly profile
    (`occurredAt` its time, the same title and text as its file row; ledger `activity:<id>`, a
    stable item id, so a resend can only be refused with 409). gladly_import_files leaves these out
    (skip rule `in_gladly_by_api`); older comments always go to the files."""
    if not config.enabled:
        return dg.MaterializeResult(metadata={**range_metadata(context.partition_keys, {}), "enabled": False, "sent": 0})
    window = context.partition_time_window
    with staging.database(NAME) as db, gladly.client() as client:
        with ActivityLoader(db, GladlyTarget(client), context.run.run_id, max_age_days=config.max_age_days,
                            rules=load_import_rules(config.rules_file)) as loader:
            in_gladly = loader.load(window.start, window.end)
            counts = loader.counts.as_dict()
    for failure in counts.get("failures", [])[:50]:
        context.log.error(f"activity item not written: {failure}")
    return dg.MaterializeResult(metadata={
        **range_metadata(context.partition_keys, {}),
        "enabled": True,
        "in_gladly": dg.MetadataValue.int(len(in_gladly)),
        **{k: (dg.MetadataValue.json(v) if isinstance(v, dict | list) else v) for k, v in counts.items()},
    })
