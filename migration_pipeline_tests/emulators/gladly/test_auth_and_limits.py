"""Basic auth, the org-wide rate limit and its headers, unknown paths and wrong methods."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import pytest

from sim.emulators.common import RunningServer

from .conftest import TOKEN, USER, ServerFactory, client_for, errors


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic " + base64.b64encode(f"{USER}:wrong".encode()).decode()},
        {"Authorization": "Basic " + base64.b64encode(f"other@example.com:{TOKEN}".encode()).decode()},
        {"Authorization": "Basic " + base64.b64encode(USER.encode()).decode()},  # no colon
        {"Authorization": "Basic not-base64!!"},
        {"Authorization": f"Bearer {TOKEN}"},
    ],
    ids=["missing", "wrong-token", "wrong-user", "no-password", "garbage", "bearer"],
)
def test_bad_or_missing_credentials_get_401(shared_server: RunningServer, headers: dict[str, str]) -> None:
    response = httpx.get(shared_server.url + "/api/v1/organization", headers=headers)
    assert response.status_code == 401
    assert errors(response) == [{"code": "unauthorized", "detail": "invalid API user or API token"}]
    assert TOKEN not in response.text
    assert all(TOKEN not in value for value in response.headers.values())
    assert "Retry-After" not in response.headers


def test_unknown_api_path_requires_auth_first(shared_server: RunningServer) -> None:
    assert httpx.get(shared_server.url + "/api/v1/nope").status_code == 401


def test_any_host_header_is_accepted(shared_server: RunningServer) -> None:
    response = httpx.get(
        shared_server.url + "/api/v1/organization", auth=(USER, TOKEN), headers={"Host": "acme.us-1.gladly.com"}
    )
    assert response.status_code == 200
    assert response.json()["id"] == "org-1"


def test_authenticated_responses_carry_rate_limit_headers(client: httpx.Client) -> None:
    response = client.get("/organization")
    assert response.status_code == 200
    assert response.headers["Ratelimit-Limit-Second"] == "10000"
    assert 0 <= int(response.headers["Ratelimit-Remaining-Second"]) < 10000


def test_unknown_api_path_is_404_in_gladly_shape(client: httpx.Client) -> None:
    response = client.get("/no-such-thing")
    assert response.status_code == 404
    assert errors(response) == [{"code": "not_exist", "detail": "resource [/api/v1/no-such-thing] does not exist"}]
    assert "Ratelimit-Remaining-Second" in response.headers


def test_wrong_method_is_405(client: httpx.Client) -> None:
    response = client.post("/agents", json={})
    assert response.status_code == 405
    assert errors(response)[0]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def _held_clock() -> tuple[list[float], Callable[[], float]]:
    """A rate-limit clock that stands still until the test moves it."""
    now = [1_000_000.25]
    return now, lambda: now[0]


def test_burst_over_the_limit_gets_429_without_retry_after(make_server: ServerFactory) -> None:
    now, clock = _held_clock()
    server = make_server(rate_limit_per_second=10, rate_limit_clock=clock)
    with client_for(server) as client:
        responses = [client.get("/agents") for _ in range(11)]
        now[0] += 0.7  # still the same second: still refused
        assert client.get("/agents").status_code == 429
        now[0] += 0.1  # the next second: a fresh budget
        again = client.get("/agents")
    assert [r.status_code for r in responses] == [200] * 10 + [429]
    assert [r.headers["Ratelimit-Remaining-Second"] for r in responses] == [str(n) for n in range(9, -1, -1)] + ["0"]
    refused = responses[-1]
    assert refused.headers["Ratelimit-Limit-Second"] == "10"
    assert "Retry-After" not in refused.headers
    assert errors(refused)[0]["code"] == "rate_limited"
    assert again.status_code == 200 and again.headers["Ratelimit-Remaining-Second"] == "9"


def test_unauthenticated_requests_do_not_spend_the_budget(make_server: ServerFactory) -> None:
    _, clock = _held_clock()
    server = make_server(rate_limit_per_second=3, rate_limit_clock=clock)
    for _ in range(5):
        refused = httpx.get(server.url + "/api/v1/agents")
        assert refused.status_code == 401
        assert refused.headers["Ratelimit-Limit-Second"] == "3"
    with client_for(server) as client:
        assert [client.get("/agents").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_admin_and_file_routes_are_outside_auth(shared_server: RunningServer) -> None:
    assert httpx.get(shared_server.url + "/_emulator/health").json() == {"ok": True, "emulator": "gladly"}
