"""The Dagster code location: `dg dev -m migration_pipeline.definitions` (or `make ui`)."""

import dagster as dg

from migration_pipeline.pairs.gladly_to_unthread.assets.export_jobs import gladly_export_jobs
from migration_pipeline.pairs.gladly_to_unthread.assets.external import gladly_export, unthread_workspace
from migration_pipeline.pairs.gladly_to_unthread.assets.loaded_records import unthread_loaded_records
from migration_pipeline.pairs.gladly_to_unthread.assets.preflight import unthread_preflight
from migration_pipeline.pairs.gladly_to_unthread.assets.reconciliation_report import reconciliation_report
from migration_pipeline.pairs.gladly_to_unthread.assets.staged_records import staged_gladly_records
from migration_pipeline.pairs.gladly_to_unthread.assets.tickets import split_tickets
from migration_pipeline.pairs.gladly_to_unthread.checks.pipeline_checks import PIPELINE_CHECKS, freshness_sensor
from migration_pipeline.pairs.gladly_to_unthread.jobs import dry_run_migration, rollback_unthread, sample_migration
from migration_pipeline.pairs.gladly_to_unthread.jobs_cutover import gladly_cutover_close
from migration_pipeline.resources import build_resources
from migration_pipeline.pairs.gladly_to_unthread.schedules import delta_schedule, migration_job, new_gladly_export_jobs
from migration_pipeline.pairs.gladly_to_unthread.trace_view import trace_record

defs = dg.Definitions(
    assets=[
        gladly_export,
        gladly_export_jobs,
        staged_gladly_records,
        split_tickets,
        unthread_preflight,
        unthread_loaded_records,
        reconciliation_report,
        unthread_workspace,
    ],
    asset_checks=PIPELINE_CHECKS,
    jobs=[migration_job, sample_migration, dry_run_migration, rollback_unthread, trace_record, gladly_cutover_close],
    schedules=[delta_schedule],
    sensors=[new_gladly_export_jobs, freshness_sensor],
    resources=build_resources(),
)
