"""A restarted emulator on the same state file keeps every object, file and counter."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import StartEmulator


def test_restart_keeps_objects_files_and_friendly_ids(start_emulator: StartEmulator, tmp_path: Path) -> None:
    state = tmp_path / "keep.sqlite"
    first = start_emulator(state_path=state)
    customer = first.customer("Persisted Ltd")
    conv = first.conversation(customerId=customer["id"])
    files = [("json", (None, json.dumps({"markdown": "file"}))), ("attachments", ("k.bin", b"\x00\x01keep", "a/b"))]
    message = first.client.post(f"/conversations/{conv['id']}/messages", files=files).json()
    before = first.stats()
    first.close()

    second = start_emulator(state_path=state, workspace=None)
    assert second.stats() == before
    assert second.client.get(f"/customers/{customer['id']}").json() == customer
    assert second.client.get(f"/conversations/{conv['id']}").json() == conv
    file_id = message["files"][0]["id"]
    assert second.client.get(f"/conversations/{conv['id']}/files/{file_id}/full").content == b"\x00\x01keep"
    assert second.client.get("/users/U-ann").status_code == 200  # seed kept without a workspace
    assert second.conversation()["friendlyId"] == conv["friendlyId"] + 1
    later = second.client.post(f"/conversations/{conv['id']}/messages", json={"markdown": "after restart"}).json()
    assert later["ts"] > message["ts"]


def test_restart_with_workspace_refreshes_reference_data(start_emulator: StartEmulator, tmp_path: Path) -> None:
    state = tmp_path / "ws.sqlite"
    start_emulator(state_path=state).close()
    workspace = {"users": [{"id": "U-new", "name": "New", "email": "new@x.example"}], "slackChannels": [{"id": "C-2", "name": "two"}]}
    again = start_emulator(state_path=state, workspace=workspace)
    assert again.client.get("/users/U-new").json()["name"] == "New"
    assert again.client.get("/users/U-ann").status_code == 200
    r = again.client.post("/conversations", json={"type": "slack", "channelId": "C-2", "markdown": "hi"})
    assert r.status_code == 201, r.text
