"""The pair's materializable assets, in pipeline order (the external ends are in external.py)."""

from migration_pipeline.pairs.gladly_to_unthread.assets.export_jobs import gladly_export_jobs
from migration_pipeline.pairs.gladly_to_unthread.assets.loaded_records import unthread_loaded_records
from migration_pipeline.pairs.gladly_to_unthread.assets.preflight import unthread_preflight
from migration_pipeline.pairs.gladly_to_unthread.assets.reconciliation_report import reconciliation_report
from migration_pipeline.pairs.gladly_to_unthread.assets.staged_records import staged_gladly_records
from migration_pipeline.pairs.gladly_to_unthread.assets.tickets import split_tickets

PAIR_ASSETS = [
    gladly_export_jobs,
    staged_gladly_records,
    split_tickets,
    unthread_preflight,
    unthread_loaded_records,
    reconciliation_report,
]
