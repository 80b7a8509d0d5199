"""API-token auth, the account-wide per-minute limit and the incremental export's own limit."""

from __future__ import annotations

import httpx

from sim.emulators.common import RunningServer

from .conftest import AUTH, EMAIL, TOKEN, ServerFactory, client_for

MINUTE_START = 6_000_000.0  # a whole minute of the epoch


def test_requests_without_a_valid_api_token_are_refused(shared_server: RunningServer) -> None:
    url = shared_server.url + "/api/v2/users/me.json"
    wrong = [None, (AUTH[0], "wrong-token"), (EMAIL, TOKEN), ("someone.else@example.com/token", TOKEN)]
    for auth in wrong:
        refused = httpx.get(url, auth=auth)
        assert refused.status_code == 401, auth
        assert refused.json() == {"error": "Couldn't authenticate you"}
    ok = httpx.get(url, auth=(f"{EMAIL}/token", TOKEN))  # the email in any case
    assert ok.status_code == 200 and ok.json()["user"]["email"] == EMAIL


def test_account_limit_per_minute(make_server: ServerFactory) -> None:
    now = [MINUTE_START + 50]
    server = make_server(rate_limit_per_minute=3, rate_limit_clock=lambda: now[0])
    with client_for(server) as client:
        assert httpx.get(server.url + "/api/v2/users/me").status_code == 401  # spends nothing
        answers = [client.get("/users/me") for _ in range(3)]
        refused = client.get("/users/me")
        now[0] += 10
        next_minute = client.get("/users/me")
    assert [a.headers["X-Rate-Limit-Remaining"] for a in answers] == ["2", "1", "0"]
    assert all(a.headers["X-Rate-Limit"] == "3" for a in answers)
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("text/plain")
    assert refused.text == "Number of allowed API requests per minute exceeded"
    assert refused.headers["Retry-After"] == "10" and refused.headers["X-Rate-Limit-Remaining"] == "0"
    assert next_minute.status_code == 200


def test_incremental_export_has_its_own_per_minute_limit(make_server: ServerFactory) -> None:
    now = [MINUTE_START]
    server = make_server(rate_limit_per_minute=700, incremental_limit_per_minute=10, rate_limit_clock=lambda: now[0])
    path, params = "/incremental/tickets/cursor.json", {"start_time": 0}
    with client_for(server) as client:
        statuses = [client.get(path, params=params).status_code for _ in range(10)]
        refused = client.get(path, params=params)
        other_endpoint = client.get("/users/me")
        now[0] += 60
        next_minute = client.get(path, params=params)
    assert statuses == [200] * 10
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    assert other_endpoint.status_code == 200
    assert next_minute.status_code == 200
