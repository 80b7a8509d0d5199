"""Stage 2: the archived deliveries staged into the canonical contract, in the pair's own namespace."""

import time

import dagster as dg

from migration_pipeline.lib.staging.by_day import rows_by_day
from migration_pipeline.lib.staging.db import conversation_items, utc_text
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.pairs.day_figures import range_metadata, record_counts_by_day
from migration_pipeline.pairs.zendesk_to_gladly.pair import GROUP, NAME, key
from migration_pipeline.partitions import daily_partitions
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.zendesk.archive import ZendeskArchive
from migration_pipeline.vendors.zendesk.staging import CommentsNotArchived, StageCounts, stage_delivery

STAGED = {
    "staged_customers": ("customers", "Zendesk end users (every requester), one row per user id: name, email, phone."),
    "staged_agents": ("agents", "Zendesk agents and admins (comment authors), with their email and whether active."),
    "staged_conversations": ("conversations", "Zendesk tickets (status, channel, assignee, tags, sender), newest version wins."),
    "staged_conversation_items": ("items", "Every Zendesk comment whose created_at falls in the partition, one row per "
                                  "comment id, as a contract item (public reply, private note or call)."),
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(key(name), deps=[key("zendesk_deliveries")], description=description, group_name=GROUP, kinds={"sql"})
        for name, (_, description) in STAGED.items()
    ],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def staged_zendesk_records(context: dg.AssetExecutionContext, storage: MigrationStorage, staging: StagingResource):
    """Stage every archived delivery into the pair's staging namespace (upsert by source id; a
    newer ticket or user version wins; comments selected by timestamp into the window); every bad
    line, record or refused file is quarantined with its reason (delivery, file, line). A delivery
    staged before, unchanged, with no comment in the window is not read again."""
    started = time.monotonic()
    window = context.partition_time_window
    deliveries = ZendeskArchive(storage.root).deliveries()
    total = StageCounts()
    with staging.database(NAME) as db:
        for delivery in deliveries:
            try:
                total.add(stage_delivery(db, delivery, (window.start, window.end)))
            except CommentsNotArchived as exc:
                raise dg.Failure(
                    f"{exc}. The export's ticket lines carry no comments: set ZENDESK_BASE_URL, ZENDESK_EMAIL and "
                    "ZENDESK_API_TOKEN and materialize zendesk_deliveries again (it fetches them once)."
                ) from exc
        items_by_day = rows_by_day(db, conversation_items.c.ts, utc_text(window.start), utc_text(window.end))
    context.log.info(
        f"{len(deliveries)} deliveries ({total.deliveries_skipped} not read again: staged before, none of their comments "
        f"in the window): {total.items} comments staged, {total.quarantined} quarantined, "
        f"{total.skipped_outside_window} outside the window, {total.stale} older versions ignored"
    )
    common = {
        "deliveries": dg.MetadataValue.int(len(deliveries)),
        "deliveries_not_read_again": dg.MetadataValue.int(total.deliveries_skipped),
        "lines": dg.MetadataValue.int(total.lines),
        "quarantined": dg.MetadataValue.int(total.quarantined),
        "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
    }
    items_metadata = record_counts_by_day(context, {"items": items_by_day}, asset_key=key("staged_conversation_items"))
    for name, (counted, _) in STAGED.items():
        metadata = {**common, "rows": dg.MetadataValue.int(getattr(total, counted))}
        if name == "staged_conversation_items":
            metadata |= {**items_metadata, "outside_window": dg.MetadataValue.int(total.skipped_outside_window),
                         "older_versions_ignored": dg.MetadataValue.int(total.stale)}
        else:
            metadata |= range_metadata(context.partition_keys, {})
        yield dg.MaterializeResult(asset_key=key(name), metadata=metadata)
