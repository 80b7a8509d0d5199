"""The rate limit and every fault the shared middleware injects, as a client meets them."""

from __future__ import annotations

import time

import httpx
import pytest

from sim.emulators.common import FaultConfig

from .conftest import Emulator, StartEmulator


def _burst(emu: Emulator, n: int) -> list[httpx.Response]:
    return [emu.client.post("/users/list", json={}) for _ in range(n)]


def test_rate_limit_429_without_retry_after_by_default(start_emulator: StartEmulator) -> None:
    emu = start_emulator(rate_limit_per_second=3)
    responses = _burst(emu, 10)
    limited = [r for r in responses if r.status_code == 429]
    assert len(limited) >= 4  # at most two windows of 3 in a burst of 10
    assert all("Retry-After" not in r.headers for r in limited)
    assert "rate limit" in limited[0].json()["error"]
    assert emu.admin.get("/health").status_code == 200  # admin routes are not limited


def test_rate_limit_retry_after_when_configured(start_emulator: StartEmulator) -> None:
    emu = start_emulator(rate_limit_per_second=2, retry_after_seconds=3)
    limited = [r for r in _burst(emu, 8) if r.status_code == 429]
    assert limited and all(r.headers["Retry-After"] == "3" for r in limited)


def test_injected_429_and_5xx(start_emulator: StartEmulator) -> None:
    emu = start_emulator(faults=FaultConfig(rate_429=1.0))
    r = emu.client.post("/customers", json={"name": "x"})
    assert r.status_code == 429 and "injected" in r.json()["error"]
    assert emu.stats()["customers"] == 0

    emu2 = start_emulator(state_path=None, faults=FaultConfig(rate_5xx=1.0))
    statuses = {emu2.client.post("/customers", json={"name": "x"}).status_code for _ in range(12)}
    assert statuses <= {500, 502, 503} and statuses
    assert emu2.stats()["customers"] == 0


def test_lost_response_on_create_still_applies_the_write(start_emulator: StartEmulator) -> None:
    emu = start_emulator(faults=FaultConfig(lost_response=1.0))
    with pytest.raises(httpx.TransportError):
        emu.client.post("/customers", json={"name": "Lost But Saved"})
    assert emu.stats()["customers"] == 1
    emu.admin.put("/faults", json={})
    listed = emu.client.post("/customers/list", json={"select": ["name"]}).json()
    assert listed["data"] == [{"name": "Lost But Saved"}]
    log = emu.admin.get("/requests").json()
    assert log[0]["fault"] == "lost_response"


def test_truncated_download(start_emulator: StartEmulator) -> None:
    emu = start_emulator()
    conv = emu.conversation()
    files = [("json", (None, '{"markdown": "f"}')), ("attachments", ("big.bin", b"z" * 200_000, "application/octet-stream"))]
    file_id = emu.client.post(f"/conversations/{conv['id']}/messages", files=files).json()["files"][0]["id"]
    emu.admin.put("/faults", json={"truncate_downloads": 1.0})
    with pytest.raises(httpx.TransportError):
        emu.client.get(f"/conversations/{conv['id']}/files/{file_id}/full")
    emu.admin.put("/faults", json={})
    assert len(emu.client.get(f"/conversations/{conv['id']}/files/{file_id}/full").content) == 200_000


def test_latency(start_emulator: StartEmulator) -> None:
    emu = start_emulator(faults=FaultConfig(latency_ms=150))
    started = time.perf_counter()
    assert emu.client.post("/users/list", json={}).status_code == 200
    assert time.perf_counter() - started >= 0.15


def _fault_sequence(start_emulator: StartEmulator, seed: int) -> list[int]:
    emu = start_emulator(state_path=None, faults=FaultConfig(seed=seed, rate_5xx=0.5))
    return [emu.client.post("/users/list", json={}).status_code for _ in range(24)]


def test_faults_are_deterministic_under_a_seed(start_emulator: StartEmulator) -> None:
    first = _fault_sequence(start_emulator, seed=7)
    assert _fault_sequence(start_emulator, seed=7) == first
    assert 200 in first and any(s >= 500 for s in first)
    assert _fault_sequence(start_emulator, seed=8) != first
