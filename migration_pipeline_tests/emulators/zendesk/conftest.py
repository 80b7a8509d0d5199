"""A small generated Zendesk dataset and emulator servers over real sockets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import httpx
import pytest

from migration_pipeline_tests.synth.zendesk_helpers import ZendeskDataset
from sim.emulators.common import RunningServer
from sim.emulators.zendesk import create_app
from sim.synth.zendesk import generate

EMAIL = "Migrator@Example.com"
TOKEN = "zd-secret-token"
AUTH = (f"{EMAIL.lower()}/token", TOKEN)


@pytest.fixture(scope="session")
def zd(tmp_path_factory: pytest.TempPathFactory) -> ZendeskDataset:
    root = tmp_path_factory.mktemp("zendesk-emulator")
    generate(root, customers=12, days=5, seed=11, end=date(2024, 6, 1))
    return ZendeskDataset(root)


ServerFactory = Callable[..., RunningServer]


@pytest.fixture
def make_server(zd: ZendeskDataset) -> Iterator[ServerFactory]:
    """Start a fresh emulator (own clock, limiters and fault counters) per call; no rate limits
    unless asked for."""
    running: list[RunningServer] = []

    def start(**overrides: Any) -> RunningServer:
        options: dict[str, Any] = {"email": EMAIL, "api_token": TOKEN, "rate_limit_per_minute": None,
                                   "incremental_limit_per_minute": None, **overrides}
        server = RunningServer(create_app(zd.root, **options)).start()
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(zd: ZendeskDataset) -> Iterator[RunningServer]:
    """One emulator for tests that only read at the export's moment (none moves its clock)."""
    app = create_app(zd.root, email=EMAIL, api_token=TOKEN, rate_limit_per_minute=None, incremental_limit_per_minute=None)
    with RunningServer(app) as server:
        yield server


def client_for(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/api/v2", auth=AUTH, timeout=10)


def move_clock(server: RunningServer, now: str) -> None:
    response = httpx.put(server.url + "/_emulator/clock", json={"now": now})
    assert response.status_code == 200, response.text
