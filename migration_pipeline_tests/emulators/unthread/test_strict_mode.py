"""Strict mode (sim/emulators/unthread/strict.py): only the confirmed Unthread surface, one test per
deviation, plus one test that permissive mode (the default) still offers what strict drops."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sim.emulators.unthread import create_app
from sim.emulators.unthread.strict import STRICT_ENV

from .conftest import API_KEY, Emulator, launch

AUTHOR = {"id": "U-bob"}  # a workspace user: permissive mode resolves it into `user`


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One strict emulator for the module: each test reads only what it made (or counts deltas)."""
    emulator = launch(tmp_path_factory.mktemp("strict") / "state.sqlite", strict=True)
    yield emulator
    emulator.close()


def _multipart(payload: dict[str, Any], *files: tuple[str, bytes, str]) -> list[tuple[str, Any]]:
    return [("json", (None, json.dumps(payload))), *[("attachments", f) for f in files]]


def _messages(emu: Emulator, conversation_id: str, **body: Any) -> list[dict[str, Any]]:
    r = emu.client.post(f"/conversations/{conversation_id}/messages/list", json={"order": ["ts"], **body})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_mode_is_visible_and_selectable_by_environment(
    strict: Emulator, start_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert strict.admin.get("/health").json() == {"ok": True, "emulator": "unthread", "mode": "strict"}
    assert strict.admin.get("/mode").json() == {"mode": "strict"}
    assert strict.admin.get("/stats").json()["conversations"] >= 0  # stats keep their shape
    assert strict.client.post("/users/list", json={}, headers={"X-Api-Key": "wrong"}).status_code == 401

    monkeypatch.setenv(STRICT_ENV, "1")
    assert start_emulator().admin.get("/mode").json() == {"mode": "strict"}
    monkeypatch.setenv(STRICT_ENV, "maybe")
    with pytest.raises(ValueError, match=STRICT_ENV):
        create_app(api_key=API_KEY)


def test_tags_have_no_routes_and_are_refused_on_conversation_writes(strict: Emulator) -> None:
    for method, path in (("POST", "/tags"), ("POST", "/tags/list"), ("GET", "/tags/some-id")):
        r = strict.client.request(method, path, json={"name": "Billing"} if method == "POST" else None)
        assert r.status_code == 404 and r.json() == {"error": f"no route {method} /api{path}"}

    base = {"type": "triage", "triageChannelId": "TRIAGE-1", "markdown": "Hello"}
    for tags in (["tag-1"], []):
        r = strict.client.post("/conversations", json={**base, "tags": tags})
        assert r.status_code == 400 and r.json() == {"error": "unknown field: tags"}
    conversation = strict.conversation()
    assert conversation["tags"] == []  # the object still has tags (facts §3.2)
    r = strict.client.patch(f"/conversations/{conversation['id']}", json={"tags": [], "title": "x"})
    assert r.status_code == 400 and r.json() == {"error": "unknown field: tags"}
    assert strict.client.get(f"/conversations/{conversation['id']}").json()["title"] is None  # nothing applied
    where = [{"field": "id", "operator": "==", "value": conversation["id"]}]
    page = strict.client.post("/conversations/list", json={"select": ["id", "tags.name"], "where": where}).json()
    assert page["data"] == [{"id": conversation["id"], "tags": []}]


def test_files_upload_but_do_not_read_back(strict: Emulator) -> None:
    before = strict.stats()["files"]
    payload = {"type": "triage", "triageChannelId": "TRIAGE-1", "markdown": "see file"}
    r = strict.client.post("/conversations", files=_multipart(payload, ("a.txt", b"alpha", "text/plain")))
    assert r.status_code == 201, r.text
    conversation = r.json()
    message = {"body": {"type": "markdown", "value": "another"}}
    r = strict.client.post(
        f"/conversations/{conversation['id']}/messages",
        files=_multipart(message, ("b.pdf", b"%PDF-1", "application/pdf")),
    )
    assert r.status_code == 201, r.text
    assert strict.stats()["files"] == before + 2  # stored
    listed = _messages(strict, conversation["id"])
    files = [f for m in listed for f in m["files"]]
    assert [(f["name"], f["size"]) for f in files] == [("a.txt", 5), ("b.pdf", 6)]
    for f in files:
        r = strict.client.get(f"/conversations/{conversation['id']}/files/{f['id']}/full")
        assert r.status_code == 404 and r.json()["error"].startswith("no route GET"), r.text


def test_users_list_offers_only_id_and_email(strict: Emulator) -> None:
    refused = [
        {"order": ["createdAt", "id"]},
        {"select": ["id", "slackId"]},
        {"select": ["name"]},
        {"where": [{"field": "name", "operator": "==", "value": "Ann Agent"}]},
        {"where": [{"field": "createdAt", "operator": ">", "value": "2020-01-01"}]},
    ]
    for body in refused:
        r = strict.client.post("/users/list", json=body)
        assert r.status_code == 400 and "unknown field" in r.json()["error"], (body, r.text)

    rows = strict.client.post("/users/list", json={}).json()["data"]
    assert rows == [  # default order id; rows carry id, name, email only
        {"id": "U-ann", "name": "Ann Agent", "email": "ann@support.example"},
        {"id": "U-bob", "name": "Bob Agent", "email": "bob@support.example"},
    ]
    first = strict.client.post("/users/list", json={"limit": 1, "order": ["email", "id"], "select": ["id", "email"]})
    page = first.json()
    assert page["data"] == [{"id": "U-ann", "email": "ann@support.example"}] and page["cursors"]["hasNext"]
    body = {"limit": 1, "order": ["email", "id"], "select": ["id"], "cursor": page["cursors"]["next"]}
    assert strict.client.post("/users/list", json=body).json()["data"] == [{"id": "U-bob"}]
    where = [{"field": "email", "operator": "==", "value": "bob@support.example"}]
    assert [u["id"] for u in strict.client.post("/users/list", json={"where": where}).json()["data"]] == ["U-bob"]
    assert strict.client.get("/users/U-ann").status_code == 404  # only the list is documented


def test_messages_read_back_without_author(strict: Emulator) -> None:
    conversation = strict.conversation(onBehalfOf={"email": "ann@support.example"})
    r = strict.client.post(f"/conversations/{conversation['id']}/messages", json={"markdown": "hi", "onBehalfOf": AUTHOR})
    assert r.status_code == 201, r.text
    messages = [r.json(), *_messages(strict, conversation["id"])]
    messages.append(strict.client.get(f"/conversations/{conversation['id']}").json()["initialMessage"])
    assert len(messages) == 4
    for message in messages:
        assert message["user"] is None and message["userId"] is None
        assert "sentByUser" not in message and "onBehalfOf" not in message
    selected = _messages(strict, conversation["id"], select=["text", "user.id", "userId"])
    assert selected == [{"text": "Hello", "user": None, "userId": None}, {"text": "hi", "user": None, "userId": None}]


def test_private_note_flag_is_ignored(strict: Emulator) -> None:
    conversation = strict.conversation()
    body = {"body": {"type": "markdown", "value": "internal"}, "isPrivateNote": True}
    r = strict.client.post(f"/conversations/{conversation['id']}/messages", json=body)
    assert r.status_code == 201 and r.json()["isPrivateNote"] is False
    assert [m["isPrivateNote"] for m in _messages(strict, conversation["id"])] == [False, False]


def test_conversations_cannot_be_deleted_but_customers_can(strict: Emulator) -> None:
    conversation = strict.conversation()
    r = strict.client.delete(f"/conversations/{conversation['id']}")
    assert r.status_code == 405 and "not allowed" in r.json()["error"]
    assert strict.client.get(f"/conversations/{conversation['id']}").status_code == 200
    customer = strict.customer("Gone Inc")
    assert strict.client.delete(f"/customers/{customer['id']}").status_code == 200


def test_ticket_type_refused_on_create_while_metadata_and_its_filters_stay(strict: Emulator) -> None:
    base = {"type": "triage", "triageChannelId": "TRIAGE-1", "markdown": "Hello"}
    for field, value in (("ticketTypeId", "TT-1"), ("ticketTypeFields", {"f": "v"})):
        r = strict.client.post("/conversations", json={**base, field: value})
        assert r.status_code == 400 and r.json() == {"error": f"unknown field: {field}"}

    customer = strict.customer("Meta Co", externalCrmMetadata={"id": "gladly-cust-strict"})
    conversation = strict.conversation(customerId=customer["id"], metadata={"gladlyId": "g-strict-1"})
    assert conversation["metadata"] == {"gladlyId": "g-strict-1"}
    patch = {"metadata": {"gladlyId": "g-strict-1", "stage": "done"}, "ticketTypeFields": {"f": "v"}}
    r = strict.client.patch(f"/conversations/{conversation['id']}", json=patch)
    assert r.status_code == 200 and r.json()["metadata"]["stage"] == "done"
    where = [{"field": "metadata.gladlyId", "operator": "==", "value": "g-strict-1"}]
    found = strict.client.post("/conversations/list", json={"where": where, "select": ["id", "metadata"]}).json()
    assert found["data"] == [{"id": conversation["id"], "metadata": patch["metadata"]}]
    where = [{"field": "externalCrmMetadata.id", "operator": "==", "value": "gladly-cust-strict"}]
    found = strict.client.post("/customers/list", json={"where": where, "select": ["id"]}).json()
    assert found["data"] == [{"id": customer["id"]}]


def test_permissive_default_still_offers_what_strict_drops(tmp_path: Path, start_emulator: Any) -> None:
    emu = start_emulator(state_path=tmp_path / "permissive.sqlite", strict=False)
    assert emu.admin.get("/health").json() == {"ok": True, "emulator": "unthread"}
    assert emu.admin.get("/mode").json() == {"mode": "permissive"}
    tag = emu.client.post("/tags", json={"name": "Billing"}).json()
    assert emu.client.post("/tags/list", json={}).json()["totalCount"] == 1
    conversation = emu.conversation(tags=[tag["id"]], ticketTypeId="TT-1", onBehalfOf={"email": "ann@support.example"})
    assert conversation["tags"] == [{"id": tag["id"], "name": "Billing"}]
    assert conversation["initialMessage"]["user"]["id"] == "U-ann"
    payload = {"markdown": "note", "onBehalfOf": AUTHOR, "isPrivateNote": True}
    attachment = ("a.txt", b"alpha", "text/plain")
    r = emu.client.post(f"/conversations/{conversation['id']}/messages", files=_multipart(payload, attachment))
    note = _messages(emu, conversation["id"])[-1]
    assert note["userId"] == "U-bob" and note["onBehalfOf"] == AUTHOR and note["isPrivateNote"] is True
    file_id = r.json()["files"][0]["id"]
    assert emu.client.get(f"/conversations/{conversation['id']}/files/{file_id}/full").content == b"alpha"
    users = emu.client.post("/users/list", json={"order": ["createdAt", "id"]}).json()["data"]
    assert [u["id"] for u in users] == ["U-ann", "U-bob"] and "slackId" in users[0]
    assert emu.client.get("/users/U-ann").status_code == 200
    assert emu.client.delete(f"/conversations/{conversation['id']}").status_code == 200


def test_strict_reads_a_permissive_state_file_without_authors(tmp_path: Path) -> None:
    """Strict views also apply on read, so a state file written permissively reads the strict way."""
    state = tmp_path / "shared-state.sqlite"
    permissive = launch(state, strict=False)
    conversation = permissive.conversation(onBehalfOf={"id": "U-ann"})
    note = {"markdown": "n", "onBehalfOf": AUTHOR, "isPrivateNote": True}
    assert permissive.client.post(f"/conversations/{conversation['id']}/messages", json=note).status_code == 201
    permissive.close()
    strict = launch(state, strict=True)
    try:
        listed = _messages(strict, conversation["id"])
        initial = strict.client.get(f"/conversations/{conversation['id']}").json()["initialMessage"]
        for message in [*listed, initial]:
            assert message["user"] is None and message["userId"] is None and "onBehalfOf" not in message
            assert message["isPrivateNote"] is False
        assert len(listed) == 2
    finally:
        strict.close()


def test_cli_strict_flag_starts_a_strict_emulator(tmp_path: Path) -> None:
    script = str(Path(sys.executable).with_name("migration-pipeline"))
    args = [script, "emulator", "unthread", "--strict", "--port", "0", "--state", str(tmp_path / "cli.sqlite")]
    env = os.environ | {"UNTHREAD_API_KEY": API_KEY}
    env.pop(STRICT_ENV, None)  # the flag alone must select strict mode
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        url = next((m.group(1) for line in proc.stdout if (m := re.search(r"listening on (http://\S+)", line))), None)
        assert url, "emulator did not start"
        assert httpx.get(f"{url}/_emulator/mode", timeout=10).json() == {"mode": "strict"}
        assert httpx.post(f"{url}/api/tags", json={"name": "x"}, headers={"X-Api-Key": API_KEY}).status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)
