"""Injected faults through the shared middleware, as a Zendesk client sees them."""

from __future__ import annotations

import httpx

from sim.emulators.common import FaultConfig

from .conftest import ServerFactory, client_for


def test_injected_429_looks_like_zendesks(make_server: ServerFactory) -> None:
    server = make_server(faults=FaultConfig(rate_429=1.0), rate_limit_per_minute=700)
    with client_for(server) as client:
        refused = client.get("/users/me.json")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1" and refused.headers["X-Rate-Limit-Remaining"] == "0"
    assert refused.json()["error"] == "TooManyRequests"
    log = httpx.get(server.url + "/_emulator/requests").json()
    assert [(r["path"], r["status"], r["fault"]) for r in log] == [("/api/v2/users/me.json", 429, "429")]


def test_injected_5xx_is_deterministic_under_a_seed(make_server: ServerFactory) -> None:
    def sequence(seed: int) -> list[int]:
        with client_for(make_server(faults=FaultConfig(seed=seed, rate_5xx=0.4))) as client:
            return [client.get(path).status_code for path in ["/users/me", "/users.json", "/tickets/1000.json"] * 6]

    first, again, other = sequence(5), sequence(5), sequence(6)
    assert first == again and first != other
    assert 200 in first and set(first) - {200} <= {500, 502, 503} and len(set(first)) > 1


def test_faults_can_be_changed_while_running(make_server: ServerFactory) -> None:
    server = make_server()
    with client_for(server) as client:
        assert client.get("/users/me").status_code == 200
        assert httpx.put(server.url + "/_emulator/faults", json={"rate_5xx": 1.0}).status_code == 200
        assert client.get("/users/me").status_code in (500, 502, 503)
