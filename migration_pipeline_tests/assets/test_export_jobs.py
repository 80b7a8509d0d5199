"""`gladly_export_jobs` materialized through Dagster against the Gladly emulator."""

from __future__ import annotations

import shutil
from datetime import timedelta

import dagster as dg
import httpx
import pytest

from migration_pipeline.pairs.gladly_to_unthread.assets.export_jobs import gladly_export_jobs
from sim.emulators.common import FaultConfig
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.gladly.archive import ExportArchive, sha256_file
from migration_pipeline.vendors.gladly.resources import GladlyResource
from sim.synth.dataset import DatasetLayout, read_json
from migration_pipeline_tests.conftest import DATASET_END, GLADLY_TOKEN, GLADLY_USER

FIRST_DAY = (DATASET_END - timedelta(days=20)).isoformat()
LAST_DAY = (DATASET_END - timedelta(days=1)).isoformat()


@pytest.fixture
def fast_gladly(gladly_server_factory):
    """Pacing is not under test here (the client's pacing tests keep real rates): the emulator's
    budget is lifted and the client paces far below it."""
    return lambda data, **kw: gladly_server_factory(data, rate_limit_per_second=1000, **kw)


def _materialize(server, data_dir, first=FIRST_DAY, last=LAST_DAY):
    resources = {
        "gladly": GladlyResource(
            base_url=server.url,
            api_user=GLADLY_USER,
            api_token=GLADLY_TOKEN,
            requests_per_second=200,
            backoff_initial_seconds=0.02,
            backoff_max_seconds=0.2,
        ),
        "storage": MigrationStorage(data_dir=str(data_dir)),
    }
    return dg.materialize(
        [gladly_export_jobs],
        resources=resources,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        raise_on_error=False,
    )


def _metadata(result):
    mat = result.asset_materializations_for_node(gladly_export_jobs.op.name)[0]
    return {k: v.value for k, v in mat.metadata.items()}


def _file_downloads(server):
    log = httpx.get(f"{server.url}/_emulator/requests").json()
    return [r for r in log if "/files/" in r["path"]]


def test_range_archives_every_job_byte_for_byte_and_reuses_them(small_dataset, fast_gladly, tmp_path):
    server = fast_gladly(small_dataset)
    first = _materialize(server, tmp_path)
    assert first.success
    meta = _metadata(first)
    assert meta["jobs_downloaded"] == meta["jobs"] > 0 and meta["exports_unusable"] == 0

    truth = {j["id"]: j for j in read_json(DatasetLayout(small_dataset).manifest)["jobs"]}
    archived = ExportArchive(tmp_path).all_jobs()
    assert archived
    for job in archived:
        for name, info in job.files.items():
            assert info["sha256"] == truth[job.job_id]["sha256"][name] == sha256_file(job.file_path(name))
            assert info["lines"] == truth[job.job_id]["lines"][name]

    downloads_before = len(_file_downloads(server))
    again = _materialize(server, tmp_path)
    assert again.success
    assert _metadata(again)["jobs_downloaded"] == 0
    assert len(_file_downloads(server)) == downloads_before, "a second run must not download again"


def test_truncated_downloads_are_retried_until_whole(small_dataset, fast_gladly, tmp_path):
    server = fast_gladly(small_dataset, faults=FaultConfig(seed=5, truncate_downloads=0.5))
    result = _materialize(server, tmp_path)
    assert result.success
    assert any(r["fault"] == "truncated" for r in _file_downloads(server))
    truth = {j["id"]: j for j in read_json(DatasetLayout(small_dataset).manifest)["jobs"]}
    for job in ExportArchive(tmp_path).all_jobs():
        for name, info in job.files.items():
            assert info["sha256"] == truth[job.job_id]["sha256"][name]
    assert not list(tmp_path.rglob("*.partial"))


def test_missing_window_fails_with_what_to_do(small_dataset, fast_gladly, tmp_path):
    # Without the one-time job, history older than 14 days is covered by no visible job.
    data = tmp_path / "dataset"
    shutil.copytree(small_dataset, data)
    layout = DatasetLayout(data)
    one_time = [j["id"] for j in read_json(layout.manifest)["jobs"] if j["kind"] != "scheduled"]
    assert one_time
    for job_id in one_time:
        shutil.rmtree(layout.job_dir(job_id))
    server = fast_gladly(data)
    result = _materialize(server, tmp_path / "pipeline", first=FIRST_DAY, last=FIRST_DAY)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.to_string()
    assert FIRST_DAY in message and "Gladly Support" in message and "landing" in message


def test_landing_folder_export_is_an_equal_input(small_dataset, fast_gladly, tmp_path):
    """The one-time job is gone from the API; Support's ZIP of it in the landing folder covers the gap."""
    import zipfile

    data = tmp_path / "dataset"
    shutil.copytree(small_dataset, data)
    layout = DatasetLayout(data)
    [one_time] = [j["id"] for j in read_json(layout.manifest)["jobs"] if j["kind"] == "one_time"]
    landing = tmp_path / "pipeline" / "landing" / "gladly"
    landing.mkdir(parents=True)
    with zipfile.ZipFile(landing / "gladly-history-export.zip", "w") as archive:
        for name in ("agents.jsonl", "conversation_items.jsonl", "customers.jsonl", "topics.jsonl"):
            archive.write(layout.job_file(one_time, name), f"export/{name}")
    shutil.rmtree(layout.job_dir(one_time))

    server = fast_gladly(data)
    result = _materialize(server, tmp_path / "pipeline", first=FIRST_DAY, last=FIRST_DAY)
    assert result.success
    assert _metadata(result)["landing_exports"] == 1
    [landed] = [j for j in ExportArchive(tmp_path / "pipeline").all_jobs() if j.source == "landing"]
    for name, info in landed.files.items():
        assert info["sha256"] == sha256_file(small_dataset / "gladly" / "jobs" / one_time / name)
    # dropping the same export again archives nothing new
    again = _materialize(server, tmp_path / "pipeline", first=FIRST_DAY, last=FIRST_DAY)
    assert again.success and len([j for j in ExportArchive(tmp_path / "pipeline").all_jobs() if j.source == "landing"]) == 1


def test_landing_export_without_a_knowable_window_is_refused_by_name(small_dataset, fast_gladly, tmp_path):
    landing = tmp_path / "pipeline" / "landing" / "gladly" / "agents-only"
    landing.mkdir(parents=True)
    (landing / "agents.jsonl").write_text('{"id": "a1", "name": "Amy", "emailAddress": "amy@x.com"}\n')
    server = fast_gladly(small_dataset)
    result = _materialize(server, tmp_path / "pipeline", first=LAST_DAY, last=LAST_DAY)
    assert result.success  # the API jobs still cover the window; the bad export is reported
    assert _metadata(result)["exports_unusable"] == 1
