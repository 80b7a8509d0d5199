"""Before stage 4: blocking checks on the target before the first write."""

import dagster as dg
from pydantic import Field

from migration_pipeline.lib.markdown import md_row
from migration_pipeline.partitions import daily_partitions
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.vendors.unthread.preflight import PreflightReport, run_preflight
from migration_pipeline.vendors.unthread.resources import UnthreadResource
from migration_pipeline.pairs.gladly_to_unthread.pair import GROUP, NAME, key


class PreflightConfig(dg.Config):
    offline: bool = Field(
        default=False,
        description="Check the configuration only and send nothing (for dry runs, which must not touch the target)",
    )
    reprobe: bool = Field(
        default=False,
        description="Forget what the workspace was found to support and probe it again (after Unthread changed it)",
    )


@dg.asset(
    key_prefix=NAME,
    deps=[key("staged_agents")],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"unthread"},
    pool="unthread_api",
)
def unthread_preflight(
    context: dg.AssetExecutionContext, config: PreflightConfig, unthread: UnthreadResource, staging: StagingResource
) -> dg.MaterializeResult:
    """Blocking checks on the Unthread workspace before anything is written to it: the API key
    works (one authenticated read), the triage channel is configured, a configured placeholder
    user exists; Gladly agents are matched to Unthread users by email (the unmatched are listed);
    and a reminder to pause the workspace's automations and autoresponders; what the workspace
    supports of the unconfirmed API surface (tags, file read-back, private notes, ...), probed
    once and kept in `target_capabilities` (a re-run probes nothing). Fails, and so stops
    the load, when a blocking check fails; stores the findings as metadata. They are of the
    workspace and the configuration, not of a day: every day of a run gets the same, and
    `checked` says so, and whether the workspace was asked at all (not when `offline`)."""
    with staging.database(NAME) as db, unthread.client() as client:
        report = run_preflight(
            None if config.offline else client,
            db,
            triage_channel_id=unthread.triage_channel_id,
            placeholder_user_id=unthread.placeholder_user_id,
            offline=config.offline,
            reprobe=config.reprobe,
        )
    for warning in report.warnings:
        context.log.warning(warning)
    days = context.partition_keys
    asked = "the configuration only (offline: nothing was sent to Unthread)" if config.offline else "the Unthread workspace over its API"
    metadata = {
        "checked": dg.MetadataValue.text(
            f"{asked}, once for the run's days {days[0]} .. {days[-1]}: the same findings for every day, none of them a day's"
        ),
        "offline": dg.MetadataValue.bool(config.offline),
        "passed": dg.MetadataValue.bool(report.passed),
        "report": dg.MetadataValue.md("```\n" + report.render() + "```"),
        # offline, agents and capabilities were not looked at: no zeros that would read as "all fine"
        **({} if config.offline else workspace_findings(report)),
    }
    if not report.passed:
        raise dg.Failure(description="Unthread preflight failed: " + "; ".join(report.failures), metadata=metadata)
    context.log.info(report.render())
    return dg.MaterializeResult(metadata=metadata)


def workspace_findings(report: PreflightReport) -> dict[str, dg.MetadataValue]:
    """What the preflight found on the workspace: agent matches and capabilities."""
    unmatched = "\n".join(md_row([a["id"], a["name"], a["email"]]) for a in report.unmatched_agents)
    return {
        "matched_agents": dg.MetadataValue.int(report.matched_agents),
        "unmatched_agents": dg.MetadataValue.int(len(report.unmatched_agents)),
        "unmatched_agent_list": dg.MetadataValue.md(f"| agent | name | email |\n|---|---|---|\n{unmatched}"),
        "capabilities_missing": dg.MetadataValue.int(len(report.missing_capabilities)),
        "capabilities_probed_now": dg.MetadataValue.int(len(report.probed_now)),
        "capabilities": dg.MetadataValue.md(
            "| capability | supported | what the load does | found |\n|---|---|---|---|\n" + "\n".join(
                md_row([f.name, "yes" if f.supported else "NO", f.capability.uses if f.supported else f.capability.without,
                        f"{f.found_by} {f.probed_at[:19]}: {f.detail}"])
                for f in report.capabilities
            )
        ),
    }
