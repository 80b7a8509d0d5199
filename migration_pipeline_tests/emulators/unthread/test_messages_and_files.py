"""Messages (both JSON forms and multipart), attachments, downloads and upload limits."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pytest

from .conftest import Emulator


def _multipart(payload: dict[str, Any], *files: tuple[str, bytes, str]) -> list[tuple[str, Any]]:
    return [("json", (None, json.dumps(payload))), *[("attachments", f) for f in files]]


def test_current_form_message(shared: Emulator) -> None:
    conv = shared.conversation()
    body = {"body": {"type": "markdown", "value": "current"}, "onBehalfOf": {"id": "U-bob"}, "isPrivateNote": True}
    r = shared.client.post(f"/conversations/{conv['id']}/messages", json=body)
    assert r.status_code == 201, r.text
    msg = r.json()
    assert msg["text"] == "current" and msg["conversationId"] == conv["id"]
    assert msg["user"] == {"id": "U-bob", "name": "Bob Agent", "email": "bob@support.example", "slackId": None, "photo": None}
    assert msg["onBehalfOf"] == {"id": "U-bob"} and msg["isPrivateNote"] is True and msg["files"] == []
    assert msg["threadTs"] == conv["initialMessage"]["ts"]


def test_legacy_form_message_and_unknown_author(shared: Emulator) -> None:
    conv = shared.conversation()
    body = {"markdown": "legacy", "onBehalfOf": {"email": "stranger@customer.example", "name": "Stranger"}}
    msg = shared.client.post(f"/conversations/{conv['id']}/messages", json=body).json()
    assert msg["text"] == "legacy" and msg["user"] is None and msg["isPrivateNote"] is False
    assert msg["onBehalfOf"] == {"email": "stranger@customer.example", "name": "Stranger"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"body": {"type": "html", "value": "<b>x</b>"}}, "body.type"),
        ({"body": {"value": "no type"}}, "body.type"),
        ({"body": {"type": "markdown", "value": ""}}, "body.value"),
        ({"body": {"type": "markdown"}}, "body.value"),
        ({"body": "text"}, "body"),
        ({"markdown": ""}, "markdown"),
        ({"markdown": "ok", "isPrivateNote": "yes"}, "isPrivateNote"),
        ({"markdown": "ok", "onBehalfOf": {"id": 3}}, "onBehalfOf.id"),
    ],
)
def test_message_refusals(shared: Emulator, body: dict[str, Any], field: str) -> None:
    conv = shared.conversation()
    r = shared.client.post(f"/conversations/{conv['id']}/messages", json=body)
    assert r.status_code == 400 and r.json()["error"].startswith(f"{field}:"), r.text


def test_message_to_unknown_conversation_is_404(shared: Emulator) -> None:
    r = shared.client.post("/conversations/nope/messages", json={"markdown": "x"})
    assert r.status_code == 404 and "nope" in r.json()["error"]
    assert shared.client.post("/conversations/nope/messages/list", json={}).status_code == 404


def test_ts_strictly_increases_within_a_conversation(shared: Emulator) -> None:
    conv = shared.conversation()
    for i in range(15):
        shared.client.post(f"/conversations/{conv['id']}/messages", json={"markdown": f"m{i}"})
    data = shared.client.post(f"/conversations/{conv['id']}/messages/list", json={"order": ["ts"]}).json()["data"]
    stamps = [m["ts"] for m in data]
    assert len(stamps) == 16 and all(a < b for a, b in zip(stamps, stamps[1:], strict=False))
    assert [m["text"] for m in data] == ["Hello", *[f"m{i}" for i in range(15)]]
    assert all(len(t.split(".")[1]) == 6 for t in stamps)


def test_multipart_create_and_message_then_download_equal_bytes(shared: Emulator) -> None:
    blob, text = os.urandom(300_000), "plain text attachment".encode()
    payload = {"type": "triage", "triageChannelId": "TRIAGE-1", "markdown": "see files", "title": "With files"}
    r = shared.client.post(
        "/conversations", files=_multipart(payload, ("scan.pdf", blob, "application/pdf"), ("note.txt", text, "text/plain"))
    )
    assert r.status_code == 201, r.text
    conv = r.json()
    assert conv["title"] == "With files"
    files = conv["initialMessage"]["files"]
    assert [(f["name"], f["size"], f["mimetype"]) for f in files] == [
        ("scan.pdf", len(blob), "application/pdf"),
        ("note.txt", len(text), "text/plain"),
    ]
    reply = shared.client.post(
        f"/conversations/{conv['id']}/messages",
        files=_multipart({"body": {"type": "markdown", "value": "reply"}}, ("pic.png", b"\x89PNG data", "image/png")),
    )
    assert reply.status_code == 201, reply.text
    files.append(reply.json()["files"][0])
    for f, original in zip(files, [blob, text, b"\x89PNG data"], strict=True):
        got = shared.client.get(f"/conversations/{conv['id']}/files/{f['id']}/full")
        assert got.status_code == 200
        assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(original).hexdigest()
        assert got.headers["content-length"] == str(len(original))
        assert got.headers["content-type"].startswith(f["mimetype"])


def test_download_refusals(shared: Emulator) -> None:
    conv = shared.conversation()
    other = shared.conversation()
    msg = shared.client.post(
        f"/conversations/{conv['id']}/messages", files=_multipart({"markdown": "f"}, ("a.txt", b"a", "text/plain"))
    ).json()
    file_id = msg["files"][0]["id"]
    assert shared.client.get(f"/conversations/{conv['id']}/files/nope/full").status_code == 404
    assert shared.client.get(f"/conversations/{other['id']}/files/{file_id}/full").status_code == 404


def test_multipart_refusals(shared: Emulator) -> None:
    conv = shared.conversation()
    url = f"/conversations/{conv['id']}/messages"
    no_json = shared.client.post(url, files=[("attachments", ("a.txt", b"a", "text/plain"))])
    assert no_json.status_code == 400 and no_json.json()["error"].startswith("json:")
    bad_json = shared.client.post(url, files=[("json", (None, "{not json"))])
    assert bad_json.status_code == 400 and "malformed JSON" in bad_json.json()["error"]


def test_upload_limits(start_emulator: Any) -> None:
    emu = start_emulator(max_files_per_message=2, max_file_bytes=1000, max_markdown_chars=20)
    conv = emu.conversation()
    url = f"/conversations/{conv['id']}/messages"
    small = ("a.txt", b"x" * 1000, "text/plain")
    assert emu.client.post(url, files=_multipart({"markdown": "ok"}, small, small)).status_code == 201
    too_many = emu.client.post(url, files=_multipart({"markdown": "ok"}, small, small, small))
    assert too_many.status_code == 400 and too_many.json()["error"].startswith("attachments:")
    too_big = emu.client.post(url, files=_multipart({"markdown": "ok"}, ("big.bin", b"x" * 1001, "application/octet-stream")))
    assert too_big.status_code == 413 and "big.bin" in too_big.json()["error"] and "1001" in too_big.json()["error"]
    too_long = emu.client.post(url, json={"body": {"type": "markdown", "value": "y" * 21}})
    assert too_long.status_code == 400 and too_long.json()["error"].startswith("body.value:")
    create_big = emu.client.post(
        "/conversations",
        files=_multipart({"type": "triage", "triageChannelId": "TRIAGE-1", "markdown": "x"}, ("big.bin", b"x" * 1001, "a/b")),
    )
    assert create_big.status_code == 413
    stats = emu.stats()
    assert (stats["conversations"], stats["messages"], stats["files"]) == (1, 2, 2)


def test_message_list_select_user_fields(shared: Emulator) -> None:
    conv = shared.conversation(onBehalfOf={"id": "U-ann"})
    body = {"select": ["ts", "text", "user.id", "user.email", "conversation.friendlyId"], "order": ["ts"], "descending": True}
    data = shared.client.post(f"/conversations/{conv['id']}/messages/list", json=body).json()["data"]
    assert data == [
        {
            "ts": conv["initialMessage"]["ts"],
            "text": "Hello",
            "user": {"id": "U-ann", "email": "ann@support.example"},
            "conversation": {"friendlyId": conv["friendlyId"]},
        }
    ]
