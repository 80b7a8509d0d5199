"""The Gladly export archive against hostile and broken input (issue 12, items 1, 2, 3, 7, 11):
ZIPs with clashing members, bombs and links, links in the landing folder, job ids and file names
from the API that try to leave the archive, and one bad export among good ones."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from migration_pipeline.vendors.gladly.archive import (
    ExportArchive,
    UnsafeExportName,
    ZipLimits,
    coverage_gaps,
)
from migration_pipeline.vendors.gladly.resources import GladlyResource
from migration_pipeline_tests.conftest import GLADLY_TOKEN, GLADLY_USER, start_gladly

MiB = 1 << 20


# -- helpers ---------------------------------------------------------------------------------
def _items(*pairs: tuple[str, str]) -> bytes:
    """conversation_items.jsonl lines for (item id, timestamp) pairs."""
    return b"".join(json.dumps({"id": i, "timestamp": ts, "content": {"type": "CHAT_MESSAGE"}}).encode() + b"\n"
                    for i, ts in pairs)


def _landing(data_dir: Path) -> Path:
    landing = data_dir / "landing" / "gladly"
    landing.mkdir(parents=True, exist_ok=True)
    return landing


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _zeros_zip(path: Path, member: str, size: int) -> Path:
    """About a thousandth of `size` on disk, inflating to `size` bytes of zeros."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open(member, "w") as out:
        for _ in range(size // MiB):
            out.write(bytes(MiB))
    return path


def _landed_jobs(data_dir: Path):
    return [j for j in ExportArchive(data_dir).all_jobs() if j.source == "landing"]


def _item_ids(jobs) -> set[str]:
    return {
        json.loads(line)["id"]
        for job in jobs
        if "conversation_items.jsonl" in job.files
        for line in job.file_path("conversation_items.jsonl").read_text().splitlines()
    }


def _files_under(root: Path) -> set[str]:
    """Every file and link below `root`, as paths relative to it (directories left out)."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_symlink() or not p.is_dir()}


def _day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- item 1: members of the same name ----------------------------------------------------------
def test_same_file_name_in_two_zip_folders_keeps_both_days(tmp_path):
    landing = _landing(tmp_path)
    _zip(landing / "two-days.zip", {
        "day1/conversation_items.jsonl": _items(("i1", "2026-11-01T10:00:00Z")),
        "day2/conversation_items.jsonl": _items(("i2", "2026-11-02T10:00:00Z")),
    })
    ExportArchive(tmp_path).archive_from_landing(landing)

    jobs = _landed_jobs(tmp_path)
    assert _item_ids(jobs) == {"i1", "i2"}, "an item of one day was dropped"
    windows = [(j.start_at, j.end_at) for j in jobs]
    assert coverage_gaps(windows, _day("2026-11-01"), _day("2026-11-03")) == []
    assert {j.origin for j in jobs} == {f"{landing / 'two-days.zip'}:day1/", f"{landing / 'two-days.zip'}:day2/"}


def test_the_same_member_path_twice_in_a_zip_is_refused_by_name(tmp_path):
    landing = _landing(tmp_path)
    _zip(landing / "twice.zip", {"conversation_items.jsonl": _items(("i1", "2026-11-01T10:00:00Z"))})
    with zipfile.ZipFile(landing / "twice.zip", "a") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("conversation_items.jsonl", _items(("i2", "2026-11-02T10:00:00Z")))
    scan = ExportArchive(tmp_path).archive_from_landing(landing)
    [rejected] = scan.rejected
    assert "conversation_items.jsonl" in rejected.reason and "twice" in rejected.reason
    assert not _landed_jobs(tmp_path)


# -- item 2: bombs, links, paths in ZIPs ---------------------------------------------------------
def test_zip_bomb_is_stopped_at_the_size_cap_and_leaves_nothing(tmp_path):
    landing = _landing(tmp_path)
    bomb = _zeros_zip(landing / "bomb.zip", "export/conversation_items.jsonl", 48 * MiB)
    assert bomb.stat().st_size < 400_000
    archive = ExportArchive(tmp_path, zip_limits=ZipLimits(max_unzipped_bytes=4 * MiB, max_ratio=1e9))
    scan = archive.archive_from_landing(landing)

    [rejected] = scan.rejected
    assert rejected.source == str(bomb)
    assert "4194304" in rejected.reason and "uncompressed" in rejected.reason
    assert not scan.archived
    assert _files_under(tmp_path) == {"landing/gladly/bomb.zip"}


def test_zip_bomb_is_stopped_by_the_ratio_cap_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MIGRATION_LANDING_MAX_UNZIPPED_BYTES", raising=False)
    monkeypatch.delenv("MIGRATION_LANDING_MAX_ZIP_RATIO", raising=False)
    landing = _landing(tmp_path)
    _zeros_zip(landing / "bomb.zip", "conversation_items.jsonl", 32 * MiB)
    scan = ExportArchive(tmp_path).archive_from_landing(landing)
    [rejected] = scan.rejected
    assert "ratio" in rejected.reason and "conversation_items.jsonl" in rejected.reason
    assert _files_under(tmp_path) == {"landing/gladly/bomb.zip"}


def test_zip_symlink_member_is_refused(tmp_path):
    landing = _landing(tmp_path)
    with zipfile.ZipFile(landing / "links.zip", "w") as archive:
        archive.writestr("export/conversation_items.jsonl", _items(("i1", "2026-11-01T10:00:00Z")))
        link = zipfile.ZipInfo("export/customers.jsonl")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    scan = ExportArchive(tmp_path).archive_from_landing(landing)
    [rejected] = scan.rejected
    assert "export/customers.jsonl" in rejected.reason and "symbolic link" in rejected.reason
    assert not _landed_jobs(tmp_path)


@pytest.mark.parametrize("member", ["../conversation_items.jsonl", "/abs/conversation_items.jsonl",
                                    "a/../../conversation_items.jsonl", "c:\\x\\conversation_items.jsonl"])
def test_zip_member_paths_that_leave_the_zip_are_refused(tmp_path, member):
    landing = _landing(tmp_path)
    _zip(landing / "slip.zip", {member: _items(("i1", "2026-11-01T10:00:00Z"))})
    scan = ExportArchive(tmp_path).archive_from_landing(landing)
    [rejected] = scan.rejected
    assert "unsafe member path" in rejected.reason
    assert _files_under(tmp_path) == {"landing/gladly/slip.zip"}


def test_links_in_the_landing_folder_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "conversation_items.jsonl").write_bytes(_items(("secret", "2026-11-01T10:00:00Z")))
    _zip(outside / "elsewhere.zip", {"conversation_items.jsonl": _items(("secret2", "2026-11-01T10:00:00Z"))})
    data = tmp_path / "data"
    landing = _landing(data)
    (landing / "linked-file").mkdir()
    (landing / "linked-file" / "conversation_items.jsonl").symlink_to(outside / "conversation_items.jsonl")
    (landing / "linked-dir").symlink_to(outside, target_is_directory=True)
    (landing / "linked.zip").symlink_to(outside / "elsewhere.zip")
    (landing / "good").mkdir()
    (landing / "good" / "conversation_items.jsonl").write_bytes(_items(("ok", "2026-11-02T10:00:00Z")))

    scan = ExportArchive(data).archive_from_landing(landing)

    refused = {r.source: r.reason for r in scan.rejected}
    assert set(refused) == {str(landing / "linked-file"), str(landing / "linked-dir"), str(landing / "linked.zip")}
    assert all("symbolic link" in reason for reason in refused.values())
    assert _item_ids(_landed_jobs(data)) == {"ok"}


# -- item 3: job ids and file names from the API ------------------------------------------------
def _hostile_dataset(root: Path, jobs: list[dict]) -> Path:
    """A dataset for the Gladly emulator with just these export jobs (each with an agents file)."""
    for n, job in enumerate(jobs):
        folder = root / "gladly" / "jobs" / f"job{n}"
        folder.mkdir(parents=True)
        body = {"status": "COMPLETED", "updatedAt": "2026-11-19T06:00:00Z", "scheduleId": None,
                "parameters": {"type": "CONVERSATIONS", "startAt": "2026-11-18T00:00:00Z",
                               "endAt": "2026-11-19T00:00:00Z"}, **job}
        (folder / "job.json").write_text(json.dumps(body))
        (folder / "agents.jsonl").write_text('{"id": "a1", "name": "Amy", "emailAddress": "amy@x.com"}\n')
    return root


@pytest.mark.parametrize(
    "job, reason",
    [
        ({"id": "../../../../outside-job", "files": ["agents.jsonl"]}, "job id"),
        ({"id": "JOB1", "files": ["agents.jsonl", "../../../../../outside.txt"]}, "file name"),
        ({"id": "JOB2", "files": ["archive.json"]}, "file name"),
        ({"id": "..", "files": ["agents.jsonl"]}, "job id"),
    ],
)
def test_hostile_job_id_or_file_name_writes_nothing(tmp_path, job, reason):
    server = start_gladly(_hostile_dataset(tmp_path / "dataset", [job]))
    sandbox = tmp_path / "sandbox"
    data = sandbox / "data"
    try:
        resource = GladlyResource(base_url=server.url, api_user=GLADLY_USER, api_token=GLADLY_TOKEN,
                                  requests_per_second=100)
        with resource.client() as client:
            [listed] = client.list_export_jobs(status="COMPLETED")
            with pytest.raises(UnsafeExportName) as caught:
                ExportArchive(data).archive_from_api(client, listed)
    finally:
        server.stop()
    assert reason in str(caught.value) and repr(job["id"]) in str(caught.value)
    assert _files_under(sandbox) == set(), "nothing may be written for a job that cannot be archived safely"


def test_job_dir_refuses_unsafe_ids_and_keeps_gladly_ids(tmp_path):
    archive = ExportArchive(tmp_path)
    for bad in ["", ".", "..", "a/b", "a\\b", "x\0y", ".hidden", "x" * 200, "../../etc"]:
        with pytest.raises(UnsafeExportName):
            archive.job_dir(bad)
    # Gladly ids are 22 URL-safe base64 characters and may start with "-" or "_".
    for good in ["WmeA3Y51Q5ayCAaZ1AotIA", "-meA3Y51Q5ayCAaZ1AotIA", "_x", "landing-0123abcd"]:
        assert archive.job_dir(good) == archive.root / good


def test_a_job_folder_that_links_outside_the_archive_is_refused(tmp_path):
    """The second guard: a name that passes the pattern still may not resolve outside the archive."""
    archive = ExportArchive(tmp_path / "data")
    archive.root.mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (archive.root / "JOB9").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(UnsafeExportName, match="resolves outside"):
        archive.job_dir("JOB9")
    assert archive.all_jobs() == []


def test_zip_limits_come_from_the_environment(tmp_path, monkeypatch):
    """Through the settings and the storage resource, as the landing asset gets them."""
    from migration_pipeline.resources import storage_resource
    from migration_pipeline.settings import SettingsError, load_settings

    landing = _landing(tmp_path)
    _zeros_zip(landing / "bomb.zip", "conversation_items.jsonl", 8 * MiB)
    monkeypatch.setenv("MIGRATION_LANDING_MAX_ZIP_RATIO", "1e9")
    monkeypatch.setenv("MIGRATION_LANDING_MAX_UNZIPPED_BYTES", str(2 * MiB))
    limits = storage_resource(load_settings()).zip_limits()
    [rejected] = ExportArchive(tmp_path, limits).archive_from_landing(landing).rejected
    assert str(2 * MiB) in rejected.reason
    monkeypatch.setenv("MIGRATION_LANDING_MAX_UNZIPPED_BYTES", "lots")
    with pytest.raises(SettingsError, match="MIGRATION_LANDING_MAX_UNZIPPED_BYTES"):
        load_settings()


# -- item 7: one bad export among good ones ------------------------------------------------------
def test_bad_zip_does_not_stop_the_good_zip_after_it(tmp_path):
    landing = _landing(tmp_path)
    _zip(landing / "a-customers-only.zip", {"customers.jsonl": b'{"id": "c1"}\n'})
    _zip(landing / "b-good.zip", {"export/conversation_items.jsonl": _items(("i1", "2026-11-01T10:00:00Z")),
                                  "export/customers.jsonl": b'{"id": "c1"}\n'})
    scan = ExportArchive(tmp_path).archive_from_landing(landing)

    [(good, fresh)] = scan.archived
    assert fresh and _item_ids([good]) == {"i1"}
    [bad] = scan.rejected
    assert bad.source == str(landing / "a-customers-only.zip") and "window" in bad.reason
    assert str(bad).startswith(str(landing / "a-customers-only.zip"))
    jobs_root = ExportArchive(tmp_path).root
    assert sorted(p.name for p in jobs_root.iterdir()) == [good.job_id], "a refused export left a folder"
    left = {f for f in _files_under(tmp_path) if not (tmp_path / f).is_relative_to(good.directory)}
    assert left == {"landing/gladly/a-customers-only.zip", "landing/gladly/b-good.zip"}, "temp files left behind"


def test_job_json_inside_a_zip_sets_the_window(tmp_path):
    landing = _landing(tmp_path)
    job = {"id": "support-1", "parameters": {"startAt": "2026-10-01T00:00:00Z", "endAt": "2026-11-03T00:00:00Z"}}
    _zip(landing / "history.zip", {
        "export/job.json": json.dumps(job).encode(),
        "export/conversation_items.jsonl": _items(("i1", "2026-11-02T10:00:00Z")),
    })
    # A customers-only export is usable once its job.json says which window it covers.
    _zip(landing / "customers.zip", {"job.json": json.dumps(job).encode(), "customers.jsonl": b'{"id": "c1"}\n'})
    scan = ExportArchive(tmp_path).archive_from_landing(landing)

    assert not scan.rejected
    assert {(j.start_at, j.end_at) for j, _ in scan.archived} == {(_day("2026-10-01"), _day("2026-11-03"))}
    assert len(scan.archived) == 2


@pytest.mark.parametrize("job_json, reason", [
    (b"not json", "job.json"),
    (b'{"parameters": {"startAt": "2026-11-01T00:00:00Z"}}', "endAt"),
    (b'{"parameters": {"startAt": "2026-11-01T00:00:00", "endAt": "2026-11-02T00:00:00Z"}}', "no timezone"),
    (b'{"parameters": {"startAt": "2026-11-02T00:00:00Z", "endAt": "2026-11-01T00:00:00Z"}}', "before"),
    (b"[1, 2]", "job.json"),
])
def test_a_bad_job_json_is_refused_with_its_reason(tmp_path, job_json, reason):
    landing = _landing(tmp_path)
    (landing / "folder").mkdir()
    (landing / "folder" / "job.json").write_bytes(job_json)
    (landing / "folder" / "conversation_items.jsonl").write_bytes(_items(("i1", "2026-11-01T10:00:00Z")))
    _zip(landing / "good.zip", {"conversation_items.jsonl": _items(("i2", "2026-11-02T10:00:00Z"))})
    scan = ExportArchive(tmp_path).archive_from_landing(landing)
    [bad] = scan.rejected
    assert bad.source == str(landing / "folder") and reason in bad.reason
    assert _item_ids(_landed_jobs(tmp_path)) == {"i2"}


def test_items_with_timestamps_out_of_range_do_not_stop_the_scan(tmp_path):
    landing = _landing(tmp_path)
    nested = b"[" * 100_000 + b"\n"
    (landing / "conversation_items.jsonl").write_bytes(
        _items(("far", "0001-01-01T00:00:00+14:00"), ("ok", "2026-11-01T10:00:00Z")) + nested
    )
    scan = ExportArchive(tmp_path).archive_from_landing(landing)
    assert not scan.rejected
    [(job, _)] = scan.archived
    assert (job.start_at, job.end_at) == (_day("2026-11-01"), _day("2026-11-02"))


# -- item 11: staged copies removed on any error --------------------------------------------------
_COPY_UNDER_A_FILE_SIZE_LIMIT = textwrap.dedent("""
    import json, resource, signal, sys
    from pathlib import Path
    from migration_pipeline.vendors.gladly.archive import ExportArchive
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
    data = Path(sys.argv[1])
    scan = ExportArchive(data).archive_from_landing(data / "landing" / "gladly")
    print(json.dumps([[r.source, r.reason] for r in scan.rejected]))
""")


def test_a_copy_that_fails_half_way_leaves_no_temp_copy_and_no_job_folder(tmp_path):
    """A real write error in the middle of a copy (the kernel's file size limit, as a full disk
    would): the export is refused with the reason and no copy or job folder is left behind."""
    landing = _landing(tmp_path)
    (landing / "big").mkdir()
    lines = [(f"i{n}", "2026-11-01T10:00:00Z") for n in range(20_000)]  # ~1.3 MB
    (landing / "big" / "conversation_items.jsonl").write_bytes(_items(*lines))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run([sys.executable, "-c", _COPY_UNDER_A_FILE_SIZE_LIMIT, str(tmp_path)],
                         check=False, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    [[source, reason]] = json.loads(run.stdout.strip().splitlines()[-1])
    assert source == str(landing / "big") and "File too large" in reason
    assert _files_under(tmp_path) == {"landing/gladly/big/conversation_items.jsonl"}


# -- the asset reports what it refused ----------------------------------------------------------
def test_asset_archives_the_good_landing_export_and_reports_the_bad_one(tmp_path):
    from migration_pipeline.pairs.gladly_to_unthread.assets.export_jobs import gladly_export_jobs
    from migration_pipeline.resources import MigrationStorage

    (tmp_path / "dataset" / "gladly" / "jobs").mkdir(parents=True)
    data = tmp_path / "data"
    landing = _landing(data)
    _zip(landing / "a-customers-only.zip", {"customers.jsonl": b'{"id": "c1"}\n'})
    _zip(landing / "b-good.zip", {"conversation_items.jsonl": _items(("i1", "2026-11-02T10:00:00Z"))})
    server = start_gladly(tmp_path / "dataset")
    instance = dg.DagsterInstance.ephemeral()
    try:
        result = dg.materialize(
            [gladly_export_jobs],
            resources={
                "gladly": GladlyResource(base_url=server.url, api_user=GLADLY_USER, api_token=GLADLY_TOKEN),
                "storage": MigrationStorage(data_dir=str(data)),
            },
            partition_key="2026-11-02",
            instance=instance,
            raise_on_error=False,
        )
    finally:
        server.stop()
    assert result.success
    mat = result.asset_materializations_for_node(gladly_export_jobs.op.name)[0]
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["landing_exports"] == 1 and meta["exports_unusable"] == 1
    [refused] = meta["landing_refused"]
    assert refused["source"] == str(landing / "a-customers-only.zip") and "window" in refused["reason"]
    errors = [e.user_message for e in instance.all_logs(result.run_id) if e.level >= 40]
    assert any("a-customers-only.zip" in m and "window" in m for m in errors), "the refused export must be logged"
