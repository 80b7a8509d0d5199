"""The pair's review job before cutover: the dry run (launch it from the UI over a day range).

It runs the stages up to the writes to Gladly's API with those writes planned, not sent: the
deliveries archived and staged (real: the source side, as the migration job does it), the
preflight without creating topics (it lists the missing ones; a POST it must not send), then
`gladly_api_writes` with `dry_run`: profiles and activity items observed per day, never
materialized, the plan in MIGRATION_DATA_DIR/dry-run/<run id>/. The import files are left out:
they are files, not writes to Gladly, and writing them records `imported_items`, which would
change what a later real run sends through the API."""

import dagster as dg

from migration_pipeline.pairs.spec import DRY_RUN, MODE_TAG, PAIR_TAG
from migration_pipeline.pairs.zendesk_to_gladly.assets.gladly_api_writes import gladly_api_writes
from migration_pipeline.pairs.zendesk_to_gladly.assets.preflight import gladly_preflight
from migration_pipeline.pairs.zendesk_to_gladly.assets.raw import zendesk_deliveries
from migration_pipeline.pairs.zendesk_to_gladly.assets.staged import staged_zendesk_records
from migration_pipeline.pairs.zendesk_to_gladly.pair import NAME

# Run config names ops: an @asset's op is named after its key, a multi-asset's after its function
PREFLIGHT_OP, WRITES_OP = gladly_preflight.op.name, gladly_api_writes.op.name
# `enabled` as in the real run to be rehearsed: true plans the activity items too
DRY_RUN_OPS = {
    PREFLIGHT_OP: {"config": {"create_topics": False}},
    WRITES_OP: {"config": {"dry_run": True, "enabled": False}},
}

dry_run = dg.define_asset_job(
    f"{NAME}_dry_run",
    selection=dg.AssetSelection.assets(zendesk_deliveries, staged_zendesk_records, gladly_preflight, gladly_api_writes),
    config={"ops": DRY_RUN_OPS},
    tags={MODE_TAG: DRY_RUN, PAIR_TAG: NAME},
    description="Zendesk -> Gladly without writing to Gladly: the selected days archived and staged, the preflight "
    "(topics listed, not created), then every customer profile and (with enabled: true) activity item a real run "
    "would create or complete, written as the exact request bodies to MIGRATION_DATA_DIR/dry-run/<run id>/"
    "profiles.jsonl and activity_items.jsonl. Reads (lookups by email) are sent; no write is, the ledger and leases "
    "are untouched, and the two assets are observed, not materialized. Import files and the reconciliation are "
    "not part of it.",
)
