"""Stage 3: Gladly's lifelong conversations cut into tickets by the versioned splitting rules."""

import time

import dagster as dg
from pydantic import Field

from migration_pipeline.pairs.day_figures import record_counts_by_day
from migration_pipeline.lib.split_rules import SplitRules
from migration_pipeline.partitions import daily_partitions
from migration_pipeline.lib.staging.by_day import rows_by_day
from migration_pipeline.lib.staging.db import exclusive, ticket_items, tickets, utc_text
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.lib.staging.tickets import SPLIT_LEASE, SPLIT_LEASE_TTL_SECONDS, split_window
from migration_pipeline.pairs.gladly_to_unthread.pair import GROUP, NAME, key


class SplitConfig(dg.Config):
    rules_file: str | None = Field(
        default=None,
        description="Splitting rules YAML; default the staging resource's split_rules_file "
        "($MIGRATION_SPLIT_RULES), else the shipped config/splitting_rules.yaml",
    )


@dg.asset(
    key_prefix=NAME,
    deps=[key("staged_conversation_items"), key("staged_customers")],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"sql"},
)
def split_tickets(context: dg.AssetExecutionContext, config: SplitConfig, staging: StagingResource) -> dg.MaterializeResult:
    """Tickets cut from each Gladly conversation by the splitting rules (time gap, reopen after
    dormancy, channel switch, topic change, size cap; ties broken by item id), with every item's
    ticket, the rule version and the reason each ticket starts. Stable: tickets already cut are
    never re-cut; a new item joins the ticket whose span covers it, the ticket it continues, or
    starts a new one. Each day's materialization counts the tickets starting that day and the
    items of that day in tickets (`figures` says which numbers are the day's)."""
    started = time.monotonic()
    rules = SplitRules.load(config.rules_file or staging.split_rules_file)
    window = context.partition_time_window
    lo, hi = utc_text(window.start), utc_text(window.end)
    with staging.database(NAME) as db:
        # One splitter at a time: a second run of the same range waits, then finds nothing to cut.
        with exclusive(db, SPLIT_LEASE, f"{context.run.run_id}:split", SPLIT_LEASE_TTL_SECONDS):
            counts = split_window(db, lo, hi, rules)
        starting = rows_by_day(db, tickets.c.first_ts, lo, hi)
        in_tickets = rows_by_day(db, ticket_items.c.ts, lo, hi)
    by_day = record_counts_by_day(context, {"tickets": starting, "items_in_tickets": in_tickets})
    context.log.info(
        f"{counts.items_assigned} items into tickets under rules {rules.rule_version}: "
        f"{counts.tickets_created} new, {counts.tickets_extended} extended"
    )
    reasons = "\n".join(f"| {reason} | {n} |" for reason, n in sorted(counts.cut_reasons.items()))
    return dg.MaterializeResult(
        metadata={
            **by_day,
            "items_assigned": dg.MetadataValue.int(counts.items_assigned),
            "tickets_created": dg.MetadataValue.int(counts.tickets_created),
            "tickets_extended": dg.MetadataValue.int(counts.tickets_extended),
            "conversations": dg.MetadataValue.int(counts.conversations),
            "rule_version": dg.MetadataValue.text(rules.rule_version),
            "rules": dg.MetadataValue.md("\n".join(f"- {line}" for line in rules.describe())),
            "new_tickets_by_reason": dg.MetadataValue.md(f"| rule | new tickets |\n|---|---|\n{reasons}"),
            "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
        }
    )
