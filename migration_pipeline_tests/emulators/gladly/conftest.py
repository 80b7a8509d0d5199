"""A small hand-built Gladly dataset and emulator servers over real sockets.

Every record is explicit so assertions can be exact. The clock is pinned at NOW; jobs sit at
known offsets from it (one too old, one in the future, one in progress, ...).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sim.emulators.common import RunningServer
from sim.emulators.gladly import create_app
from sim.synth.dataset import EXPORT_FILES, DatasetLayout, write_json

USER = "api.user@example.com"
TOKEN = "s3cret-token-value"
NOW = datetime(2024, 6, 15, 12, 0, 0, tzinfo=UTC)

BIG_CONVERSATION_ITEMS = 1001  # one more than the items endpoint returns
MANY_CONVERSATIONS = 101  # one more than the conversations endpoint returns
BIG_ITEM_PADDING = 3000  # characters per big item: the big job file is ~3 MB

ATTACHMENT_BYTES = bytes(range(256)) * 40  # 10,240 bytes, every byte value
RECORDING_BYTES = b"ID3" + bytes(range(200)) * 10


def ts(delta: timedelta) -> str:
    """RFC3339 (milliseconds, Z) at NOW + delta."""
    return (NOW + delta).strftime("%Y-%m-%dT%H:%M:%S.") + f"{(NOW + delta).microsecond // 1000:03d}Z"


def write_jsonl(path: Path, rows: list[Any]) -> None:
    """Rows are dicts (dumped) or raw strings (written verbatim, e.g. malformed lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")


def customer(
    cid: str, *, emails: list[str], updated: str, phones: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    return {
        "id": cid,
        "name": f"Name of {cid}",
        "emails": [{"original": e, "normalized": e.lower(), "primary": i == 0} for i, e in enumerate(emails)],
        "phones": [{"original": p, "normalized": p, "regionCode": "US", "primary": True} for p in phones],
        "customAttributes": {},
        "createdAt": "2024-01-01T00:00:00.000Z",
        "updatedAt": updated,
        **extra,
    }


def conversation(cid: str, customer_id: str, created: str) -> dict[str, Any]:
    return {
        "id": cid,
        "customerId": customer_id,
        "createdAt": created,
        "inboxId": "inbox-1",
        "status": "CLOSED",
        "topicIds": [],
        "customAttributes": [],
        "closedAt": created,
    }


def item(iid: str, conversation_id: str, customer_id: str, timestamp: str, content: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": iid,
        "customerId": customer_id,
        "conversationId": conversation_id,
        "timestamp": timestamp,
        "initiator": {"id": customer_id, "type": "CUSTOMER"},
        "content": content,
    }


def chat(text: str, session: str, attachments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"type": "CHAT_MESSAGE", "sessionId": session, "content": text, "messageType": "TEXT"}
    if attachments is not None:
        content["attachments"] = attachments
    return content


ATTACHMENT = {"id": "att-1", "contentType": "image/png", "filename": "photo.png", "fileSize": len(ATTACHMENT_BYTES)}

CUSTOMERS = [
    customer("cust-1", emails=["Alice@Example.COM"], phones=("+15550000001",), updated="2024-06-01T00:00:00.000Z",
             externalCustomerIds={"shop": "ext-1"}),
    customer("cust-2", emails=["bob@example.com", "shared@example.com"], updated="2024-06-10T00:00:00.000Z"),
    customer("cust-3", emails=["Shared@Example.com"], updated="2024-05-01T00:00:00.000Z"),
    customer("cust-merged", emails=["shared@example.com"], updated="2024-06-14T00:00:00.000Z"),
    customer("cust-many", emails=["many@example.com"], updated="2024-06-02T00:00:00.000Z"),
    customer("cust-legacy", emails=[], updated="2024-06-02T00:00:00.000Z", externalCustomerId="legacy-9"),
]
MERGES = {"cust-merged": "cust-1", "cust-gone": "cust-merged"}

CONVERSATIONS = [
    conversation("conv-1", "cust-1", "2024-06-10T08:00:00.000Z"),
    conversation("conv-2", "cust-1", "2024-06-01T08:00:00.000Z"),
    conversation("conv-big", "cust-2", "2024-06-05T08:00:00.000Z"),
] + [
    # written newest first so the ascending order must come from the emulator, not the file
    conversation(f"conv-many-{n:03d}", "cust-many",
                 (datetime(2024, 3, 1, tzinfo=UTC) + timedelta(hours=n)).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    for n in reversed(range(MANY_CONVERSATIONS))
]

JOB_A_ITEMS: list[Any] = [
    item("item-1", "conv-1", "cust-1", "2024-06-10T10:00:00.000Z", chat("hello", "sess-1", [ATTACHMENT])),
    item("item-3", "conv-1", "cust-1", "2024-06-10T09:00:00.000Z", chat("tie b", "sess-2")),
    item("item-2", "conv-1", "cust-1", "2024-06-10T09:00:00.000Z", chat("tie a", "sess-1")),
    "{this line is not json",
    item("item-call", "conv-1", "cust-1", "2024-06-10T11:00:00.000Z",
         {"type": "PHONE_CALL", "from": "+15550000001", "to": "+15559999999", "startedAt": "2024-06-10T11:00:00.000Z",
          "recordingUrl": "/api/v1/conversation-items/item-call/media/recording"}),
    item("item-noatt", "conv-2", "cust-1", "2024-06-01T09:00:00.000Z", chat("no files", "sess-9", [])),
    item("item-dup", "conv-2", "cust-1", "2024-06-01T10:00:00.000Z", chat("old copy", "sess-9")),
]
JOB_B_ITEMS: list[Any] = [
    item("item-dup", "conv-2", "cust-1", "2024-06-01T10:00:00.000Z", chat("new copy", "sess-9")),
    item("item-4", "conv-2", "cust-1", "2024-06-01T11:00:00.000Z", chat("later", "sess-9")),
]


def big_items() -> list[dict[str, Any]]:
    base = datetime(2024, 6, 5, 9, 0, tzinfo=UTC)
    return [
        item(f"big-{n:05d}", "conv-big", "cust-2",
             (base + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
             chat("x" * BIG_ITEM_PADDING, "sess-big"))
        for n in range(BIG_CONVERSATION_ITEMS)
    ]


def job(job_id: str, status: str, updated: str, files: list[str]) -> dict[str, Any]:
    return {
        "id": job_id,
        "scheduleId": "sched-1",
        "status": status,
        "updatedAt": updated,
        "parameters": {
            "type": "CONVERSATIONS", "startAt": "2024-06-01T00:00:00.000Z", "endAt": "2024-06-02T00:00:00.000Z"
        },
        "files": files,
    }


JOBS = {
    "job-old": job("job-old", "COMPLETED", ts(-timedelta(days=15)), ["topics.jsonl"]),
    # nanosecond precision, as in Gladly's own example
    "job-a": job("job-a", "COMPLETED", "2024-06-12T12:00:00.123456789Z", list(EXPORT_FILES)),
    "job-b": job("job-b", "COMPLETED", ts(-timedelta(days=1)), ["conversation_items.jsonl", "customers.jsonl"]),
    "job-big": job("job-big", "COMPLETED", ts(-timedelta(days=2)), ["conversation_items.jsonl"]),
    "job-failed": job("job-failed", "FAILED", ts(-timedelta(days=5)), []),
    "job-running": job("job-running", "IN_PROGRESS", ts(-timedelta(hours=2)), []),
    "job-pending": job("job-pending", "PENDING", ts(-timedelta(hours=1)), []),
    "job-future": job("job-future", "COMPLETED", ts(timedelta(days=1)), ["topics.jsonl"]),
}

AGENTS = [
    {"id": "agent-1", "name": "Amy Agent", "emailAddress": "amy@example.com"},
    {"id": "agent-2", "name": "Ben Agent", "emailAddress": "ben@example.com"},
]
TOPICS = [
    {"id": "topic-1", "name": "Billing", "disabled": False},
    {"id": "topic-2", "name": "Refunds", "disabled": True, "parentId": "topic-1"},
]
ORGANIZATION = {"id": "org-1", "name": "Example Org", "loginDomain": "example.gladly.com", "timezone": "UTC",
                "gladlyUrl": "https://example.gladly.com"}
SCHEDULES = [{"id": "sched-1", "frequency": "DAILY", "type": "CONVERSATIONS",
              "nextStartAt": "2024-06-16T00:00:00.000Z", "updatedAt": "2024-01-01T00:00:00.000Z"}]
TRANSCRIPT = {"itemId": "item-call",
              "paragraphs": [{"transcript": "hi", "speaker": "AGENT", "startTime": 0, "endTime": 1}],
              "customerId": "cust-1", "numberOfSpeakers": 2, "language": "en-US",
              "createdAt": "2024-06-10T11:05:00.000Z", "updatedAt": "2024-06-10T11:05:00.000Z"}


def build_dataset(root: Path) -> DatasetLayout:
    """Write the whole fixture dataset under `root`."""
    layout = DatasetLayout(root)
    write_json(layout.organization, ORGANIZATION)
    write_json(layout.schedule, SCHEDULES)
    write_json(layout.agents, AGENTS)
    write_json(layout.topics, TOPICS)
    write_json(layout.merges, MERGES)
    write_jsonl(layout.customers, CUSTOMERS)
    write_jsonl(layout.conversations, CONVERSATIONS)
    write_jsonl(layout.transcripts, [TRANSCRIPT])
    layout.attachments_dir.mkdir(parents=True)
    (layout.attachments_dir / "att-1").write_bytes(ATTACHMENT_BYTES)
    layout.recordings_dir.mkdir(parents=True)
    (layout.recordings_dir / "item-call.mp3").write_bytes(RECORDING_BYTES)
    for job_id, body in JOBS.items():
        write_json(layout.job_file(job_id, "job.json"), body)
    write_jsonl(layout.job_file("job-a", "conversation_items.jsonl"), JOB_A_ITEMS)
    write_jsonl(layout.job_file("job-a", "agents.jsonl"), AGENTS)
    write_jsonl(layout.job_file("job-a", "topics.jsonl"), TOPICS)
    write_jsonl(layout.job_file("job-a", "customers.jsonl"),
                [{"id": "cust-1", "name": "Name of cust-1", "emailAddresses": ["Alice@Example.COM"]}])
    write_jsonl(layout.job_file("job-b", "conversation_items.jsonl"), JOB_B_ITEMS)
    write_jsonl(layout.job_file("job-b", "customers.jsonl"), [])
    write_jsonl(layout.job_file("job-big", "conversation_items.jsonl"), big_items())
    write_jsonl(layout.job_file("job-old", "topics.jsonl"), TOPICS)
    write_jsonl(layout.job_file("job-future", "topics.jsonl"), TOPICS)
    return layout


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> DatasetLayout:
    return build_dataset(tmp_path_factory.mktemp("gladly-dataset"))


ServerFactory = Callable[..., RunningServer]


@pytest.fixture
def make_server(dataset: DatasetLayout) -> Iterator[ServerFactory]:
    """Start a fresh emulator (own deletions, clock, limiter and fault counters) per call."""
    running: list[RunningServer] = []

    def start(**overrides: Any) -> RunningServer:
        kwargs: dict[str, Any] = {"api_user": USER, "api_token": TOKEN, "now": NOW, "rate_limit_per_second": 10_000}
        kwargs.update(overrides)
        server = RunningServer(create_app(dataset.root, **kwargs)).start()
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


@pytest.fixture(scope="session")
def shared_server(dataset: DatasetLayout) -> Iterator[RunningServer]:
    """One emulator for read-only tests (nothing here mutates it)."""
    app = create_app(dataset.root, api_user=USER, api_token=TOKEN, now=NOW, rate_limit_per_second=10_000)
    with RunningServer(app) as server:
        yield server


@pytest.fixture
def client(shared_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_server.url + "/api/v1", auth=(USER, TOKEN), timeout=10) as c:
        yield c


def client_for(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/api/v1", auth=(USER, TOKEN), timeout=10)


def errors(response: httpx.Response) -> list[dict[str, Any]]:
    """The Gladly error array, asserting the envelope shape on the way."""
    body = response.json()
    assert set(body) == {"errors"} and isinstance(body["errors"], list) and body["errors"], body
    return body["errors"]
