"""Injected faults through the shared middleware, as they look to a Gladly client."""

from __future__ import annotations

import time

import httpx
import pytest

from sim.emulators.common import FaultConfig

from .conftest import TOKEN, USER, ServerFactory, client_for, errors


def test_injected_429_has_gladly_body(make_server: ServerFactory) -> None:
    with client_for(make_server(faults=FaultConfig(rate_429=1.0))) as client:
        response = client.get("/agents")
    assert response.status_code == 429
    assert errors(response)[0]["code"] == "rate_limited"
    assert "Retry-After" not in response.headers
    # indistinguishable from Gladly's own 429: the org budget headers say the second is spent
    assert response.headers["Ratelimit-Remaining-Second"] == "0"
    assert response.headers["Ratelimit-Limit-Second"].isdigit()


def test_injected_5xx(make_server: ServerFactory) -> None:
    with client_for(make_server(faults=FaultConfig(rate_5xx=1.0))) as client:
        statuses = {client.get("/agents").status_code for _ in range(12)}
        response = client.get("/organization")
    assert statuses <= {500, 502, 503} and len(statuses) > 1
    assert errors(response)[0]["code"] == "server_error"


def test_latency(make_server: ServerFactory) -> None:
    with client_for(make_server(faults=FaultConfig(latency_ms=250))) as client:
        client.get("/agents")  # connection set up outside the timing
        started = time.perf_counter()
        assert client.get("/agents").status_code == 200
    assert time.perf_counter() - started >= 0.25


def test_expired_job_is_listed_but_its_files_are_gone(make_server: ServerFactory) -> None:
    with client_for(make_server(faults=FaultConfig(expire_job_ids=["job-a"]))) as client:
        assert "job-a" in [j["id"] for j in client.get("/export/jobs").json()]
        assert client.get("/export/jobs/job-a").status_code == 200
        gone = client.get("/export/jobs/job-a/files/agents.jsonl")
        assert gone.status_code == 404
        assert errors(gone) == [
            {"code": "not_exist", "detail": "file [agents.jsonl] does not exist for export job [job-a]"}
        ]
        assert client.get("/export/jobs/job-b/files/conversation_items.jsonl").status_code == 200
        assert client.get("/conversation-items/item-1").status_code == 200  # items outlive the files


def test_expire_rate_picks_a_stable_set_of_jobs(make_server: ServerFactory) -> None:
    server = make_server(faults=FaultConfig(expire_jobs=1.0))
    with client_for(server) as client:
        assert client.get("/export/jobs/job-b/files/customers.jsonl").status_code == 404
        assert client.get("/export/jobs/job-b/files/customers.jsonl").status_code == 404


@pytest.mark.parametrize(
    "path",
    ["/api/v1/export/jobs/job-big/files/conversation_items.jsonl", "/_files/attachments/att-1",
     "/api/v1/conversation-items/item-call/media/recording"],
)
def test_truncated_download_is_a_protocol_error(make_server: ServerFactory, path: str) -> None:
    server = make_server(faults=FaultConfig(truncate_downloads=1.0))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(server.url + path, auth=(USER, TOKEN))
    # non-download API calls are untouched by the truncation fault
    with client_for(server) as client:
        assert client.get("/agents").status_code == 200


def test_fault_sequence_is_deterministic_under_a_seed(make_server: ServerFactory) -> None:
    def sequence(seed: int) -> list[int]:
        with client_for(make_server(faults=FaultConfig(seed=seed, rate_5xx=0.4, rate_429=0.2))) as client:
            return [client.get(path).status_code for path in ["/agents", "/topics", "/organization"] * 8]

    first, again, other = sequence(7), sequence(7), sequence(8)
    assert first == again
    assert first != other
    assert 200 in first and any(s >= 429 for s in first)


def test_faults_are_recorded_in_the_request_log(make_server: ServerFactory) -> None:
    server = make_server(faults=FaultConfig(rate_429=1.0))
    with client_for(server) as client:
        client.get("/agents")
    log = httpx.get(server.url + "/_emulator/requests").json()
    assert [(r["path"], r["status"], r["fault"]) for r in log] == [("/api/v1/agents", 429, "429")]
