"""The Gladly -> Unthread pair as Dagster definitions: its assets, checks, jobs, schedule and
sensors (resources are the code location's, shared by every pair)."""

import dagster as dg

from migration_pipeline.pairs.gladly_to_unthread.assets import PAIR_ASSETS
from migration_pipeline.pairs.gladly_to_unthread.assets.external import gladly_export, unthread_workspace
from migration_pipeline.pairs.gladly_to_unthread.checks.pipeline_checks import PIPELINE_CHECKS, freshness_sensor
from migration_pipeline.pairs.gladly_to_unthread.jobs import dry_run_migration, rollback_unthread, sample_migration
from migration_pipeline.pairs.gladly_to_unthread.jobs_cutover import gladly_cutover_close
from migration_pipeline.pairs.gladly_to_unthread.schedules import delta_schedule, migration_job, new_gladly_export_jobs
from migration_pipeline.pairs.gladly_to_unthread.trace_view import trace_record

defs = dg.Definitions(
    assets=[gladly_export, *PAIR_ASSETS, unthread_workspace],
    asset_checks=PIPELINE_CHECKS,
    jobs=[migration_job, sample_migration, dry_run_migration, rollback_unthread, trace_record, gladly_cutover_close],
    schedules=[delta_schedule],
    sensors=[new_gladly_export_jobs, freshness_sensor],
)
