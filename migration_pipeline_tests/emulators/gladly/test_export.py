"""Export API: job listing and its filters, single jobs, file downloads, deletion, schedules, clock."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from sim.synth.dataset import DatasetLayout

from .conftest import JOBS, SCHEDULES, ServerFactory, client_for, errors

VISIBLE = ["job-pending", "job-running", "job-b", "job-big", "job-a", "job-failed"]  # newest first


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_list_jobs_shows_the_last_14_days_only(client: httpx.Client) -> None:
    response = client.get("/export/jobs")
    assert ids(response) == VISIBLE  # job-old (15 days) and job-future are hidden
    assert response.json()[-2] == JOBS["job-a"]  # served exactly as job.json holds it


@pytest.mark.parametrize(
    ("status", "expected"),
    [("COMPLETED", ["job-b", "job-big", "job-a"]), ("IN_PROGRESS", ["job-running"]), ("PENDING", ["job-pending"]),
     ("FAILED", ["job-failed"])],
)
def test_status_filter(client: httpx.Client, status: str, expected: list[str]) -> None:
    assert ids(client.get("/export/jobs", params={"status": status})) == expected


@pytest.mark.parametrize("status", ["completed", "DONE", ""])
def test_bad_status_is_400(client: httpx.Client, status: str) -> None:
    response = client.get("/export/jobs", params={"status": status})
    assert response.status_code == 400
    assert errors(response)[0]["attr"] == "status"
    assert errors(response)[0]["code"] == "invalid"


def test_start_and_end_filter_on_updated_at_with_any_precision(client: httpx.Client) -> None:
    # job-a was updated at 2024-06-12T12:00:00.123456789Z: nanoseconds matter at the boundary
    params = {"startAt": "2024-06-12T12:00:00.123456789Z", "endAt": "2024-06-12T12:00:00.123456789Z"}
    assert ids(client.get("/export/jobs", params=params)) == ["job-a"]
    params = {"startAt": "2024-06-12T12:00:00.12345679Z"}  # one (rounded) tick later
    assert "job-a" not in ids(client.get("/export/jobs", params=params))
    params = {"startAt": "2024-06-13T00:00:00Z", "endAt": "2024-06-14T13:00:00.5+01:00"}
    assert ids(client.get("/export/jobs", params=params)) == ["job-b", "job-big"]


@pytest.mark.parametrize(
    ("params", "attr", "detail"),
    [
        ({"startAt": "2024-05-31T11:59:59.999Z"}, "startAt", "startAt cannot be earlier than 14 days ago"),
        ({"endAt": "2024-06-15T12:00:00.001Z"}, "endAt", "endAt cannot be in the future"),
        ({"startAt": "2024-06-14T00:00:00Z", "endAt": "2024-06-13T00:00:00Z"}, "endAt",
         "endAt cannot be before startAt"),
        ({"startAt": "2024-06-14"}, "startAt", "startAt must be an RFC3339 timestamp, got [2024-06-14]"),
        ({"endAt": "2024-06-14T00:00:00"}, "endAt", "endAt must be an RFC3339 timestamp, got [2024-06-14T00:00:00]"),
    ],
)
def test_bad_start_or_end_is_400(client: httpx.Client, params: dict[str, str], attr: str, detail: str) -> None:
    response = client.get("/export/jobs", params=params)
    assert response.status_code == 400
    assert errors(response) == [{"attr": attr, "code": "invalid", "detail": detail}]


def test_start_exactly_14_days_ago_is_accepted(client: httpx.Client) -> None:
    assert ids(client.get("/export/jobs", params={"startAt": "2024-06-01T12:00:00Z", "endAt": "2024-06-15T12:00:00Z"}))


def test_get_job_and_404s(client: httpx.Client) -> None:
    assert client.get("/export/jobs/job-running").json() == JOBS["job-running"]
    for job_id in ("job-old", "job-future", "nope"):
        response = client.get(f"/export/jobs/{job_id}")
        assert response.status_code == 404
        assert errors(response) == [{"code": "not_exist", "detail": f"export job [{job_id}] does not exist"}]


def test_file_download_is_byte_for_byte(client: httpx.Client, dataset: DatasetLayout) -> None:
    on_disk = dataset.job_file("job-a", "conversation_items.jsonl").read_bytes()
    response = client.get("/export/jobs/job-a/files/conversation_items.jsonl")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["content-length"] == str(len(on_disk))
    assert sha256(response.content) == sha256(on_disk)
    assert b"{this line is not json" in response.content  # malformed lines are served as they are


def test_multi_megabyte_file_streams_in_chunks(client: httpx.Client, dataset: DatasetLayout) -> None:
    path = dataset.job_file("job-big", "conversation_items.jsonl")
    assert path.stat().st_size > 3_000_000
    digest, chunks, total = hashlib.sha256(), 0, 0
    with client.stream("GET", "/export/jobs/job-big/files/conversation_items.jsonl") as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            digest.update(chunk)
            chunks += 1
            total += len(chunk)
    assert total == path.stat().st_size
    assert chunks > 1
    assert digest.hexdigest() == sha256(path.read_bytes())


@pytest.mark.parametrize(
    ("job_id", "name", "detail"),
    [
        ("job-b", "topics.jsonl", "file [topics.jsonl] does not exist for export job [job-b]"),  # not in files
        ("job-a", "job.json", "file [job.json] does not exist for export job [job-a]"),
        ("job-a", "..%2Fjob-b%2Fcustomers.jsonl", None),
        ("job-old", "topics.jsonl", "export job [job-old] does not exist"),
        ("job-future", "topics.jsonl", "export job [job-future] does not exist"),
    ],
)
def test_file_404s(client: httpx.Client, job_id: str, name: str, detail: str | None) -> None:
    response = client.get(f"/export/jobs/{job_id}/files/{name}")
    assert response.status_code == 404
    assert errors(response)[0]["code"] == "not_exist"
    if detail is not None:
        assert errors(response)[0]["detail"] == detail


def test_delete_rules(make_server: ServerFactory, dataset: DatasetLayout) -> None:
    with client_for(make_server()) as client:
        for job_id, status in (("job-running", "IN_PROGRESS"), ("job-pending", "PENDING")):
            refused = client.delete(f"/export/jobs/{job_id}")
            assert refused.status_code == 400
            assert errors(refused) == [{
                "attr": "status", "code": "temporary_failure",
                "detail": f"unable to delete job with status [{status}]. Please try again after it has finished",
            }]
        assert client.delete("/export/jobs/job-old").status_code == 404
        assert client.delete("/export/jobs/nope").status_code == 404
        for job_id in ("job-a", "job-failed"):
            deleted = client.delete(f"/export/jobs/{job_id}")
            assert deleted.status_code == 204 and deleted.content == b""
        assert client.get("/export/jobs/job-a").status_code == 404
        assert client.get("/export/jobs/job-a/files/topics.jsonl").status_code == 404
        assert client.delete("/export/jobs/job-a").status_code == 404
        assert "job-a" not in ids(client.get("/export/jobs"))
        # the REST API keeps the items of a deleted export
        assert client.get("/conversation-items/item-1").status_code == 200
    assert dataset.job_file("job-a", "job.json").is_file()  # nothing deleted on disk


def test_moving_the_clock_makes_new_jobs_appear_and_old_ones_expire(make_server: ServerFactory) -> None:
    server = make_server()
    with client_for(server) as client:
        assert "job-future" not in ids(client.get("/export/jobs"))
        moved = httpx.put(server.url + "/_emulator/clock", json={"now": "2024-06-16T12:00:00.000Z"})
        assert moved.json() == {"now": "2024-06-16T12:00:00.000Z", "pinned": True}
        listed = ids(client.get("/export/jobs"))
        assert listed[0] == "job-future"
        assert client.get("/export/jobs/job-future/files/topics.jsonl").status_code == 200
        # job-pending was updated at 2024-06-15T11:00Z: visible while updatedAt > now - 14 days
        httpx.put(server.url + "/_emulator/clock", json={"now": "2024-06-29T10:59:59.999Z"})
        assert ids(client.get("/export/jobs")) == ["job-future", "job-pending"]
        httpx.put(server.url + "/_emulator/clock", json={"now": "2024-06-29T11:00:00Z"})
        assert ids(client.get("/export/jobs")) == ["job-future"]
        assert httpx.put(server.url + "/_emulator/clock", json={"now": "tomorrow"}).status_code == 400
        wall = httpx.put(server.url + "/_emulator/clock", json={"now": None}).json()
        assert wall["pinned"] is False
        assert httpx.get(server.url + "/_emulator/clock").json()["pinned"] is False
        assert ids(client.get("/export/jobs")) == []  # the fixture's jobs are long gone by wall clock


def test_schedules(client: httpx.Client) -> None:
    response = client.get("/export/schedules")
    assert response.status_code == 200
    assert response.json() == SCHEDULES
