"""Ids from Gladly data are put in URL paths as ONE percent-encoded segment (issue 12 item 3).

A customer id such as `../export/jobs/JOB1` must not turn a profile lookup into a request for
another resource, sent with the pipeline's credentials. The unit under test is URL building, so
the raw path is recorded by an httpx MockTransport; one test checks the same against the real
emulator (what the server routes on, and that the hostile lookup answers "not found").
"""

from __future__ import annotations

import errno
import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from migration_pipeline.lib.http import VendorAPIError
from migration_pipeline.vendors.gladly.client import GladlyClient
from sim.synth.dataset import DatasetLayout, write_json
from migration_pipeline_tests.conftest import DATASET_NOW, GLADLY_TOKEN, GLADLY_USER

HOSTILE_IDS = ["../../export/jobs/JOB1", "..", ".", "a/b", "x?y=1", "x#frag", "%2e%2e", "a b", "é/../"]


def encoded(value: str) -> str:
    """What a path segment must look like on the wire: nothing but the id, percent-encoded, and
    never a bare `.` / `..` (which any URL library removes as a dot segment)."""
    segment = quote(value, safe="")
    return segment.replace(".", "%2E") if segment in (".", "..") else segment


class Recorder:
    """A transport answering every request with `answer(request)` and keeping the raw paths."""

    def __init__(self, answer):
        self.paths: list[str] = []
        self.answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.raw_path.decode("ascii"))
        answer = self.answer(request)  # as an unread stream, like a server's, so any method may stream it
        return httpx.Response(answer.status_code, headers=answer.headers, stream=httpx.ByteStream(answer.read()))


def client_with(recorder: Recorder) -> GladlyClient:
    return GladlyClient(
        "http://gladly.test", "user", "token", requests_per_second=0, max_attempts=1, transport=httpx.MockTransport(recorder)
    )


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_every_id_is_one_encoded_path_segment(hostile: str, tmp_path: Path) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if "/attachments/" in request.url.path:
            return httpx.Response(404, json={"errors": [{"code": "not_exist", "detail": "no"}]})
        if "/files/" in request.url.path:
            return httpx.Response(200, content=b"{}\n")
        if "/export/jobs/" in request.url.path:
            return httpx.Response(200, json={"id": "j", "status": "COMPLETED", "updatedAt": "2026-01-01T00:00:00Z",
                                             "parameters": {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-02T00:00:00Z"}})
        if "voice-transcript" in request.url.path:
            return httpx.Response(404, json={"errors": []})
        return httpx.Response(404, json={"errors": []})

    recorder = Recorder(answer)
    seg = encoded(hostile)
    with client_with(recorder) as client:
        client.get_export_job(hostile)
        client.download_export_file(hostile, hostile, tmp_path / "out.jsonl")
        client.get_customer(hostile)
        client.voice_transcript(hostile)
        with pytest.raises(VendorAPIError):
            client.download_attachment(hostile, hostile, max_bytes=100)
    assert recorder.paths == [
        f"/api/v1/export/jobs/{seg}",
        f"/api/v1/export/jobs/{seg}/files/{seg}",
        f"/api/v1/customer-profiles/{seg}",
        f"/api/v1/conversation-items/{seg}/voice-transcript",
        f"/api/v1/conversation-items/{seg}/attachments/{seg}",
    ]


def one_job_dataset(root: Path, file_bytes: bytes = b"") -> DatasetLayout:
    """A dataset holding one visible export job JOB1 (with one file when `file_bytes` is given)."""
    layout = DatasetLayout(root)
    updated = (DATASET_NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    files = ["conversation_items.jsonl"] if file_bytes else []
    write_json(layout.job_file("JOB1", "job.json"), {
        "id": "JOB1", "scheduleId": "s", "status": "COMPLETED", "updatedAt": updated,
        "parameters": {"type": "CONVERSATIONS", "startAt": updated, "endAt": updated}, "files": files,
    })
    if file_bytes:
        layout.job_file("JOB1", "conversation_items.jsonl").write_bytes(file_bytes)
    return layout


def test_a_customer_id_cannot_reach_an_export_job_on_the_emulator(tmp_path: Path, gladly_server_factory) -> None:
    """Before the fix, `../export/jobs/JOB1` as a customer id fetched the export job (with the
    pipeline's credentials) and read it back as a customer profile."""
    layout = one_job_dataset(tmp_path / "ds")
    server = gladly_server_factory(layout.root)
    httpx.post(f"{server.url}/_emulator/requests/clear")
    with GladlyClient(server.url, GLADLY_USER, GLADLY_TOKEN, requests_per_second=0, max_attempts=1) as client:
        assert client.get_export_job("JOB1") is not None  # the job exists and is visible
        lookup = client.get_customer("../export/jobs/JOB1")
    assert lookup.status == "not_found" and lookup.profile is None
    log = httpx.get(f"{server.url}/_emulator/requests").json()
    # The emulator logs the decoded path: still under customer-profiles, never the export job.
    assert [entry["path"] for entry in log] == ["/api/v1/export/jobs/JOB1", "/api/v1/customer-profiles/../export/jobs/JOB1"]
    assert json.dumps(log).count("/api/v1/export/jobs/JOB1") == 1


# -- issue 12 item 11 (part): a failed export download leaves no `.partial` behind ------------------


class FullDisk:
    """A binary writer that takes the first write and then fails like a full disk (ENOSPC)."""

    def __init__(self, real):
        self.real, self.writes = real, 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        if self.writes > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real.write(data)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()


def test_a_full_disk_mid_download_leaves_no_partial_file(tmp_path: Path, gladly_server_factory, monkeypatch) -> None:
    layout = one_job_dataset(tmp_path / "ds", b'{"id": "x"}\n' * 50_000)  # ~600 kB: several chunks
    server = gladly_server_factory(layout.root)
    dest_dir = tmp_path / "archive" / "JOB1"
    real_open = Path.open

    def open_on_a_full_disk(self: Path, mode: str = "r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        return FullDisk(handle) if self.name.endswith(".partial") and "w" in mode else handle

    monkeypatch.setattr(Path, "open", open_on_a_full_disk)
    with GladlyClient(server.url, GLADLY_USER, GLADLY_TOKEN, requests_per_second=0, max_attempts=2) as client:
        with pytest.raises(OSError) as raised:
            client.download_export_file("JOB1", "conversation_items.jsonl", dest_dir / "conversation_items.jsonl")
    assert raised.value.errno == errno.ENOSPC
    assert sorted(p.name for p in dest_dir.iterdir()) == []  # neither the file nor its .partial
