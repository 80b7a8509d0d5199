"""VendorHttpClient against a real server over loopback, with the emulators' fault middleware."""

import re
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from migration_pipeline.lib.http import VendorAPIError, VendorHttpClient
from sim.emulators.common import (
    EmulatorMiddleware,
    EmulatorState,
    FaultConfig,
    FaultDecider,
    RequestLog,
    RunningServer,
)

SECRET = "s3cr3t-token-value"


def _server(faults: FaultConfig, retry_after: str | None = None):
    calls = {"writes": 0, "flaky": 0}

    async def ok(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def write(_: Request) -> JSONResponse:
        calls["writes"] += 1
        return JSONResponse({"n": calls["writes"]}, status_code=201)

    async def invalid(_: Request) -> JSONResponse:
        return JSONResponse({"error": "title must be a string"}, status_code=400)

    async def throttled_once(_: Request) -> Response:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            headers = {"Retry-After": retry_after} if retry_after else {}
            return JSONResponse({"error": "slow down"}, status_code=429, headers=headers)
        return JSONResponse({"ok": True})

    state = EmulatorState(
        name="test", faults=FaultDecider(faults), log=RequestLog(), api_prefix="/api", download_pattern=re.compile("/dl")
    )
    app = Starlette(
        routes=[
            Route("/api/ok", ok),
            Route("/api/write", write, methods=["POST"]),
            Route("/api/invalid", invalid, methods=["POST"]),
            Route("/api/throttled", throttled_once),
        ]
    )
    return RunningServer(EmulatorMiddleware(app, state)), state, calls


def _client(url: str, **kw) -> VendorHttpClient:
    return VendorHttpClient(
        url, headers={"X-Api-Key": SECRET}, backoff_initial_seconds=0.01, backoff_max_seconds=0.05,
        throttle_pause_seconds=0.05, **kw
    )


def test_retries_injected_429_and_5xx_until_success():
    server, state, _ = _server(FaultConfig(seed=3, rate_429=0.3, rate_5xx=0.2))
    with server, _client(server.url, max_attempts=20) as client:
        for _ in range(30):
            assert client.request("GET", "/api/ok").json() == {"ok": True}
    faults = [r["fault"] for r in state.log.snapshot() if r["fault"]]
    assert faults, "the fault middleware should have injected something at these rates"
    assert client.stats.retries == len(faults)
    assert client.stats.throttled + client.stats.server_errors == len(faults)


def test_validation_errors_are_not_retried_and_name_the_reason():
    server, state, _ = _server(FaultConfig())
    with server, _client(server.url) as client:
        with pytest.raises(VendorAPIError) as info:
            client.request("POST", "/api/invalid", json={})
    assert info.value.status == 400
    assert "title must be a string" in str(info.value)
    assert SECRET not in str(info.value)
    assert len(state.log.snapshot()) == 1


def test_retry_after_is_honoured():
    server, _, _ = _server(FaultConfig(), retry_after="1")
    with server, _client(server.url) as client:
        started = time.monotonic()
        assert client.request("GET", "/api/throttled").status_code == 200
        assert time.monotonic() - started >= 0.9


def test_lost_response_on_write_surfaces_as_connection_error_after_retries():
    # Every write is applied and its response lost: the client retries (it cannot know), which is
    # exactly why loads need the ledger. The server saw each attempt.
    server, _, calls = _server(FaultConfig(lost_response=1.0))
    with server, _client(server.url, max_attempts=3) as client:
        with pytest.raises(VendorAPIError) as info:
            client.request("POST", "/api/write", json={})
    assert info.value.status is None
    assert calls["writes"] == 3


class _SendTimes(httpx.HTTPTransport):
    """Records when each request leaves the client, after pacing: the server's own arrival
    stamps would also carry its thread's scheduling delays, which are not the client's pacing."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.times.append(time.monotonic())
        return super().handle_request(request)


def test_pacing_keeps_every_second_at_or_under_the_rate_even_after_429s():
    server, state, _ = _server(FaultConfig(seed=2, rate_429=0.3))
    sent = _SendTimes()
    with server, _client(server.url, requests_per_second=5, max_attempts=20, transport=sent) as client:
        for _ in range(12):
            client.request("GET", "/api/ok")
    log = state.log.snapshot()
    assert any(r["status"] == 429 for r in log)
    times = sent.times
    assert len(times) == len(log) > 12, "every attempt, retries after 429s included, is paced"
    assert times[-1] - times[0] >= 2.0  # 12 requests at 5/s need two full windows
    # The limiter admits by its own clock at acquisition; the stamp is taken a moment later in the
    # same thread, and on a busy machine that moment can slip past the next one's: one request of
    # that jitter is allowed (measured quiet: at most 5 in any second, margins down to 2 ms).
    for i in range(len(times)):
        assert sum(1 for t in times if times[i] <= t < times[i] + 1.0) <= 5 + 1, (i, times)


def test_connection_refused_is_reported_without_secrets():
    with _client("http://127.0.0.1:9", max_attempts=2) as client:
        with pytest.raises(VendorAPIError) as info:
            client.request("GET", "/api/ok")
    assert info.value.status is None and SECRET not in str(info.value)


def test_non_json_error_body_is_kept_as_text():
    async def boom(_: Request) -> Response:
        return Response("plain failure", status_code=404)

    state = EmulatorState(name="t", faults=FaultDecider(FaultConfig()), log=RequestLog(), api_prefix="/api")
    with RunningServer(EmulatorMiddleware(Starlette(routes=[Route("/api/x", boom)]), state)) as server:
        with _client(server.url) as client:
            with pytest.raises(VendorAPIError) as info:
                client.request("GET", "/api/x")
    assert info.value.status == 404 and info.value.body == "plain failure"
    assert str(info.value) == "vendor GET /api/x -> 404: plain failure"
    assert SECRET not in str(info.value)


def test_clients_share_one_tls_context():
    """Building httpx's TLS context parses the CA bundle (~50 ms): every client verifies servers
    with the one built once, as strictly as httpx's default."""
    from migration_pipeline.lib.http import tls_context

    first, second = VendorHttpClient("https://a.example"), VendorHttpClient("https://b.example")
    try:
        assert tls_context() is tls_context()
        assert tls_context().verify_mode.name == "CERT_REQUIRED" and tls_context().check_hostname
        for client in (first, second):
            pool = client._client._transport._pool  # httpx's connection pool holds the context it was given
            assert pool._ssl_context is tls_context()
    finally:
        first.close()
        second.close()
