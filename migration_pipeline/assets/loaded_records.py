"""Stage 4: tickets loaded into Unthread, every created object recorded in the ledger."""

import time
from contextlib import ExitStack
from functools import partial

import dagster as dg
from pydantic import Field

from migration_pipeline.checks.sample import sample_readback
from migration_pipeline.core.content import describe_neutralized
from migration_pipeline.core.markdown import md_row
from migration_pipeline.partitions import daily_partitions
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.sources.gladly.resources import GladlyResource
from migration_pipeline.staging.db import utc_text
from migration_pipeline.staging.resources import StagingResource
from migration_pipeline.staging.sample import messiest_customers, sample_run_id, tickets_of_customers
from migration_pipeline.targets.unthread.dry_run import DryRunLoader, DryRunUnthreadClient
from migration_pipeline.targets.unthread.loader import LoadSettings, UnthreadLoader, tickets_touching
from migration_pipeline.targets.unthread.resources import UnthreadResource


REFUSED_CHECK = "no_writes_refused"


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


@dg.asset(
    deps=["split_tickets", "unthread_preflight"],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="load",
    kinds={"unthread"},
    pool="unthread_api",
    check_specs=[
        # Not blocking: the reconciliation downstream is what lists every item those writes held
        # back; its blocking check turns red for them (a failed load step would skip it).
        dg.AssetCheckSpec(REFUSED_CHECK, asset="unthread_loaded_records", blocking=False,
                          description="No write was refused by Unthread in this run (each refusal is a dead letter, "
                                      "retried by the next run; reconciliation_report names the items it holds back)"),
    ],
)
def unthread_loaded_records(
    context: dg.AssetExecutionContext,
    config: LoadConfig,
    unthread: UnthreadResource,
    gladly: GladlyResource,
    staging: StagingResource,
    storage: MigrationStorage,
) -> dg.MaterializeResult:
    """The ledger of what is in Unthread: one row per Gladly customer, ticket, item and final
    status, each with its Unthread id. Tickets touching the partition are loaded oldest first:
    conversation (first item as its initial message, `onBehalfOf` the author), the other items
    as messages in source order, then the final status. Re-running finds everything in the
    ledger and sends nothing; an interrupted create is looked up on Unthread before re-sending.
    With `sample_customers` only the messiest customers' tickets are loaded (and read back);
    with `dry_run` the payloads go to files and nothing is sent."""
    started = time.monotonic()
    window = context.partition_time_window
    sample = config.sample_customers > 0
    run_id = sample_run_id(context.run.run_id) if sample else context.run.run_id
    settings = LoadSettings(
        triage_channel_id=unthread.triage_channel_id,
        placeholder_user_id=unthread.placeholder_user_id,
        customer_mode=unthread.customer_mode,
        create_attempts=unthread.max_attempts,
        create_backoff_seconds=unthread.backoff_initial_seconds,
        lease_ttl_seconds=unthread.lease_ttl_seconds,
        max_file_bytes=unthread.max_file_bytes,
        email_inbox_id=unthread.email_inbox_id,
        slack_channel_id=unthread.slack_channel_id,
        mappings_file=unthread.mappings_file,
        content_rules_file=unthread.content_rules_file,
        run_id=run_id,
    )
    extra: dict[str, dg.MetadataValue] = {}
    with ExitStack() as stack:
        db = stack.enter_context(staging.database())
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
            # Attachments are streamed to anonymous temp files on the data volume (nothing is left
            # behind even by a crash), never held whole in memory.
            fetch = partial(source.download_attachment, scratch_dir=storage.root / "tmp" / "attachments")
            loader = UnthreadLoader(db, client, settings, fetch_attachment=fetch, fetch_transcript=source.voice_transcript)
            stack.callback(loader.close)  # stops the lease heartbeat
        last_log = time.monotonic()
        for n, ticket_id in enumerate(ticket_ids, start=1):
            loader.load_ticket(ticket_id, window.end)
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
            **fidelity_metadata(counts, unmatched, loader),
            "api_calls": dg.MetadataValue.int(calls["requests"]),
            "api_retries": dg.MetadataValue.int(calls["retries"]),
            "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
            **extra,
        },
        check_results=[refused_writes_result(counts)],
    )


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
