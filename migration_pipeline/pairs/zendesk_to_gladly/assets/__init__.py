"""The pair's materializable assets, in pipeline order (the external ends are in external.py)."""

from migration_pipeline.pairs.zendesk_to_gladly.assets.gladly_api_writes import gladly_api_writes
from migration_pipeline.pairs.zendesk_to_gladly.assets.import_files import gladly_import_files
from migration_pipeline.pairs.zendesk_to_gladly.assets.preflight import gladly_preflight
from migration_pipeline.pairs.zendesk_to_gladly.assets.raw import zendesk_deliveries
from migration_pipeline.pairs.zendesk_to_gladly.assets.reconciliation import zendesk_gladly_reconciliation
from migration_pipeline.pairs.zendesk_to_gladly.assets.staged import staged_zendesk_records

PAIR_ASSETS = [
    zendesk_deliveries,
    staged_zendesk_records,
    gladly_preflight,
    gladly_api_writes,  # gladly_customer_profiles, then gladly_activity_items
    gladly_import_files,
    zendesk_gladly_reconciliation,
]
