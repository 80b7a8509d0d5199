"""Before the first write to Gladly: the migration checklist (vendors/gladly/target_preflight.py)."""

import dagster as dg

from migration_pipeline.lib.markdown import md_row
from migration_pipeline.lib.staging.db import utc_text
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.pairs.day_figures import range_metadata
from migration_pipeline.pairs.zendesk_to_gladly.pair import NAME, stage
from migration_pipeline.pairs.zendesk_to_gladly.shaping import load_import_rules
from migration_pipeline.vendors.gladly.profiles import GladlyTarget
from migration_pipeline.vendors.gladly.resources import GladlyResource
from migration_pipeline.vendors.gladly.target_preflight import run_target_preflight


class TargetPreflightConfig(dg.Config):
    create_topics: bool = True  # create the Gladly topics the window's tags name (stable ids: never twice)


@stage("gladly_preflight", deps=["staged_agents", "staged_conversations", "staged_conversation_items"], kinds={"gladly"},
       pool="gladly_api")
def gladly_preflight(
    context: dg.AssetExecutionContext, config: TargetPreflightConfig, gladly: GladlyResource, staging: StagingResource
) -> dg.MaterializeResult:
    """The migration checklist before anything is written to Gladly: the token works (blocking:
    the run stops here), the agents the history names are matched to Gladly agents by email (the
    unmatched are listed), the topics for the window's tags exist or are created, and the reminder
    to keep routing and automations paused. Of the organization, not of a day: every day of a run
    gets the same findings."""
    window = context.partition_time_window
    rules = load_import_rules()
    with staging.database(NAME) as db, gladly.client() as client:
        report = run_target_preflight(
            GladlyTarget(client), db, utc_text(window.start), utc_text(window.end),
            excluded_tags=rules.skip.spam.tags, create_topics=config.create_topics,
        )
    for reminder in report.reminders:
        context.log.warning(reminder)
    if not report.ok:
        raise dg.Failure("Gladly preflight failed: " + "; ".join(report.blocking),
                         metadata={"blocking": dg.MetadataValue.json(report.blocking)})
    missing = "\n".join(md_row([a["source_id"], a["name"] or "", a["email"] or ""]) for a in report.agents_missing)
    return dg.MaterializeResult(metadata={
        **range_metadata(context.partition_keys, {}),
        "agents_named": dg.MetadataValue.int(report.agents_named),
        "agents_missing": dg.MetadataValue.int(len(report.agents_missing)),
        "agents_missing_list": dg.MetadataValue.md(
            "| Zendesk agent | name | email |\n|---|---|---|\n" + missing if missing else "every agent has a Gladly agent"),
        "topics_existing": dg.MetadataValue.int(len(report.topics_existing)),
        "topics_created": dg.MetadataValue.json(report.topics_created),
        "topics_failed": dg.MetadataValue.json(report.topics_failed),
        "reminders": dg.MetadataValue.md("\n".join(f"- {r}" for r in report.reminders)),
    })
