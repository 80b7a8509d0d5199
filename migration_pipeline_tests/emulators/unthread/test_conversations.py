"""Conversations: create (every enum and reference rule), get, HEAD, patch, delete."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from .conftest import Emulator

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TYPE_FIELDS: dict[str, dict[str, Any]] = {
    "triage": {"triageChannelId": "TRIAGE-1"},
    "slack": {"channelId": "C-general"},
    "email": {"emailInboxId": "INBOX-1", "onBehalfOf": {"email": "jane@customer.example", "name": "Jane"}},
}


def test_create_returns_the_full_conversation(emu: Emulator) -> None:
    customer = emu.customer()
    tag = emu.client.post("/tags", json={"name": "vip"}).json()
    conv = emu.conversation(
        title="Printer on fire",
        status="in_progress",
        priority=7,
        customerId=customer["id"],
        assignedToUserId="U-bob",
        onBehalfOf={"email": "ann@support.example"},
        metadata={"gladlyId": "g-1"},
        tags=[tag["id"]],
        notes="migrated",
        excludeAnalytics=True,
        somethingUnknown=1,
    )
    assert uuid.UUID(conv["id"]).version == 4 and conv["friendlyId"] == 1
    assert ISO_MS.match(conv["createdAt"]) and ISO_MS.match(conv["updatedAt"])
    assert (conv["status"], conv["title"], conv["priority"]) == ("in_progress", "Printer on fire", 7)
    assert conv["customerId"] == customer["id"] and conv["customer"]["name"] == "Acme"
    assert conv["assignedToUser"]["name"] == "Bob Agent"
    assert conv["metadata"] == {"gladlyId": "g-1"} and conv["tags"] == [{"id": tag["id"], "name": "vip"}]
    assert conv["closedAt"] is None and "somethingUnknown" not in conv
    first = conv["initialMessage"]
    assert first["text"] == "Hello" and first["conversationId"] == conv["id"]
    assert first["user"]["id"] == "U-ann"  # resolved from onBehalfOf.email
    assert emu.client.get(f"/conversations/{conv['id']}").json() == conv
    messages = emu.client.post(f"/conversations/{conv['id']}/messages/list", json={}).json()
    assert [m["id"] for m in messages["data"]] == [first["id"]]
    assert emu.conversation()["friendlyId"] == 2


@pytest.mark.parametrize("kind", ["triage", "slack", "email"])
def test_every_type_is_accepted_with_its_channel(shared: Emulator, kind: str) -> None:
    r = shared.client.post("/conversations", json={"type": kind, "markdown": "hi", **TYPE_FIELDS[kind]})
    assert r.status_code == 201, r.text
    assert r.json()["sourceType"] == kind


@pytest.mark.parametrize("status", ["open", "in_progress", "on_hold", "closed"])
def test_every_status_is_accepted(shared: Emulator, status: str) -> None:
    conv = shared.conversation(status=status)
    assert conv["status"] == status
    assert (conv["closedAt"] is not None) == (status == "closed")


@pytest.mark.parametrize("priority", [3, 5, 7, 9, None])
def test_every_priority_is_accepted(shared: Emulator, priority: int | None) -> None:
    assert shared.conversation(priority=priority)["priority"] == priority


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"type": None}, "type", "required"),
        ({"type": "sms"}, "type", "'sms'"),
        ({"markdown": None}, "markdown", "required"),
        ({"markdown": ""}, "markdown", "non-empty"),
        ({"markdown": 12}, "markdown", "12"),
        ({"status": "resolved"}, "status", "'resolved'"),
        ({"priority": 4}, "priority", "4"),
        ({"priority": "high"}, "priority", "'high'"),
        ({"priority": True}, "priority", "True"),
        ({"customerId": "no-such-customer"}, "customerId", "no-such-customer"),
        ({"assignedToUserId": "U-ghost"}, "assignedToUserId", "U-ghost"),
        ({"triageChannelId": "TRIAGE-404"}, "triageChannelId", "TRIAGE-404"),
        ({"channelId": "C-404"}, "channelId", "C-404"),
        ({"emailInboxId": "INBOX-404"}, "emailInboxId", "INBOX-404"),
        ({"triageChannelId": None}, "triageChannelId", "required when type is 'triage'"),
        ({"metadata": {"a": 1}}, "metadata", "strings"),
        ({"tags": ["no-such-tag"]}, "tags", "no-such-tag"),
        ({"onBehalfOf": "jane"}, "onBehalfOf", "'jane'"),
        ({"onBehalfOf": {"email": 5}}, "onBehalfOf.email", "5"),
        ({"excludeAnalytics": "no"}, "excludeAnalytics", "'no'"),
        ({"title": ["x"]}, "title", "['x']"),
    ],
)
def test_create_refusals_name_field_and_value(shared: Emulator, fields: dict[str, Any], field: str, fragment: str) -> None:
    body = {"type": "triage", "triageChannelId": "TRIAGE-1", "markdown": "hi", **fields}
    body = {k: v for k, v in body.items() if not (v is None and k in ("type", "markdown", "triageChannelId"))}
    r = shared.client.post("/conversations", json=body)
    assert r.status_code == 400, r.text
    message = r.json()["error"]
    assert message.startswith(f"{field}:") and fragment in message, message


@pytest.mark.parametrize(
    ("kind", "fields", "field"),
    [
        ("slack", {}, "channelId"),
        ("email", {"onBehalfOf": {"email": "a@b.c"}}, "emailInboxId"),
        ("email", {"emailInboxId": "INBOX-1"}, "onBehalfOf"),
        ("email", {"emailInboxId": "INBOX-1", "onBehalfOf": {"name": "No Address"}}, "onBehalfOf"),
    ],
)
def test_type_specific_requirements(shared: Emulator, kind: str, fields: dict[str, Any], field: str) -> None:
    r = shared.client.post("/conversations", json={"type": kind, "markdown": "hi", **fields})
    assert r.status_code == 400 and r.json()["error"].startswith(f"{field}:"), r.text


def test_email_conversation_accepts_onbehalfof_id(shared: Emulator) -> None:
    r = shared.client.post(
        "/conversations", json={"type": "email", "markdown": "hi", "emailInboxId": "INBOX-1", "onBehalfOf": {"id": "U-bob"}}
    )
    assert r.status_code == 201 and r.json()["initialMessage"]["user"]["name"] == "Bob Agent"


def test_markdown_over_the_limit_is_refused(start_emulator: Any) -> None:
    emu = start_emulator(max_markdown_chars=50)
    assert emu.client.post("/conversations", json={"type": "triage", "triageChannelId": "TRIAGE-1", "markdown": "x" * 50}).status_code == 201
    r = emu.client.post("/conversations", json={"type": "triage", "triageChannelId": "TRIAGE-1", "markdown": "x" * 51})
    assert r.status_code == 400 and "51" in r.json()["error"] and r.json()["error"].startswith("markdown:")
    assert emu.stats()["conversations"] == 1


def test_head_and_get_missing(shared: Emulator) -> None:
    conv = shared.conversation()
    ok = shared.client.head(f"/conversations/{conv['id']}")
    assert ok.status_code == 200 and ok.content == b""
    missing = shared.client.head("/conversations/nope")
    assert missing.status_code == 404 and missing.content == b""
    assert shared.client.get("/conversations/nope").status_code == 404


def test_patch_changes_fields_and_status_timestamps(shared: Emulator) -> None:
    conv = shared.conversation()
    customer = shared.customer("Initech")
    tag = shared.client.post("/tags", json={"name": "billing"}).json()
    r = shared.client.patch(
        f"/conversations/{conv['id']}",
        json={
            "status": "closed",
            "title": "Renamed",
            "priority": 9,
            "assignedToUserId": "U-ann",
            "customerId": customer["id"],
            "metadata": {"k": "v"},
            "tags": [tag["id"]],
            "ticketTypeFields": {"f-1": "x"},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["title"], body["priority"]) == ("closed", "Renamed", 9)
    assert body["assignedToUserId"] == "U-ann" and body["customer"]["name"] == "Initech"
    assert body["metadata"] == {"k": "v"} and body["tags"] == [{"id": tag["id"], "name": "billing"}]
    assert body["ticketTypeFields"] == {"f-1": "x"}
    assert body["closedAt"] and body["statusUpdatedAt"] >= conv["statusUpdatedAt"]
    assert body["updatedAt"] >= conv["updatedAt"]
    reopened = shared.client.patch(f"/conversations/{conv['id']}", json={"status": "open", "priority": None}).json()
    assert reopened["closedAt"] is None and reopened["priority"] is None
    assert shared.client.get(f"/conversations/{conv['id']}").json() == reopened


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": None}, "status"),
        ({"priority": 1}, "priority"),
        ({"assignedToUserId": "U-ghost"}, "assignedToUserId"),
        ({"customerId": "ghost"}, "customerId"),
        ({"metadata": ["x"]}, "metadata"),
        ({"tags": ["ghost"]}, "tags"),
        ({"title": 3}, "title"),
    ],
)
def test_patch_refusals(shared: Emulator, body: dict[str, Any], field: str) -> None:
    conv = shared.conversation()
    r = shared.client.patch(f"/conversations/{conv['id']}", json=body)
    assert r.status_code == 400 and r.json()["error"].startswith(f"{field}:"), r.text
    assert shared.client.get(f"/conversations/{conv['id']}").json() == conv


def test_patch_unknown_conversation_is_404(shared: Emulator) -> None:
    assert shared.client.patch("/conversations/nope", json={"title": "x"}).status_code == 404


def test_delete_removes_conversation_messages_and_files(emu: Emulator) -> None:
    conv = emu.conversation()
    files = [("json", (None, '{"markdown": "with file"}')), ("attachments", ("a.bin", b"abc", "application/octet-stream"))]
    message = emu.client.post(f"/conversations/{conv['id']}/messages", files=files).json()
    assert emu.stats()["files"] == 1
    r = emu.client.delete(f"/conversations/{conv['id']}")
    assert r.status_code == 200 and r.json()["id"] == conv["id"]
    assert emu.client.get(f"/conversations/{conv['id']}").status_code == 404
    file_id = message["files"][0]["id"]
    assert emu.client.get(f"/conversations/{conv['id']}/files/{file_id}/full").status_code == 404
    stats = emu.stats()
    assert (stats["conversations"], stats["messages"], stats["files"]) == (0, 0, 0)
    assert emu.client.delete(f"/conversations/{conv['id']}").status_code == 404


def test_deleted_customer_reads_as_null_on_its_conversations(shared: Emulator) -> None:
    customer = shared.customer("Gone Inc")
    conv = shared.conversation(customerId=customer["id"])
    shared.client.delete(f"/customers/{customer['id']}")
    after = shared.client.get(f"/conversations/{conv['id']}").json()
    assert after["customerId"] == customer["id"] and after["customer"] is None
