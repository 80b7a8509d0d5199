"""Stage 1: Zendesk's raw records, archived byte for byte before anything reads them."""

from contextlib import nullcontext
from datetime import datetime

import dagster as dg
import sqlalchemy as sa

from migration_pipeline.pairs.day_figures import range_metadata
from migration_pipeline.lib.staging.db import conversations
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.pairs.zendesk_to_gladly.pair import NAME, stage
from migration_pipeline.partitions import daily_partitions
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.zendesk.archive import ZendeskArchive
from migration_pipeline.vendors.zendesk.resources import ZendeskResource


class RawConfig(dg.Config):
    incremental: str = "auto"  # auto / always / never: the incremental ticket export for the days the export does not cover


def landing_dir(storage: MigrationStorage):
    """Drop Zendesk's full JSON export here (NDJSON, .gz or .zip; any number of files)."""
    return storage.root / "landing" / "zendesk"


def export_coverage(staging: StagingResource, exports: list) -> datetime | None:
    """Until when the full exports hold the account: the newest ticket update they staged (an
    export is a snapshot taken just after it), else, before they are staged, when they were handed
    over. Days after it need the incremental export."""
    if not exports:
        return None
    ids = [d.delivery_id for d in exports]
    with staging.database(NAME) as db, db.engine.connect() as conn:
        newest = conn.execute(sa.select(sa.func.max(conversations.c.updated_at)).where(conversations.c.job_id.in_(ids))).scalar()
    return datetime.fromisoformat(newest.replace("Z", "+00:00")) if newest else max(d.archived_at for d in exports)


@stage("zendesk_deliveries", deps=["zendesk_account"], kinds={"zendesk", "file"}, pool="zendesk_api")
def zendesk_deliveries(
    context: dg.AssetExecutionContext, config: RawConfig, storage: MigrationStorage, zendesk: ZendeskResource,
    staging: StagingResource,
) -> dg.MaterializeResult:
    """Every Zendesk delivery, byte for byte with sha256 (MIGRATION_DATA_DIR/archive/zendesk/deliveries/):
    the full export files dropped in the landing folder, the comments of ticket lines that carry
    none (fetched once from the API), and for the days no export covers (after the newest export was
    handed over) the incremental ticket export of each day with its comments and users."""
    archive = ZendeskArchive(storage.root)
    landed = archive.archive_from_landing(landing_dir(storage))
    for name, reason in landed.refused:
        context.log.warning(f"landing file refused: {name}: {reason}")
    api = zendesk.configured
    exports = [d for d in archive.deliveries() if d.kind == "export"]
    covered_until = export_coverage(staging, exports)
    fetched_comments, incremental = 0, []
    with zendesk.client() if api else nullcontext() as client:
        for delivery in exports:
            if delivery.comments is None and client is not None:
                delivery = archive.archive_comments(client, delivery)
                fetched_comments += 1
        window = context.partition_time_window
        wanted = config.incremental == "always" or (
            config.incremental == "auto" and exports and covered_until is not None and window.end > covered_until
        )
        if wanted and client is None:
            context.log.warning(f"days after {covered_until} need Zendesk's incremental export: set ZENDESK_* to fetch them")
        elif wanted:
            for day in context.partition_keys:
                w = daily_partitions.time_window_for_partition_key(day)
                if config.incremental == "always" or w.end > covered_until:
                    delivery, _fresh = archive.archive_incremental(client, w.start, w.end)
                    incremental.append(delivery.delivery_id)
    deliveries = archive.deliveries()
    return dg.MaterializeResult(
        metadata={
            **range_metadata(context.partition_keys, {}),
            "deliveries": dg.MetadataValue.int(len(deliveries)),
            "landed_now": dg.MetadataValue.text(landed.delivery.delivery_id if landed.delivery and landed.fresh else "none"),
            "refused_files": dg.MetadataValue.json([{"file": n, "reason": r} for n, r in landed.refused]),
            "export_covers_until": dg.MetadataValue.text(str(covered_until) if covered_until else "no export yet"),
            "incremental_deliveries": dg.MetadataValue.json(incremental),
            "comment_fetches": dg.MetadataValue.int(fetched_comments),
            "files": dg.MetadataValue.json({d.delivery_id: d.files for d in deliveries[-20:]}),
        }
    )

