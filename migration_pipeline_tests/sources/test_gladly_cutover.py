"""Cutover in Gladly: close the migrated conversations, from the ledger, against the real Gladly
emulator over HTTP and a hand-built staging state on both engines (no migration is run).

The staging state: conversations that count as migrated (every ticket `done`, every staged item
loaded), and three that do not (a ticket not loaded, an item refused, items not split yet), plus
a customer-activity pseudo-conversation that is not a Gladly conversation at all.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from migration_pipeline.lib import ledger_keys
from sim.emulators.common import RunningServer
from sim.emulators.gladly import create_app
from migration_pipeline.vendors.gladly.client import GladlyClient
from migration_pipeline.vendors.gladly.cutover import CSV_COLUMNS, plan_cutover, run_cutover
from migration_pipeline.lib.staging.db import StagingDatabase, conversation_items, ledger, ticket_items, tickets
from migration_pipeline.pairs.gladly_to_unthread.pair import NAME as GLADLY_TO_UNTHREAD
from sim.synth.dataset import DatasetLayout, write_json
from migration_pipeline_tests.conftest import GLADLY_TOKEN, GLADLY_USER

NOW = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
CUSTOMER = {"id": "cust-1", "type": "CUSTOMER"}
AGENT = {"id": "agent-1", "type": "AGENT"}
TOPIC = "topic-migrated"

# conversation -> (Gladly status, its items as (id, who, timestamp)); the items' order is the timeline
CONVERSATIONS: dict[str, tuple[str, list[tuple[str, dict, str]]]] = {
    "conv-ok": ("WAITING", [("ok-1", CUSTOMER, "2026-11-01T10:00:00"), ("ok-2", AGENT, "2026-11-01T11:00:00")]),
    "conv-two": ("WAITING", [("two-1", CUSTOMER, "2026-11-02T10:00:00"), ("two-2", AGENT, "2026-11-02T11:00:00"),
                             ("two-3", CUSTOMER, "2026-11-09T10:00:00"), ("two-4", AGENT, "2026-11-09T11:00:00")]),
    "conv-waiting": ("OPEN", [("wait-1", AGENT, "2026-11-03T10:00:00"), ("wait-2", CUSTOMER, "2026-11-03T11:00:00")]),
    "conv-topics": ("WAITING", [("top-1", CUSTOMER, "2026-11-04T10:00:00"), ("top-2", AGENT, "2026-11-04T11:00:00")]),
    "conv-closed": ("CLOSED", [("cl-1", CUSTOMER, "2026-11-05T10:00:00"), ("cl-2", AGENT, "2026-11-05T11:00:00")]),
    "conv-partial": ("WAITING", [("par-1", CUSTOMER, "2026-11-06T10:00:00"), ("par-2", AGENT, "2026-11-06T11:00:00"),
                                 ("par-3", CUSTOMER, "2026-11-12T10:00:00"), ("par-4", AGENT, "2026-11-12T11:00:00")]),
    "conv-refused": ("WAITING", [("ref-1", CUSTOMER, "2026-11-07T10:00:00"), ("ref-2", AGENT, "2026-11-07T11:00:00")]),
    "conv-unsplit": ("WAITING", [("uns-1", CUSTOMER, "2026-11-08T10:00:00"), ("uns-2", AGENT, "2026-11-08T11:00:00")]),
}
MIGRATED = ["conv-closed", "conv-ok", "conv-topics", "conv-two", "conv-waiting"]
NOT_MIGRATED = ["conv-partial", "conv-refused", "conv-unsplit"]
# ticket -> (conversation, items, ledger state of the ticket)
TICKETS = {
    "t-ok": ("conv-ok", ["ok-1", "ok-2"], "done"),
    "t-two-a": ("conv-two", ["two-1", "two-2"], "done"),
    "t-two-b": ("conv-two", ["two-3", "two-4"], "done"),
    "t-wait": ("conv-waiting", ["wait-1", "wait-2"], "done"),
    "t-top": ("conv-topics", ["top-1", "top-2"], "done"),
    "t-cl": ("conv-closed", ["cl-1", "cl-2"], "done"),
    "t-par-a": ("conv-partial", ["par-1", "par-2"], "done"),
    "t-par-b": ("conv-partial", ["par-3", "par-4"], "intent"),
    "t-ref": ("conv-refused", ["ref-1", "ref-2"], "done"),
    "t-act": ("activity:cust-1", ["act-1"], "done"),
}
# message ledger keys: an item split into parts is loaded by its first part (`#1`)
MESSAGE_STATES = {"two-3": ("message:two-3#1", "done"), "ref-2": ("message:ref-2", "failed")}


# -- the Gladly dataset and emulator -----------------------------------------------------------


def _item(item_id: str, conversation_id: str, who: dict, ts: str) -> dict[str, Any]:
    content = {"type": "CHAT_MESSAGE", "sessionId": f"s-{conversation_id}", "content": f"text of {item_id}", "messageType": "TEXT"}
    return {"id": item_id, "customerId": "cust-1", "conversationId": conversation_id, "timestamp": ts + ".000Z",
            "initiator": who, "content": content}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    layout = DatasetLayout(tmp_path_factory.mktemp("cutover-dataset"))
    write_json(layout.topics, [{"id": TOPIC, "name": "Migrated to Unthread", "disabled": False},
                               {"id": "topic-off", "name": "Old", "disabled": True}])
    write_json(layout.agents, [{"id": "agent-1", "name": "Amy", "emailAddress": "amy@example.com"}])
    customer = {"id": "cust-1", "name": "Cleo", "emails": [], "phones": [], "customAttributes": {},
                "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z"}
    layout.customers.parent.mkdir(parents=True, exist_ok=True)
    layout.customers.write_text(json.dumps(customer) + "\n")
    lines, items = [], []
    for cid, (status, timeline) in CONVERSATIONS.items():
        conversation = {"id": cid, "customerId": "cust-1", "createdAt": timeline[0][2] + ".000Z", "inboxId": "inbox-1",
                        "status": status, "topicIds": [], "customAttributes": []}
        if status == "CLOSED":
            conversation["closedAt"] = timeline[-1][2] + ".000Z"
        lines.append(json.dumps(conversation))
        items += [json.dumps(_item(i, cid, who, ts)) for i, who, ts in timeline]
    layout.conversations.write_text("\n".join(lines) + "\n")
    write_json(layout.job_file("job-1", "job.json"), {
        "id": "job-1", "status": "COMPLETED", "updatedAt": "2026-11-19T00:00:00.000Z", "files": ["conversation_items.jsonl"],
        "parameters": {"type": "CONVERSATIONS", "startAt": "2026-11-01T00:00:00.000Z", "endAt": "2026-11-19T00:00:00.000Z"},
    })
    layout.job_file("job-1", "conversation_items.jsonl").write_text("\n".join(items) + "\n")
    return layout.root


@pytest.fixture
def gladly(dataset):
    """A fresh emulator (its writes live in memory) where conv-topics needs a topic to close."""
    server = RunningServer(create_app(dataset, api_user=GLADLY_USER, api_token=GLADLY_TOKEN, now=NOW,
                                      rate_limit_per_second=10_000)).start()
    httpx.put(f"{server.url}/_emulator/close-rules", json={"topics_required_conversations": ["conv-topics"]}).raise_for_status()
    yield server
    server.stop()


@pytest.fixture
def client(gladly):
    with GladlyClient(gladly.url, GLADLY_USER, GLADLY_TOKEN, requests_per_second=0, max_attempts=2) as c:
        yield c


def _api(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/api/v1", auth=(GLADLY_USER, GLADLY_TOKEN), timeout=10)


def _requests(server: RunningServer) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in httpx.get(f"{server.url}/_emulator/requests").json()]


def _status(server: RunningServer, cid: str) -> dict[str, Any]:
    with _api(server) as api:
        return api.get(f"/conversations/{cid}").json()


# -- the staging state -------------------------------------------------------------------------


@pytest.fixture
def staged(staging_db: StagingDatabase) -> StagingDatabase:
    build_staging_state(staging_db)
    return staging_db


def build_staging_state(staging_db: StagingDatabase) -> None:
    """Items, tickets and a ledger as a loaded migration leaves them (see the module docstring)."""
    stamp = "2026-11-19T00:00:00.000000Z"
    item_rows, when = [], {}
    for cid, (_, timeline) in CONVERSATIONS.items():
        for n, (item_id, who, ts) in enumerate(timeline):
            when[item_id] = ts + ".000000Z"
            item_rows.append({
                "source_id": item_id, "customer_id": "cust-1", "conversation_id": cid, "ts": when[item_id],
                "kind": "message", "source_kind": "CHAT_MESSAGE", "visibility": "public", "source_system": "gladly",
                "author_type": who["type"].lower(), "author_id": who["id"], "channel": "chat",
                "attachments": [], "payload": {}, "job_id": "job-1", "file_name": "conversation_items.jsonl",
                "line_no": len(item_rows) + 1, "staged_at": stamp,
            })
    when["act-1"] = "2026-11-01T09:00:00.000000Z"
    item_rows.append({**item_rows[0], "source_id": "act-1", "conversation_id": None, "ts": when["act-1"],
                      "kind": "activity", "source_kind": "CUSTOMER_ACTIVITY", "line_no": 999})
    ticket_rows, link_rows, ledger_rows = [], [], []
    for tid, (cid, item_ids, state) in TICKETS.items():
        ticket_rows.append({
            "ticket_id": tid, "conversation_id": cid, "customer_id": "cust-1", "first_ts": when[item_ids[0]],
            "last_ts": when[item_ids[-1]], "first_item_id": item_ids[0], "item_count": len(item_ids),
            "rule_version": "v1", "cut_at": stamp,
        })
        link_rows += [{"item_id": i, "ticket_id": tid, "ts": when[i]} for i in item_ids]
        ledger_rows.append(_ledger(f"ticket:{tid}", "conversation", state))
        for item_id in item_ids:
            key, item_state = MESSAGE_STATES.get(item_id, (f"message:{item_id}", "done"))
            if state == "done":
                ledger_rows.append(_ledger(key, "message", item_state))
    with staging_db.begin() as conn:
        conn.execute(conversation_items.insert(), item_rows)
        conn.execute(tickets.insert(), ticket_rows)
        conn.execute(ticket_items.insert(), link_rows)
        conn.execute(ledger.insert(), ledger_rows)


def _ledger(key: str, entity: str, state: str) -> dict[str, Any]:
    return {"source_key": key, "entity_type": entity, "parent_key": None, "target_id": f"ut-{key}", "state": state,
            "attempts": 1, "last_error": "refused by Unthread" if state == "failed" else None, "run_id": "load-run",
            "updated_at": "2026-11-19T00:00:00.000000Z"}


def _csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        return {row["conversationId"]: row for row in reader}


def _cutover_ledger(db: StagingDatabase) -> dict[str, tuple[str, int]]:
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(ledger.c.source_key, ledger.c.state, ledger.c.attempts)
                            .where(ledger.c.source_key.like(ledger_keys.prefix(ledger_keys.CUTOVER_CLOSE) + "%"))).all()
    return {ledger_keys.parse(key).id: (state, attempts) for key, state, attempts in rows}


# -- tests ---------------------------------------------------------------------------------------


def test_plan_and_dry_run_send_nothing_and_write_the_plan(staged, gladly, client, tmp_path):
    plan = plan_cutover(staged)
    assert plan.to_close == MIGRATED
    assert sorted(plan.skipped) == NOT_MIGRATED  # the activity pseudo-conversation is no Gladly conversation
    assert "1 of 2 tickets not loaded" in plan.skipped["conv-partial"] and "ticket:t-par-b" in plan.skipped["conv-partial"]
    assert "1 of 2 staged items not loaded" in plan.skipped["conv-refused"] and "ref-2" in plan.skipped["conv-refused"]
    assert "not split into tickets" in plan.skipped["conv-unsplit"]

    result = run_cutover(staged, client, tmp_path / "reports", dry_run=True, topic_id=TOPIC, run_id="dry-1")
    assert _requests(gladly) == [], "a dry run sends no request at all"
    assert result.csv_path.parent == tmp_path / "reports" and result.csv_path.name.endswith("-dry-run.csv")
    rows = _csv(result.csv_path)
    assert {c: r["status"] for c, r in rows.items()} == {**dict.fromkeys(MIGRATED, "would_close"),
                                                         **dict.fromkeys(NOT_MIGRATED, "skipped")}
    assert rows["conv-partial"]["error"].startswith("not migrated")
    assert _cutover_ledger(staged) == {}, "a dry run writes nothing to the ledger"


def test_run_closes_only_migrated_reports_refusals_and_a_rerun_patches_nothing_again(staged, gladly, client, tmp_path):
    result = run_cutover(staged, client, tmp_path, dry_run=False, run_id="run-1")
    rows = _csv(result.csv_path)
    assert {c: r["status"] for c, r in rows.items()} == {
        "conv-ok": "closed", "conv-two": "closed", "conv-closed": "already_closed",
        "conv-waiting": "failed", "conv-topics": "failed", **dict.fromkeys(NOT_MIGRATED, "skipped"),
    }
    assert "cannot close conversation, customer waiting for response" in rows["conv-waiting"]["error"]
    assert "topics are required before closing of conversation" in rows["conv-topics"]["error"]
    assert result.counts["closed"] == 2 and result.counts["failed"] == 2 and result.counts["skipped"] == 3
    for cid in ("conv-ok", "conv-two"):
        assert _status(gladly, cid)["status"] == "CLOSED" and _status(gladly, cid)["closedAt"].startswith("2026-11-20T06:00")
    sent = _requests(gladly)
    touched = {path.split("/")[4] for _, path in sent}
    assert touched.isdisjoint(NOT_MIGRATED), "a conversation that was not migrated is never touched"
    patched = sorted(path.split("/")[4] for method, path in sent if method == "PATCH")
    assert patched == ["conv-ok", "conv-topics", "conv-two", "conv-waiting"]  # not the one already closed
    for cid in ("conv-waiting", "conv-topics", *NOT_MIGRATED):
        assert _status(gladly, cid)["status"] != "CLOSED"
    states = _cutover_ledger(staged)
    assert {c: s for c, (s, _) in states.items()} == {
        "conv-ok": "done", "conv-two": "done", "conv-closed": "done", "conv-waiting": "refused", "conv-topics": "refused"}

    httpx.post(f"{gladly.url}/_emulator/requests/clear").raise_for_status()
    again = _csv(run_cutover(staged, client, tmp_path, dry_run=False, run_id="run-2").csv_path)
    assert {c: again[c]["status"] for c in ("conv-ok", "conv-two", "conv-closed")} == dict.fromkeys(
        ("conv-ok", "conv-two", "conv-closed"), "already_closed")
    second = _requests(gladly)
    assert not {path.split("/")[4] for _, path in second} & {"conv-ok", "conv-two", "conv-closed"}, "no second request"
    assert sorted(path.split("/")[4] for m, path in second if m == "PATCH") == ["conv-topics", "conv-waiting"]  # retried


def test_topic_is_applied_before_closing_and_force_overrides_a_waiting_customer(staged, gladly, client, tmp_path):
    for unusable in ("no-such-topic", "topic-off"):  # unknown, disabled: the run stops before any write
        with pytest.raises(ValueError, match="nothing was closed"):
            run_cutover(staged, client, tmp_path, dry_run=False, topic_id=unusable)
    assert [m for m, _ in _requests(gladly)] == ["GET", "GET"] and _cutover_ledger(staged) == {}

    result = run_cutover(staged, client, tmp_path, dry_run=False, topic_id=TOPIC, force=True, run_id="run-t")
    statuses = {c: r["status"] for c, r in _csv(result.csv_path).items()}
    assert [c for c in MIGRATED if statuses[c] == "closed"] == ["conv-ok", "conv-topics", "conv-two", "conv-waiting"]
    for cid in ("conv-ok", "conv-topics", "conv-two", "conv-waiting"):
        body = _status(gladly, cid)
        assert body["status"] == "CLOSED" and body["topicIds"] == [TOPIC]
        calls = [m for m, path in _requests(gladly) if path.split("/")[4:5] == [cid] and m != "GET"]
        assert calls == ["POST", "PATCH"], cid
    assert _status(gladly, "conv-closed")["topicIds"] == [], "an already closed conversation is left as it is"


def test_a_crash_after_the_close_resumes_without_closing_again(staged, gladly, client, tmp_path):
    with staged.begin() as conn:  # the crashed run wrote its intent and Gladly applied the PATCH
        conn.execute(ledger.insert(), [{**_ledger(ledger_keys.cutover_close("conv-ok"), "cutover_close", "intent"), "target_id": None}])
    with _api(gladly) as api:
        assert api.patch("/conversations/conv-ok", json={"status": {"value": "CLOSED"}}).status_code == 204
    httpx.post(f"{gladly.url}/_emulator/requests/clear").raise_for_status()
    rows = _csv(run_cutover(staged, client, tmp_path, dry_run=False, force=True, run_id="resume").csv_path)
    assert rows["conv-ok"]["status"] == "closed"
    assert ("PATCH", "/api/v1/conversations/conv-ok") not in _requests(gladly)
    assert _cutover_ledger(staged)["conv-ok"] == ("done", 1)


def test_emulator_conversation_writes_follow_gladly(gladly):
    """The PATCH and topics endpoints' answers (§4.2), beyond what the cutover itself meets."""
    with _api(gladly) as api:
        def error(response: httpx.Response, status: int) -> dict[str, Any]:
            assert response.status_code == status, response.text
            return response.json()["errors"][0]

        assert error(api.patch("/conversations/nope", json={"status": {"value": "CLOSED"}}), 404) == {
            "code": "not_exist", "detail": "conversation does not exist"}
        assert error(api.patch("/conversations/conv-ok", json={"status": {}}), 400)["attr"] == "status.value"
        assert error(api.patch("/conversations/conv-ok", json={"status": {"value": "DONE"}}), 400)["code"] == "invalid"
        assert error(api.patch("/conversations/conv-ok", json={"assignee": {"agentId": "agent-1"}}), 400)["attr"] == "assignee.inboxId"
        waiting = error(api.patch("/conversations/conv-waiting", json={"status": {"value": "CLOSED", "force": False}}), 400)
        assert waiting["code"] == "invalid_state" and "customer waiting for response" in waiting["detail"]
        assert api.patch("/conversations/conv-waiting", json={"status": {"value": "CLOSED", "force": True}}).status_code == 204
        closed_at = api.get("/conversations/conv-waiting").json()["closedAt"]
        assert api.patch("/conversations/conv-waiting", json={"status": {"value": "CLOSED"}}).status_code == 204
        assert api.get("/conversations/conv-waiting").json()["closedAt"] == closed_at, "closing twice changes nothing"
        assert error(api.patch("/conversations/conv-waiting", json={"assignee": {"inboxId": "inbox-2"}}), 400)["detail"] == (
            "closed conversation cannot be reassigned")
        assert api.patch("/conversations/conv-waiting", json={"status": {"value": "OPEN"}}).status_code == 204
        assert "closedAt" not in api.get("/conversations/conv-waiting").json()

        assert error(api.patch("/conversations/conv-topics", json={"status": {"value": "CLOSED"}}), 400)["detail"] == (
            "topics are required before closing of conversation")
        assert error(api.post("/conversations/conv-topics/topics", json={"topicIds": ["topic-off"]}), 400)["code"] == "invalid"
        assert error(api.post("/conversations/conv-topics/topics", json={"topicIds": []}), 400)["attr"] == "topicIds"
        assert error(api.post("/conversations/nope/topics", json={"topicIds": [TOPIC]}), 404)["code"] == "not_exist"
        for _ in range(2):  # a topic already on the conversation is ignored
            assert api.post("/conversations/conv-topics/topics", json={"topicIds": [TOPIC]}).status_code == 204
        assert api.get("/conversations/conv-topics").json()["topicIds"] == [TOPIC]
        assert api.patch("/conversations/conv-topics", json={"status": {"value": "CLOSED"}}).status_code == 204
        listed = {c["id"]: c["status"] for c in api.get("/customers/cust-1/conversations").json()}
        assert listed["conv-topics"] == "CLOSED" and listed["conv-ok"] == "WAITING"


def test_dagster_job_dry_run_reports_counts_and_the_csv(dataset, gladly, tmp_path):
    from migration_pipeline.pairs.gladly_to_unthread.jobs_cutover import gladly_cutover_close
    from migration_pipeline.resources import MigrationStorage
    from migration_pipeline.vendors.gladly.resources import GladlyResource
    from migration_pipeline.lib.staging.resources import StagingResource

    db = StagingDatabase(f"sqlite:///{tmp_path / 'staging.db'}", GLADLY_TO_UNTHREAD)
    db.create_schema()
    try:
        build_staging_state(db)  # the same hand-built state, on SQLite
    finally:
        db.dispose()
    result = gladly_cutover_close.execute_in_process(
        run_config={"ops": {"close_migrated_gladly_conversations": {"config": {"dry_run": True, "topic_id": TOPIC}}}},
        resources={
            "storage": MigrationStorage(data_dir=str(tmp_path / "data")),
            "staging": StagingResource(url=db.url),
            "gladly": GladlyResource(base_url=gladly.url, api_user=GLADLY_USER, api_token=GLADLY_TOKEN),
        },
    )
    assert result.success
    output = next(e for e in result.all_node_events if e.is_successful_output)
    meta = output.step_output_data.metadata
    assert meta["would_close"].value == len(MIGRATED) and meta["skipped"].value == len(NOT_MIGRATED)
    assert meta["closed"].value == 0 and meta["failed"].value == 0
    csv_path = Path(meta["results_csv"].value)
    assert csv_path.parent == (tmp_path / "data" / "reports").resolve() and len(_csv(csv_path)) == 8
    assert _requests(gladly) == []
