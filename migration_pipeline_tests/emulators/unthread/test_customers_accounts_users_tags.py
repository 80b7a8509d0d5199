"""Customers, accounts, users and tags: CRUD, validation messages and the workspace seed."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Emulator


def test_customer_crud(emu: Emulator) -> None:
    created = emu.customer(
        "Acme",
        emailDomains=["acme.example"],
        slackChannelId="C-general",
        disableAutomatedTicketing=True,
        externalCrmMetadata={"id": "SF-1"},
        ignoredField="dropped",
    )
    assert created["name"] == "Acme" and created["emailDomains"] == ["acme.example"]
    assert created["slackChannel"] == {"name": "general", "isPrivate": False}
    assert created["externalCrmMetadata"] == {"id": "SF-1"} and "ignoredField" not in created
    cid = created["id"]
    assert emu.client.get(f"/customers/{cid}").json() == created

    patched = emu.client.patch(f"/customers/{cid}", json={"name": "Acme Corp", "externalCrmMetadata": None})
    assert patched.status_code == 200
    body = patched.json()
    assert body["name"] == "Acme Corp" and body["externalCrmMetadata"] is None
    assert body["emailDomains"] == ["acme.example"] and body["updatedAt"] >= created["updatedAt"]

    assert emu.client.delete(f"/customers/{cid}").status_code == 200
    missing = emu.client.get(f"/customers/{cid}")
    assert missing.status_code == 404 and cid in missing.json()["error"]
    assert emu.client.delete(f"/customers/{cid}").status_code == 404
    assert emu.client.patch(f"/customers/{cid}", json={"name": "x"}).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "  "}, "name"),
        ({"name": 5}, "name"),
        ({"name": "A", "emailDomains": "acme.example"}, "emailDomains"),
        ({"name": "A", "disableAutomatedTicketing": "yes"}, "disableAutomatedTicketing"),
        ({"name": "A", "externalCrmMetadata": {"id": 5}}, "externalCrmMetadata"),
        ({"name": "A", "slackTeamId": 7}, "slackTeamId"),
    ],
)
def test_customer_validation_names_the_field(shared: Emulator, body: dict[str, Any], field: str) -> None:
    r = shared.client.post("/customers", json=body)
    assert r.status_code == 400 and r.json()["error"].startswith(f"{field}:")


def test_customer_patch_refuses_empty_name(shared: Emulator) -> None:
    cid = shared.customer()["id"]
    r = shared.client.patch(f"/customers/{cid}", json={"name": ""})
    assert r.status_code == 400 and r.json()["error"].startswith("name:")


def test_create_honours_select_query_parameter(shared: Emulator) -> None:
    r = shared.client.post("/customers?select=id,name", json={"name": "Acme"})
    assert r.status_code == 201 and set(r.json()) == {"id", "name"}
    r = shared.client.post("/customers?select=nope", json={"name": "Acme"})
    assert r.status_code == 400 and "nope" in r.json()["error"]


def test_account_crud_and_validation(emu: Emulator) -> None:
    r = emu.client.post(
        "/accounts",
        json={
            "name": "Globex",
            "emailsAndDomains": ["globex.example"],
            "slackChannelIds": ["C-general"],
            "customFields": [{"id": "f1", "value": "gold"}],
            "primarySupportAssigneeId": "U-ann",
            "primarySupportAssigneeType": "user",
        },
    )
    assert r.status_code == 201, r.text
    account = r.json()
    assert account["slackChannels"][0]["name"] == "general"
    assert account["primarySupportAssignee"]["email"] == "ann@support.example"
    aid = account["id"]
    assert emu.client.get(f"/accounts/{aid}").json()["name"] == "Globex"
    assert emu.client.patch(f"/accounts/{aid}", json={"name": "Globex 2"}).json()["name"] == "Globex 2"
    listed = emu.client.post("/accounts/list", json={"select": ["id", "name"]}).json()
    assert listed["data"] == [{"id": aid, "name": "Globex 2"}] and listed["totalCount"] == 1
    assert emu.client.delete(f"/accounts/{aid}").status_code == 200
    assert emu.client.get(f"/accounts/{aid}").status_code == 404

    for body, field in [
        ({}, "name"),
        ({"name": "A", "primarySupportAssigneeType": "robot"}, "primarySupportAssigneeType"),
        ({"name": "A", "customFields": ["x"]}, "customFields"),
    ]:
        r = emu.client.post("/accounts", json=body)
        assert r.status_code == 400 and r.json()["error"].startswith(f"{field}:"), r.text


def test_users_are_seeded_and_read_only(emu: Emulator) -> None:
    users = emu.client.post("/users/list", json={"order": ["email"]}).json()
    assert [u["id"] for u in users["data"]] == ["U-ann", "U-bob"] and users["totalCount"] == 2
    ann = emu.client.get("/users/U-ann").json()
    assert ann["name"] == "Ann Agent" and ann["slackId"] == "SANN"
    assert emu.client.get("/users/U-nobody").status_code == 404
    assert emu.client.post("/users", json={"name": "x"}).status_code in (404, 405)
    assert emu.client.patch("/users/U-ann", json={"name": "x"}).status_code == 405


def test_tags(shared: Emulator) -> None:
    r = shared.client.post("/tags", json={"name": "vip"})
    assert r.status_code == 201
    tag = r.json()
    assert shared.client.get(f"/tags/{tag['id']}").json()["name"] == "vip"
    assert shared.client.get("/tags/nope").status_code == 404
    assert shared.client.post("/tags/list", json={}).json()["data"][0]["id"] == tag["id"]
    bad = shared.client.post("/tags", json={"name": ""})
    assert bad.status_code == 400 and bad.json()["error"].startswith("name:")
