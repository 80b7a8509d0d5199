"""Optional stage 3b: the last year of history as Gladly CUSTOMER_ACTIVITY items through the API.
Written (or, in a dry run, planned) by the step `gladly_api_writes` (gladly_api_writes.py)."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import dagster as dg
from pydantic import Field

from migration_pipeline.lib.staging.db import StagingDatabase
from migration_pipeline.pairs.zendesk_to_gladly.activity_items import DEFAULT_MAX_AGE_DAYS, ActivityLoader
from migration_pipeline.pairs.zendesk_to_gladly.pair import GROUP, key
from migration_pipeline.pairs.zendesk_to_gladly.shaping import load_import_rules
from migration_pipeline.vendors.gladly.profiles import GladlyTarget

ACTIVITY = key("gladly_activity_items")
ACTIVITY_SPEC = dg.AssetSpec(
    ACTIVITY, deps=[key("gladly_customer_profiles")], group_name=GROUP, kinds={"gladly"},
    skippable=True,  # a dry run records observations, no materialization
    description="Off by default. When enabled: the window's comments of the last year that the import files "
    "would hold as rows, each posted once as a CUSTOMER_ACTIVITY on its customer's Gladly profile (`occurredAt` "
    "its time, the same title and text as its file row; ledger `activity:<id>`, a stable item id, so a resend can "
    "only be refused with 409). gladly_import_files leaves these out (skip rule `in_gladly_by_api`); older "
    "comments always go to the files.",
)


class ActivityItemsConfig(dg.Config):
    enabled: bool = Field(default=False, description="Send the window's comments of the last year as CUSTOMER_ACTIVITY items "
                          "(off: every comment goes to the import files)")
    max_age_days: int = Field(default=DEFAULT_MAX_AGE_DAYS, ge=1, le=DEFAULT_MAX_AGE_DAYS,
                              description="How recent a comment must be to go through the API (Gladly takes at most a year)")
    rules_file: str | None = Field(default=None, description="The import rules the files use (default: the packaged import_rules.yaml)")


def write_activity_items(
    context: dg.AssetExecutionContext, db: StagingDatabase, target: GladlyTarget, config: ActivityItemsConfig,
    window: tuple[datetime, datetime], profiles: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Send (or plan, over a planning target) the window's activity items when enabled; the figures.
    `profiles`: source customer id -> profile id when not only the ledger's (a dry run's plan)."""
    if not config.enabled:
        return {"enabled": False, "sent": 0}
    with ActivityLoader(db, target, context.run.run_id, max_age_days=config.max_age_days,
                        rules=load_import_rules(config.rules_file), profiles=profiles) as loader:
        in_gladly = loader.load(*window)
        counts = loader.counts.as_dict()
    for failure in counts.get("failures", [])[:50]:
        context.log.error(f"activity item not written: {failure}")
    return {
        "enabled": True,
        "in_gladly": dg.MetadataValue.int(len(in_gladly)),
        **{k: (dg.MetadataValue.json(v) if isinstance(v, dict | list) else v) for k, v in counts.items()},
    }
