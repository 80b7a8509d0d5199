"""Delta syncs until cutover: a daily partitioned schedule and a sensor on new Gladly export jobs.

Both are off by default (turn one on in the Dagster UI, under Automation): a migration team
decides when deltas start. Pick one: the schedule runs yesterday's partition every morning; the
sensor runs exactly the partitions each newly COMPLETED export job covers (better for hourly
schedules and one-time jobs from Gladly Support).
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from migration_pipeline.partitions import daily_partitions
from migration_pipeline.vendors.gladly.resources import GladlyResource

# The migration job and the daily schedule come from the pair factory (pairs/spec.py); Gladly's
# daily export job for day D lands around 02:00 UTC on D+1 ("24 hours behind"), so the schedule
# runs at 06:00 to leave room for a late job.
MIGRATION_JOB = "gladly_to_unthread_migration"


def partitions_covered(start: datetime, end: datetime) -> list[str]:
    """Daily partition keys whose day overlaps [start, end), within the partitions that exist."""
    first = datetime.fromisoformat(daily_partitions.start.isoformat()).astimezone(UTC)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day = max(start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0), first)
    keys = []
    while day < end and day < today:
        keys.append(day.strftime("%Y-%m-%d"))
        day += timedelta(days=1)
    return keys


@dg.sensor(
    job_name=MIGRATION_JOB,
    minimum_interval_seconds=15 * 60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Requests the partitions each newly COMPLETED Gladly export job covers (once per job and day).",
)
def new_gladly_export_jobs(context: dg.SensorEvaluationContext, gladly: GladlyResource):
    """Cursor: the newest `updatedAt` already handled; run keys make each (job, day) run once."""
    seen_until = datetime.fromisoformat(context.cursor) if context.cursor else None
    with gladly.client() as client:
        jobs = [j for j in client.list_export_jobs(status="COMPLETED") if seen_until is None or j.updated_at > seen_until]
    if not jobs:
        return dg.SkipReason("no new COMPLETED export job")
    requests = [
        dg.RunRequest(run_key=f"{job.id}:{key}", partition_key=key, tags={"gladly/export_job": job.id})
        for job in jobs
        for key in partitions_covered(job.parameters.start_at, job.parameters.end_at)
    ]
    return dg.SensorResult(run_requests=requests, cursor=max(j.updated_at for j in jobs).isoformat())
