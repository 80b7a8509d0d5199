"""Fixtures for the Unthread emulator contract tests: a real server on a loopback socket, an httpx
client carrying the API key, and small helpers that create valid objects."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sim.emulators.common import RunningServer
from sim.emulators.unthread import create_app

API_KEY = "test-key"
WORKSPACE: dict[str, Any] = {
    "users": [
        {"id": "U-ann", "name": "Ann Agent", "email": "ann@support.example", "slackId": "SANN", "photo": None},
        {"id": "U-bob", "name": "Bob Agent", "email": "bob@support.example"},
    ],
    "triageChannels": [{"id": "TRIAGE-1", "name": "support-triage"}],
    "emailInboxes": [{"id": "INBOX-1", "email": "help@acme.example"}],
    "slackChannels": [{"id": "C-general", "name": "general"}],
}


class Emulator:
    """A running emulator plus an authenticated client."""

    def __init__(self, server: RunningServer):
        self.server = server
        self.url = server.url
        self.client = httpx.Client(base_url=f"{server.url}/api", headers={"X-Api-Key": API_KEY}, timeout=10)
        self.admin = httpx.Client(base_url=f"{server.url}/_emulator", timeout=10)

    def stats(self) -> dict[str, int]:
        return self.admin.get("/stats").json()

    def customer(self, name: str = "Acme", **fields: Any) -> dict[str, Any]:
        r = self.client.post("/customers", json={"name": name, **fields})
        assert r.status_code == 201, r.text
        return r.json()

    def conversation(self, **fields: Any) -> dict[str, Any]:
        body = {"type": "triage", "triageChannelId": "TRIAGE-1", "markdown": "Hello", **fields}
        r = self.client.post("/conversations", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def close(self) -> None:
        self.client.close()
        self.admin.close()
        self.server.stop()


StartEmulator = Callable[..., Emulator]


@pytest.fixture
def start_emulator(tmp_path: Path) -> Iterator[StartEmulator]:
    """Start emulators with any create_app options (defaults: state in tmp_path, the test
    workspace, no rate limit so tests are not throttled); all are stopped at teardown."""
    started: list[Emulator] = []

    def start(**options: Any) -> Emulator:
        emulator = launch(options.pop("state_path", tmp_path / "state.sqlite"), **options)
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.close()


@pytest.fixture
def emu(start_emulator: StartEmulator) -> Emulator:
    return start_emulator()


def launch(state_path: Path, **options: Any) -> Emulator:
    """Start one emulator on `state_path` (test workspace, no rate limit unless given)."""
    options.setdefault("workspace", copy.deepcopy(WORKSPACE))
    options.setdefault("rate_limit_per_second", None)
    return Emulator(RunningServer(create_app(api_key=API_KEY, state_path=state_path, **options)).start())


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One emulator per test module for tests that only check refusals or read what they made
    (starting and stopping uvicorn costs ~0.3 s; tests needing exact counts use `emu`)."""
    emulator = launch(tmp_path_factory.mktemp("unthread") / "state.sqlite")
    yield emulator
    emulator.close()
