"""Vendor API retries reach the Dagster run log: lib/http.py logs each retry on RETRY_LOGGER, and
the instance settings (dagster.yaml, deploy/dagster.yaml) hand that logger to Dagster. Checked
with a real materialization against the Gladly emulator answering 429s and 5xx, on an instance
built from the repository's own dagster.yaml."""

from __future__ import annotations

import base64
import logging
import re
from datetime import timedelta
from pathlib import Path

import dagster as dg
import httpx
import yaml

from migration_pipeline.pairs.gladly_to_unthread.assets.export_jobs import gladly_export_jobs
from migration_pipeline.lib import http
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.gladly.resources import GladlyResource
from migration_pipeline_tests.conftest import DATASET_END, GLADLY_TOKEN, GLADLY_USER

REPO = Path(__file__).resolve().parents[1]
DAY = (DATASET_END - timedelta(days=1)).isoformat()
# the path is the client's, below its base URL (the emulator records it with /api/v1 in front)
RETRY = re.compile(r"gladly GET (/\S+) -> (\d{3}): attempt (\d) of 6 failed, retrying in \d+\.\d\ds")


def python_logs(instance_yaml: Path) -> dict:
    return yaml.safe_load(instance_yaml.read_text(encoding="utf-8"))["python_logs"]


def test_both_instances_hand_the_retry_logger_to_dagster_at_info():
    local, deployed = python_logs(REPO / "dagster.yaml"), python_logs(REPO / "deploy" / "dagster.yaml")
    assert local == deployed
    assert http.log.name == http.RETRY_LOGGER in local["managed_python_loggers"]
    assert logging.getLevelName(local["python_log_level"]) <= logging.INFO  # retries are logged at INFO


def test_retries_under_429_and_5xx_are_in_the_run_log_with_method_path_status_and_attempt(
    small_dataset, gladly_server_factory, tmp_path
):
    server = gladly_server_factory(small_dataset, rate_limit_per_second=1000)
    httpx.put(f"{server.url}/_emulator/faults", json={"seed": 2, "rate_429": 0.15, "rate_5xx": 0.25}).raise_for_status()
    gladly = GladlyResource(
        base_url=server.url, api_user=GLADLY_USER, api_token=GLADLY_TOKEN, requests_per_second=200,
        rate_budget_dir=str(tmp_path / "budget"), backoff_initial_seconds=0.01, backoff_max_seconds=0.05,
        throttle_pause_seconds=0.05,
    )
    with dg.instance_for_test(overrides={"python_logs": python_logs(REPO / "dagster.yaml")}) as instance:
        result = dg.materialize(
            [gladly_export_jobs], partition_key=DAY, instance=instance, raise_on_error=False,
            resources={"gladly": gladly, "storage": MigrationStorage(data_dir=str(tmp_path / "data"))},
        )
        assert result.success
        messages = [record.user_message for record in instance.all_logs(result.run_id)]

    faults = [r for r in httpx.get(f"{server.url}/_emulator/requests").json() if r["fault"]]
    retries = [m.groups() for m in map(RETRY.search, messages) if m]
    # one run-log line per injected fault, each naming the path and status the emulator answered
    expected = sorted((f["path"].removeprefix("/api/v1"), f["fault"]) for f in faults)
    assert sorted((path, status) for path, status, _ in retries) == expected
    statuses = {status for _, status, _ in retries}
    assert "429" in statuses and statuses & {"500", "502", "503"}, statuses
    assert any(path.startswith("/export/jobs/") and "/files/" in path for path, _, _ in retries), "downloads too"
    assert {"1", "2"} <= {attempt for _, _, attempt in retries}, "a request failing twice says which attempt"
    credentials = base64.b64encode(f"{GLADLY_USER}:{GLADLY_TOKEN}".encode()).decode()
    assert not any(GLADLY_TOKEN in m or credentials in m for m in messages)
