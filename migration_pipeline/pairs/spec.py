"""One factory for every migration pair: a `PairSpec` in, the pair's Dagster definitions out.

A pair package declares its stages (assets and their checks), its own jobs and sensors, and
`build_pair` adds what every pair has the same way: the migration job over exactly its own stages
(never another pair's), the daily delta schedule (off by default: a migration team decides when
deltas start), and the run tags that say which pair and mode a run is. `definitions.py` merges every
pair's definitions with the one set of resources.

Conventions a spec follows (tests/test_pair_definitions.py pins each pair's result):
- asset keys `<pair>/<asset>` and group `<pair>` (one lineage graph per pair in the UI); an op made
  by `@asset` is named after its key (`<pair>__<asset>`), which is what run config names;
- pools per vendor API (`gladly_api`, `unthread_api`, `zendesk_api`), so two pairs calling one
  vendor share its budget;
- its own staging namespace, `StagingResource.database(namespace=spec.name)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

MODE_TAG = "migration/mode"  # full / dry_run / sample
PAIR_TAG = "migration/pair"
FULL, SAMPLE, DRY_RUN = "full", "sample", "dry_run"  # MODE_TAG's values: a real run and the review modes


@dataclass(frozen=True)
class PairSpec:
    name: str  # gladly_to_unthread, zendesk_to_gladly ...: job names, keys, group, staging namespace
    title: str  # "Zendesk -> Gladly", for descriptions
    stages: Sequence[dg.AssetsDefinition]  # what the migration job runs, in pipeline order
    external: Sequence[dg.AssetSpec] = ()  # the source and target systems, shown in the lineage, never run
    checks: Sequence[dg.AssetChecksDefinition] = ()  # checks defined apart from their assets
    jobs: Sequence[Any] = ()  # the pair's own jobs (dry run, rollback, trace ...)
    sensors: Sequence[dg.SensorDefinition] = ()
    schedule_name: str | None = None  # default `<name>_daily_delta`
    schedule_hour: int = 6  # UTC: after the source's day is complete and exported
    migration_description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def key(self, *path: str) -> dg.AssetKey:
        """`<pair>/<path>`: the key of one of this pair's assets."""
        return dg.AssetKey([self.name, *path])


def log_mode(context: dg.AssetExecutionContext, what: str, mode: str, config: str, not_materialized: str) -> None:
    """Say which mode a writing step runs in (`<what>: <mode>`), loudly when the run's MODE_TAG says
    otherwise: a review mode turned on through `config` in another job (the warning then ends with
    `not_materialized`, what the mode leaves unmaterialized), or a review job with it turned off."""
    tagged = context.run.tags.get(MODE_TAG)
    if tagged == mode or (tagged is None and mode == FULL):
        context.log.info(f"{what}: {mode}")
    else:
        context.log.warning(
            f"{what}: {mode} ({config}), but this run's {MODE_TAG} tag says {tagged or 'nothing'}"
            + (": writes ARE sent" if mode == FULL else f": {not_materialized}")
        )


def migration_job(spec: PairSpec) -> dg.UnresolvedAssetJobDefinition:
    """Every stage of the pair for the selected days, its checks included, no other pair's."""
    return dg.define_asset_job(
        f"{spec.name}_migration",
        selection=dg.AssetSelection.assets(*spec.stages),
        tags={MODE_TAG: FULL, PAIR_TAG: spec.name, **spec.tags},
        description=spec.migration_description or f"Every stage of {spec.title} for the selected days.",
    )


def delta_schedule(spec: PairSpec, job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    return dg.build_schedule_from_partitioned_job(
        job,
        hour_of_day=spec.schedule_hour,
        minute_of_hour=0,
        name=spec.schedule_name or f"{spec.name}_daily_delta",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Each morning, migrate yesterday's partition ({spec.title} delta sync until cutover).",
    )


def build_pair(spec: PairSpec) -> dg.Definitions:
    job = migration_job(spec)
    return dg.Definitions(
        assets=[*spec.external, *spec.stages],
        asset_checks=list(spec.checks),
        jobs=[job, *spec.jobs],
        schedules=[delta_schedule(spec, job)],
        sensors=list(spec.sensors),
    )
