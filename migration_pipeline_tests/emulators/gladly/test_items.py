"""Conversations, conversation items, attachments, transcripts, recordings, agents, topics, org."""

from __future__ import annotations

import httpx
import pytest

from sim.emulators.common import RunningServer

from .conftest import (
    AGENTS,
    ATTACHMENT_BYTES,
    BIG_CONVERSATION_ITEMS,
    CONVERSATIONS,
    JOB_A_ITEMS,
    ORGANIZATION,
    RECORDING_BYTES,
    TOPICS,
    TRANSCRIPT,
    errors,
)


def item_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [i["id"] for i in response.json()]


def test_get_conversation(client: httpx.Client) -> None:
    assert client.get("/conversations/conv-1").json() == CONVERSATIONS[0]
    missing = client.get("/conversations/nope")
    assert missing.status_code == 404
    assert errors(missing) == [{"code": "not_exist", "detail": "conversation [nope] does not exist"}]


def test_items_ascending_with_ties_by_id(client: httpx.Client) -> None:
    response = client.get("/conversations/conv-1/items")
    assert item_ids(response) == ["item-2", "item-3", "item-1", "item-call"]
    assert response.headers["Gladly-Limited-Data"] == "false"
    assert response.json()[2] == JOB_A_ITEMS[0]


def test_session_filter(client: httpx.Client) -> None:
    assert item_ids(client.get("/conversations/conv-1/items", params={"sessionId": "sess-1"})) == ["item-2", "item-1"]
    assert item_ids(client.get("/conversations/conv-1/items", params={"sessionId": "nope"})) == []


def test_duplicates_keep_the_newest_export_and_malformed_lines_are_skipped(client: httpx.Client) -> None:
    response = client.get("/conversations/conv-2/items")
    assert item_ids(response) == ["item-noatt", "item-dup", "item-4"]
    assert response.json()[1]["content"]["content"] == "new copy"


def test_more_than_1000_items_are_capped_and_flagged(client: httpx.Client) -> None:
    response = client.get("/conversations/conv-big/items")
    ids = item_ids(response)
    assert response.headers["Gladly-Limited-Data"] == "true"
    assert len(ids) == 1000 < BIG_CONVERSATION_ITEMS
    assert ids == [f"big-{n:05d}" for n in range(1000)]


def test_items_of_unknown_conversation_is_404(client: httpx.Client) -> None:
    response = client.get("/conversations/nope/items")
    assert response.status_code == 404
    assert errors(response)[0]["code"] == "not_exist"


def test_get_item(client: httpx.Client) -> None:
    assert client.get("/conversation-items/item-1").json() == JOB_A_ITEMS[0]
    missing = client.get("/conversation-items/nope")
    assert missing.status_code == 404
    assert errors(missing) == [{"code": "not_exist", "detail": "conversation item [nope] does not exist"}]


def test_attachment_redirect_then_download(client: httpx.Client, shared_server: RunningServer) -> None:
    redirect = client.get("/conversation-items/item-1/attachments/att-1")
    assert redirect.status_code == 303
    location = redirect.headers["Location"]
    assert location == shared_server.url + "/_files/attachments/att-1"
    download = httpx.get(location)  # no credentials: the URL itself is the grant
    assert download.status_code == 200
    assert download.content == ATTACHMENT_BYTES
    assert download.headers["content-type"] == "image/png"
    assert download.headers["content-length"] == str(len(ATTACHMENT_BYTES))


def test_attachment_followed_by_client(client: httpx.Client) -> None:
    response = client.get("/conversation-items/item-1/attachments/att-1", follow_redirects=True)
    assert response.status_code == 200 and response.content == ATTACHMENT_BYTES


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/conversation-items/item-2/attachments/att-1", 400, "conversation item [item-2] has no attachments"),
        ("/conversation-items/item-noatt/attachments/att-1", 400, "conversation item [item-noatt] has no attachments"),
        ("/conversation-items/item-1/attachments/att-9", 404,
         "attachment [att-9] does not exist on conversation item [item-1]"),
        ("/conversation-items/nope/attachments/att-1", 404, "conversation item [nope] does not exist"),
    ],
)
def test_attachment_refusals(client: httpx.Client, path: str, status: int, detail: str) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert errors(response)[0]["detail"] == detail


def test_unknown_attachment_file_is_404(shared_server: RunningServer) -> None:
    assert httpx.get(shared_server.url + "/_files/attachments/att-9").status_code == 404


def test_voice_transcript(client: httpx.Client) -> None:
    expected = {k: v for k, v in TRANSCRIPT.items() if k != "itemId"}
    assert client.get("/conversation-items/item-call/voice-transcript").json() == expected
    assert client.get("/conversation-items/item-1/voice-transcript").status_code == 404
    assert client.get("/conversation-items/nope/voice-transcript").status_code == 404


def test_recording(client: httpx.Client) -> None:
    response = client.get("/conversation-items/item-call/media/recording")
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.content == RECORDING_BYTES
    missing = client.get("/conversation-items/item-1/media/recording")
    assert missing.status_code == 404
    detail = "recording for conversation item [item-1] does not exist"
    assert errors(missing) == [{"code": "not_exist", "detail": detail}]


def test_agents_topics_organization(client: httpx.Client) -> None:
    assert client.get("/agents").json() == AGENTS
    assert client.get("/agents/agent-2").json() == AGENTS[1]
    assert errors(client.get("/agents/nope")) == [{"code": "not_exist", "detail": "agent [nope] does not exist"}]
    assert client.get("/topics").json() == TOPICS
    assert client.get("/topics/topic-2").json() == TOPICS[1]
    missing = client.get("/topics/nope")
    assert missing.status_code == 404
    assert errors(missing) == [{"code": "not_exist", "detail": "conversation topic [nope] does not exist"}]
    assert client.get("/organization").json() == ORGANIZATION
