"""Auth, routing and body parsing: refusals every endpoint shares."""

from __future__ import annotations

import httpx
import pytest

from .conftest import API_KEY, Emulator

ENDPOINTS = [
    ("POST", "/customers"),
    ("POST", "/customers/list"),
    ("GET", "/customers/x"),
    ("PATCH", "/customers/x"),
    ("DELETE", "/customers/x"),
    ("POST", "/accounts"),
    ("POST", "/accounts/list"),
    ("GET", "/accounts/x"),
    ("POST", "/users/list"),
    ("GET", "/users/x"),
    ("POST", "/tags"),
    ("POST", "/tags/list"),
    ("GET", "/tags/x"),
    ("POST", "/conversations"),
    ("POST", "/conversations/list"),
    ("GET", "/conversations/x"),
    ("PATCH", "/conversations/x"),
    ("DELETE", "/conversations/x"),
    ("POST", "/conversations/x/messages"),
    ("POST", "/conversations/x/messages/list"),
    ("GET", "/conversations/x/files/y/full"),
    ("GET", "/no/such/route"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_route_requires_the_api_key(shared: Emulator, method: str, path: str) -> None:
    missing = httpx.request(method, f"{shared.url}/api{path}", json={})
    wrong = httpx.request(method, f"{shared.url}/api{path}", json={}, headers={"X-Api-Key": "nope"})
    assert missing.status_code == 401 and "X-Api-Key" in missing.json()["error"]
    assert wrong.status_code == 401 and "invalid" in wrong.json()["error"]


def test_key_header_name_is_case_insensitive(shared: Emulator) -> None:
    r = httpx.post(f"{shared.url}/api/users/list", json={}, headers={"x-api-key": API_KEY})
    assert r.status_code == 200
    r = httpx.post(f"{shared.url}/api/users/list", json={}, headers={"X-API-KEY": API_KEY})
    assert r.status_code == 200


def test_unknown_route_is_404_and_wrong_method_405_with_error_body(shared: Emulator) -> None:
    r = shared.client.get("/widgets")
    assert r.status_code == 404 and "widgets" in r.json()["error"]
    r = shared.client.put("/conversations/abc")
    assert r.status_code == 405 and "PUT" in r.json()["error"]


@pytest.mark.parametrize("path", ["/customers", "/conversations", "/customers/list", "/tags"])
def test_malformed_json_is_400(shared: Emulator, path: str) -> None:
    r = shared.client.post(path, content=b'{"name": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]


def test_non_object_json_is_400(shared: Emulator) -> None:
    r = shared.client.post("/customers", json=["Acme"])
    assert r.status_code == 400 and "JSON object" in r.json()["error"]


def test_admin_routes_need_no_key_and_stats_count_objects(emu: Emulator) -> None:
    assert emu.admin.get("/health").json() == {"ok": True, "emulator": "unthread"}
    before = emu.stats()
    assert before["users"] == 2 and before["conversations"] == 0
    emu.conversation()
    after = emu.stats()
    assert after["conversations"] == 1 and after["messages"] == 1


def test_requests_are_logged(emu: Emulator) -> None:
    emu.client.post("/users/list", json={})
    log = emu.admin.get("/requests").json()
    assert [(r["method"], r["path"], r["status"]) for r in log] == [("POST", "/api/users/list", 200)]
