"""The Gladly -> Unthread pair as Dagster definitions, built by the pair factory (pairs/spec.py):
its assets, checks, jobs, schedule and sensors (resources are the code location's, shared by
every pair)."""

import dagster as dg

from migration_pipeline.pairs.gladly_to_unthread.assets import PAIR_ASSETS
from migration_pipeline.pairs.gladly_to_unthread.assets.external import gladly_export, unthread_workspace
from migration_pipeline.pairs.gladly_to_unthread.checks.pipeline_checks import PIPELINE_CHECKS, freshness_sensor
from migration_pipeline.pairs.gladly_to_unthread.jobs import dry_run_migration, rollback_unthread, sample_migration
from migration_pipeline.pairs.gladly_to_unthread.jobs_cutover import gladly_cutover_close
from migration_pipeline.pairs.gladly_to_unthread.schedules import new_gladly_export_jobs
from migration_pipeline.pairs.gladly_to_unthread.trace_view import trace_record
from migration_pipeline.pairs.spec import PairSpec, build_pair

SPEC = PairSpec(
    name="gladly_to_unthread",
    title="Gladly -> Unthread",
    stages=PAIR_ASSETS,
    external=[gladly_export, unthread_workspace],
    checks=PIPELINE_CHECKS,
    jobs=[sample_migration, dry_run_migration, rollback_unthread, trace_record, gladly_cutover_close],
    sensors=[new_gladly_export_jobs, freshness_sensor],
    schedule_name="daily_delta_sync",  # named before the factory; kept, users' alerts name it
    migration_description="Every stage, Gladly export to Unthread reconciliation, for the selected days.",
)
defs: dg.Definitions = build_pair(SPEC)
