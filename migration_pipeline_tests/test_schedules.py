"""The delta schedule and the sensor on new Gladly export jobs, against the Gladly emulator."""

from datetime import UTC, datetime

import dagster as dg
import httpx

from migration_pipeline.definitions import defs
from migration_pipeline.pairs.gladly_to_unthread.schedules import new_gladly_export_jobs
from migration_pipeline.vendors.gladly.resources import GladlyResource
from migration_pipeline_tests.conftest import GLADLY_TOKEN, GLADLY_USER


def test_schedule_runs_yesterdays_partition_each_morning_and_is_off_by_default():
    schedule = defs.get_schedule_def("daily_delta_sync")
    assert schedule.cron_schedule == "0 6 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.job_name == "gladly_to_unthread_migration"
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 20, 6, 0, tzinfo=UTC))
    [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-11-19"


def test_sensor_requests_the_partitions_of_new_jobs_once(small_dataset, gladly_server_factory):
    server = gladly_server_factory(small_dataset, now=datetime(2026, 11, 19, 6, 0, tzinfo=UTC))
    resources = {"gladly": GladlyResource(base_url=server.url, api_user=GLADLY_USER, api_token=GLADLY_TOKEN)}
    assert new_gladly_export_jobs.default_status == dg.DefaultSensorStatus.STOPPED

    with dg.build_sensor_context(resources=resources) as context:
        first = new_gladly_export_jobs(context)
    keys = {r.partition_key for r in first.run_requests}
    assert "2026-11-18" in keys and "2026-11-19" not in keys
    assert len({r.run_key for r in first.run_requests}) == len(first.run_requests)

    with dg.build_sensor_context(resources=resources, cursor=first.cursor) as context:
        assert isinstance(new_gladly_export_jobs(context), dg.SkipReason)

    # A day later Gladly's next daily job has landed: only its day is requested.
    httpx.put(f"{server.url}/_emulator/clock", json={"now": "2026-11-20T06:00:00Z"}).raise_for_status()
    with dg.build_sensor_context(resources=resources, cursor=first.cursor) as context:
        later = new_gladly_export_jobs(context)
    assert {r.partition_key for r in later.run_requests} == {"2026-11-19"}
