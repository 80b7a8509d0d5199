"""Stage 4: tickets loaded into Unthread, every created object recorded in the ledger."""

import time
from collections import Counter
from contextlib import ExitStack

import dagster as dg
from pydantic import Field

from migration_pipeline.pairs.day_figures import range_metadata, record_by_day
from migration_pipeline.pairs.gladly_to_unthread.checks.sample import sample_readback
from migration_pipeline.lib.content import describe_neutralized
from migration_pipeline.lib.markdown import md_row
from migration_pipeline.pairs.gladly_to_unthread.load_setup import gladly_fetchers, loader_settings
from migration_pipeline.partitions import daily_partitions
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.gladly.resources import GladlyResource
from migration_pipeline.lib.staging.by_day import ticket_first_days
from migration_pipeline.lib.staging.db import utc_text
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.lib.staging.sample import messiest_customers, sample_run_id, tickets_of_customers
from migration_pipeline.vendors.unthread.dry_run import DryRunLoader, DryRunUnthreadClient
from migration_pipeline.vendors.unthread.loader import LoadCounts, UnthreadLoader, tickets_touching
from migration_pipeline.vendors.unthread.resources import UnthreadResource
from migration_pipeline.pairs.spec import DRY_RUN, FULL, MODE_TAG, SAMPLE, log_mode  # noqa: F401  (MODE_TAG re-exported: jobs and tests read it here)
from migration_pipeline.pairs.gladly_to_unthread.pair import GROUP, NAME, key


LOADED = key("unthread_loaded_records")
REFUSED_CHECK = "no_writes_refused"
# What each day of a run records of its own (metadata name -> LoadCounts field), beside `tickets`
DAY_FIGURES = {
    "customers_created": "customers_created",
    "conversations_created": "conversations_created",
    "messages_created": "messages_created",
    "statuses_patched": "statuses_patched",
    "failed": "failed",
    "tickets_blocked": "tickets_blocked",
    "attachments_uploaded": "attachments_uploaded",
    "attachment_bytes": "attachment_bytes",
    "attachments_over_limit": "attachments_oversize",
}


class LoadConfig(dg.Config):
    sample_customers: int = Field(
        default=0,
        description="Sample run: load only the tickets of the N messiest customers (rpt_messiest_customers.sql); 0 = all",
    )
    dry_run: bool = Field(
        default=False,
        description="Build every payload and write it to MIGRATION_DATA_DIR/dry-run/<run id>/ instead of sending it; "
        "the real ledger is not touched",
    )
    dry_run_read_users: bool = Field(
        default=False,
        description="Dry run only: read the Unthread user list (one read request) so agents map as in a real run",
    )
    progress_every: int = Field(default=100, description="Log progress every this many tickets (and at least every 30 s)")


@dg.multi_asset(
    specs=[
        # skippable: a dry or sample run yields no materialization (the days must stay unloaded
        # for Dagster), only observations
        dg.AssetSpec(LOADED, deps=[key("split_tickets"), key("unthread_preflight")], group_name=GROUP, kinds={"unthread"}, skippable=True),
    ],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="unthread_api",
    check_specs=[
        # Not blocking: the reconciliation downstream is what lists every item those writes held
        # back; its blocking check turns red for them (a failed load step would skip it).
        dg.AssetCheckSpec(REFUSED_CHECK, asset=LOADED, blocking=False,
                          description="No write was refused by Unthread in this run (each refusal is a dead letter, "
                                      "retried by the next run; reconciliation_report names the items it holds back)"),
    ],
    # Only a subsettable op may leave its check without a result (a dry or sample run evaluates
    # nothing: a result would land on the last real load's materialization).
    can_subset=True,
)
def unthread_loaded_records(
    context: dg.AssetExecutionContext,
    config: LoadConfig,
    unthread: UnthreadResource,
    gladly: GladlyResource,
    staging: StagingResource,
    storage: MigrationStorage,
):
    """The ledger of what is in Unthread: one row per Gladly customer, ticket, item and final
    status, each with its Unthread id. Tickets touching the partition are loaded oldest first:
    conversation (first item as its initial message, `onBehalfOf` the author), the other items
    as messages in source order, then the final status. Re-running finds everything in the
    ledger and sends nothing; an interrupted create is looked up on Unthread before re-sending.
    With `sample_customers` only the messiest customers' tickets are loaded (and read back);
    with `dry_run` the payloads go to files and nothing is sent. Those two record no
    materialization (the days stay unloaded, so a backfill of missing days still loads them)
    but an observation of each day with the same figures, and leave no_writes_refused
    unevaluated. Each ticket counts on the day of its earliest item in the run's range
    (`figures` says which numbers are the day's)."""
    if LOADED not in context.selected_asset_keys:
        context.log.info(f"{REFUSED_CHECK} is evaluated by a load of {LOADED.to_user_string()}: nothing to do alone")
        return
    started = time.monotonic()
    window = context.partition_time_window
    sample = config.sample_customers > 0
    mode = DRY_RUN if config.dry_run else SAMPLE if sample else FULL
    log_mode(context, "load mode", mode, "config dry_run / sample_customers",
             f"{LOADED.to_user_string()} is not materialized")
    run_id = sample_run_id(context.run.run_id) if sample else context.run.run_id
    settings = loader_settings(unthread, run_id)
    extra: dict[str, dg.MetadataValue] = {}
    with ExitStack() as stack:
        db = stack.enter_context(staging.database(NAME))
        lo, hi = utc_text(window.start), utc_text(window.end)
        if sample:
            chosen = messiest_customers(db, config.sample_customers)
            ticket_ids = tickets_of_customers(db, [c["customer_id"] for c in chosen], lo, hi)
            rows = "\n".join(
                md_row([c["customer_id"], c["score"], c["items"], c["channels"], c["merged_profiles"],
                        c["bad_email"], c["items_with_attachments"]])
                for c in chosen
            )
            extra["sample_customers"] = dg.MetadataValue.md(
                "| customer | score | items | channels | merged profiles | bad email | items with attachments |\n"
                f"|---|---|---|---|---|---|---|\n{rows}"
            )
        else:
            ticket_ids = tickets_touching(db, lo, hi)
        context.log.info(
            f"{len(ticket_ids)} tickets touch {window.start:%Y-%m-%d}..{window.end:%Y-%m-%d}"
            + (f" for the {config.sample_customers} messiest customers" if sample else "")
            + (" (dry run: nothing is sent)" if config.dry_run else "")
        )
        if config.dry_run:
            reader = stack.enter_context(unthread.client()) if config.dry_run_read_users else None
            client = DryRunUnthreadClient(storage.root / "dry-run" / context.run.run_id, reader=reader)
            stack.callback(client.close)
            loader = DryRunLoader(db, client, settings)
        else:
            client = stack.enter_context(unthread.client())
            source = stack.enter_context(gladly.client())
            loader = UnthreadLoader(db, client, settings, **gladly_fetchers(source, storage.root))
            stack.callback(loader.close)  # stops the lease heartbeat
        first_days = ticket_first_days(db, lo, hi)
        per_day = {day: Counter(dict.fromkeys(["tickets", *DAY_FIGURES], 0)) for day in context.partition_keys}
        last_log = time.monotonic()
        for n, ticket_id in enumerate(ticket_ids, start=1):
            before = day_figures(loader.counts)
            loader.load_ticket(ticket_id, window.end)
            day = per_day[first_days[ticket_id]]
            day["tickets"] += 1
            day.update(day_figures(loader.counts) - before)
            if n % max(config.progress_every, 1) == 0 or time.monotonic() - last_log > 30 or n == len(ticket_ids):
                last_log = time.monotonic()
                c = loader.counts
                context.log.info(
                    f"progress: {n}/{len(ticket_ids)} tickets; created {c.customers_created} customers, "
                    f"{c.conversations_created} conversations, {c.messages_created} messages; {c.failed} failed"
                )
        counts = loader.counts
        if config.dry_run:
            summary = client.summary()
            context.log.info(f"dry run: payloads written to {summary['out_dir']}")
            extra["dry_run_dir"] = dg.MetadataValue.path(summary["out_dir"])
            extra["dry_run_requests_sent"] = dg.MetadataValue.int(summary["requests_sent"])
        elif sample:
            readback = sample_readback(db, client, ticket_ids)
            log = context.log.info if readback.passed else context.log.error
            log(readback.summary())
            extra["sample_readback_passed"] = dg.MetadataValue.bool(readback.passed)
            extra["sample_items_missing"] = dg.MetadataValue.int(len(readback.missing))
            extra["sample_items_duplicated"] = dg.MetadataValue.int(len(readback.duplicates))
        calls = client.stats.as_dict()
        unmatched = loader.unmatched_agent_details()
    for error in counts.errors[:50]:
        context.log.error(error)
    run_figures = {
        "mode": dg.MetadataValue.text(mode),
        "recovered_from_ledger_intents": dg.MetadataValue.int(counts.recovered),
        "waited_for_another_run": dg.MetadataValue.int(counts.waited_for_lease),
        "unmatched_agents": dg.MetadataValue.int(len(counts.unmatched_agents)),
        **fidelity_metadata(counts, unmatched, loader),
        "api_calls": dg.MetadataValue.int(calls["requests"]),
        "api_retries": dg.MetadataValue.int(calls["retries"]),
        "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
        **extra,
    }
    whole_range = {"tickets": len(ticket_ids), **day_figures(counts)}
    if mode != FULL:
        # Figures of what a real load would do (dry run) or did for a few customers (sample):
        # seen in the UI, but no day counts as loaded.
        shared = {**range_metadata(context.partition_keys, whole_range), **run_figures}
        for day, figures in per_day.items():
            context.log_event(dg.AssetObservation(asset_key=LOADED, partition=day, metadata={**shared, **figures}))
        context.log.info(f"{mode}: recorded as observations of {LOADED.to_user_string()}, not as a materialization")
        return
    by_day = record_by_day(context, per_day, whole_range)
    checks = [refused_writes_result(counts)] if dg.AssetCheckKey(LOADED, REFUSED_CHECK) in context.selected_asset_check_keys else []
    yield dg.MaterializeResult(asset_key=LOADED, metadata={**by_day, **run_figures}, check_results=checks)


def day_figures(counts: LoadCounts) -> Counter[str]:
    """The DAY_FIGURES of a load's counts so far."""
    return Counter({name: getattr(counts, field) for name, field in DAY_FIGURES.items()})



def refused_writes_result(counts) -> dg.AssetCheckResult:
    """The run's refused writes as a warning on the load: the materialization still records
    everything that was loaded, and the next run retries each refusal."""
    return dg.AssetCheckResult(
        check_name=REFUSED_CHECK,
        passed=counts.failed == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{counts.failed} writes refused by Unthread (dead letters, retried by the next run); "
        f"{counts.tickets_blocked} tickets stopped at the refusal to keep source order",
        metadata={
            "failed": dg.MetadataValue.int(counts.failed),
            "tickets_blocked": dg.MetadataValue.int(counts.tickets_blocked),
            "refusals": dg.MetadataValue.json(counts.errors[:100]),
        },
    )


def fidelity_metadata(counts, unmatched: list[dict], loader: UnthreadLoader) -> dict[str, dg.MetadataValue]:
    """What content fidelity looked like in this run: content types sent (unknown ones named),
    trimmed quotes, content made inert (mentions, unsafe links, raw HTML), inline images,
    transcripts, tags, conversation types (and fallbacks), upload read-back checksums, and every
    Gladly agent that matched no Unthread user."""
    rows = "\n".join(md_row([a["id"], a["name"], a["email"], a["stand_in"]]) for a in unmatched)
    return {
        "unmatched_agent_list": dg.MetadataValue.md(
            "| Gladly agent id | name | email | shown as |\n|---|---|---|---|\n" + rows if unmatched else "every agent matched an Unthread user"
        ),
        "content_types_sent": dg.MetadataValue.json(dict(sorted(counts.content_types.items()))),
        "unknown_content_types": dg.MetadataValue.int(sum(counts.unknown_types.values())),
        "unknown_content_type_names": dg.MetadataValue.json(dict(sorted(counts.unknown_types.items()))),
        "quoted_replies_trimmed": dg.MetadataValue.int(counts.quotes_trimmed),
        "signatures_trimmed": dg.MetadataValue.int(counts.signatures_trimmed),
        # mentions, unsafe links, raw HTML and forged markers made inert before they reached Slack
        "content_neutralized": dg.MetadataValue.int(sum(counts.neutralized.values())),
        "content_neutralized_by_kind": dg.MetadataValue.json(dict(sorted(counts.neutralized.items()))),
        "content_neutralized_summary": dg.MetadataValue.text(describe_neutralized(counts.neutralized)),
        "inline_images_uploaded": dg.MetadataValue.int(counts.inline_images_uploaded),
        "transcripts_included": dg.MetadataValue.int(counts.transcripts_included),
        "private_notes": dg.MetadataValue.int(counts.private_notes),
        "tags_created": dg.MetadataValue.int(counts.tags_created),
        "tag_patches": dg.MetadataValue.int(counts.tag_patches),
        "conversation_types": dg.MetadataValue.json(dict(counts.conversation_types)),
        "conversation_type_fallbacks": dg.MetadataValue.json(dict(counts.type_fallbacks)),
        "uploads_verified": dg.MetadataValue.int(counts.uploads_verified),
        "upload_checksum_mismatches": dg.MetadataValue.int(counts.checksum_mismatches),
        "uploads_unverified": dg.MetadataValue.int(counts.uploads_unverified),
        "mapping_version": dg.MetadataValue.text(loader.mappings.version),
        "content_rules_version": dg.MetadataValue.text(loader.rules.version),
    }
