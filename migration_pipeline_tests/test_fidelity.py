"""Content fidelity end to end: the whole graph against both emulators, then every content type the
generator makes is read back from Unthread and checked for what a support agent needs to see.

Expectations come from the dataset files (raw export lines, transcripts, attachment bytes), the
staging tables as the parser wrote them and a small reference computation of a ticket's topics —
not from the loader's own rendering code.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict

import httpx
import pytest
import sqlalchemy as sa

from migration_pipeline.pairs.gladly_to_unthread.checks.fidelity import attachment_checksum_mismatches, tag_coverage
from migration_pipeline.lib.staging.db import (
    agents,
    attachment_transfers,
    conversation_items,
    ledger,
    ticket_items,
    tickets,
    topics,
    utc_text,
)
from sim.synth.dataset import DatasetLayout, read_json
from migration_pipeline.vendors.unthread.client import UnthreadClient
from migration_pipeline_tests.conftest import UNTHREAD_KEY
from migration_pipeline_tests.rehearsal import FIRST, LAST, Rehearsal

HEADERS = {"X-Api-Key": UNTHREAD_KEY}


@pytest.fixture
def fidelity(migrated):
    """The migrated rehearsal (its Unthread resource has the workspace's email inbox configured)
    and where the Unthread emulator keeps uploaded files."""
    migrated.files_dir = migrated.unthread_state.with_name("unthread.sqlite.files")
    return migrated


def _all_messages(r: Rehearsal, conversation_ids: list[str]) -> dict[str, dict]:
    """Every Unthread message of the given conversations, by message id (with its conversation)."""
    out = {}
    with httpx.Client(base_url=r.unthread.url, headers=HEADERS, timeout=60) as client:  # one SSL context, not one per page
        for conversation in conversation_ids:
            body = {"order": ["ts", "id"], "limit": 100}
            while True:
                page = client.post(f"/api/conversations/{conversation}/messages/list", json=body).json()
                for m in page["data"]:
                    out[m["id"]] = {**m, "conversationId": conversation}
                if not page["cursors"].get("hasNext"):
                    break
                body["cursor"] = page["cursors"]["next"]
    return out


def _reference_topics(changes: list[tuple[str, dict]], inside: set[str]) -> set[str]:
    """The topics a ticket carried, computed the plain way: replay every topic change of the
    conversation up to the ticket's end; keep what was set when it started and all added in it."""
    state: list[str] = []
    at_start: set[str] | None = None
    added_inside: set[str] = set()
    for item_id, content in changes:
        if item_id in inside and at_start is None:
            at_start = set(state)
        for t in content.get("removedTopicIds") or []:
            if t in state:
                state.remove(t)
        for t in content.get("addedTopicIds") or []:
            if t not in state:
                state.append(t)
            if item_id in inside:
                added_inside.add(t)
    return (set(state) if at_start is None else at_start) | added_inside


def test_every_content_type_arrives_readable_with_tags_and_checksums(fidelity):
    r = fidelity
    result = r.first_run
    layout = DatasetLayout(r.dataset)
    manifest = read_json(layout.manifest)
    db = r.db()
    try:
        with db.engine.connect() as conn:
            items = {row["source_id"]: dict(row) for row in conn.execute(sa.select(conversation_items)).mappings()}
            done = {row.source_key: row.target_id for row in conn.execute(
                sa.select(ledger.c.source_key, ledger.c.target_id).where(ledger.c.state == "done"))}
            ticket_rows = conn.execute(sa.select(tickets)).mappings().all()
            membership = defaultdict(set)
            for item_id, ticket_id in conn.execute(sa.select(ticket_items.c.item_id, ticket_items.c.ticket_id)):
                membership[ticket_id].add(item_id)
            topic_rows = {t.source_id: t for t in conn.execute(sa.select(topics))}
            transfers = conn.execute(sa.select(attachment_transfers)).mappings().all()
            agent_rows = {a.source_id: a for a in conn.execute(sa.select(agents))}
    finally:
        db.dispose()

    conversations = [done[f"ticket:{t['ticket_id']}"] for t in ticket_rows]
    messages = _all_messages(r, conversations)

    first_items = {t["first_item_id"] for t in ticket_rows}

    def private(item_id: str, message: dict) -> bool:
        """Internal items are private notes; a ticket's first item is the conversation's initial
        message, which Unthread's create cannot mark private: it is labelled instead."""
        if item_id in first_items:
            return "Private note" in message["text"].split("\n", 1)[0]
        return message["isPrivateNote"] is True

    def message_of(item_id: str) -> dict:
        target = done.get(f"message:{item_id}") or done.get(f"message:{item_id}#1")
        assert target in messages, f"item {item_id} has no message on Unthread"
        return messages[target]

    by_kind = defaultdict(list)
    for item in items.values():
        by_kind[item["source_kind"]].append(item)
    for kind in ("PHONE_CALL", "VOICEMAIL", "CUSTOMER_ACTIVITY", "CONVERSATION_NOTE", "EMAIL", "VIDEO_CALL", "TOPIC_CHANGE"):
        assert by_kind[kind], f"the dataset should carry {kind} items"

    # phone calls with a transcript: every paragraph's words, by speaker, in a private note
    transcripts = {t["itemId"]: t for t in map(json.loads, layout.transcripts.read_text(encoding="utf-8").splitlines())}
    with_transcript = [i for i in by_kind["PHONE_CALL"] if i["source_id"] in transcripts]
    assert with_transcript
    for item in with_transcript:
        message = message_of(item["source_id"])
        content = item["payload"]["content"]
        assert private(item["source_id"], message)
        assert "Phone call" in message["text"] and "Transcript" in message["text"]
        assert content["from"] in message["text"] and content["to"] in message["text"]
        assert ("inbound" if item["payload"]["initiator"]["type"] == "CUSTOMER" else "outbound") in message["text"]
        for paragraph in transcripts[item["source_id"]]["paragraphs"]:
            speaker = paragraph["speaker"].title()
            assert f"**{speaker}:** {paragraph['transcript']}" in message["text"]
        assert "Duration:" in message["text"]
    for item in by_kind["VOICEMAIL"]:
        message = message_of(item["source_id"])
        content = item["payload"]["content"]
        assert private(item["source_id"], message) and "Voicemail" in message["text"]
        if content.get("recordingSummary", {}).get("summary"):
            assert content["recordingSummary"]["summary"] in message["text"]
    # customer activities keep title, body and link
    for item in by_kind["CUSTOMER_ACTIVITY"]:
        message = message_of(item["source_id"])
        content = item["payload"]["content"]
        assert content["title"] in message["text"] and content["body"] in message["text"]
        if content.get("link"):
            assert f"({content['link']['url']})" in message["text"]
    # notes stay internal
    for item in by_kind["CONVERSATION_NOTE"]:
        message = message_of(item["source_id"])
        assert private(item["source_id"], message)
        assert item["payload"]["content"]["body"][:60] in message["text"]
    internal = [i for k in ("PHONE_CALL", "VOICEMAIL", "CONVERSATION_NOTE") for i in by_kind[k] if i["source_id"] not in first_items]
    assert internal and all(message_of(i["source_id"])["isPrivateNote"] is True for i in internal)
    # customer-visible kinds are not private
    for item in by_kind["SMS"][:20] + by_kind["CHAT_MESSAGE"][:20]:
        assert message_of(item["source_id"])["isPrivateNote"] is False
    # the unknown future type: carried with its raw type, and counted
    for item in by_kind["VIDEO_CALL"]:
        assert "`VIDEO_CALL`" in message_of(item["source_id"])["text"]
    loaded = result.asset_materializations_for_node("unthread_loaded_records")[0].metadata
    assert loaded["unknown_content_types"].value == len(by_kind["VIDEO_CALL"])
    assert loaded["unknown_content_type_names"].value == {"VIDEO_CALL": len(by_kind["VIDEO_CALL"])}

    # email HTML arrives as markdown: no tags, quotes trimmed with a note, inline images as files
    mess = manifest["mess"]
    html_items = [i for i in by_kind["EMAIL"] if i["html"]]
    assert html_items
    for item in html_items:
        text = message_of(item["source_id"])["text"]
        assert "<div" not in text and "<p" not in text and "base64," not in text and "<blockquote" not in text
    quoted = {m["itemId"] for m in mess["html_with_quoted_reply"]["where"]} & set(items)
    assert quoted
    for item_id in quoted:
        text = message_of(item_id)["text"]
        assert "Trimmed: quoted reply" in text
        assert " wrote:" not in text and "Original Message" not in text
    inline = {m["itemId"] for m in mess["inline_base64_images"]["where"]} & set(items)
    assert inline
    for item_id in inline:
        names = [f["name"] for f in message_of(item_id).get("files") or []]
        assert any(n.startswith("inline-") for n in names), (item_id, names)
    assert loaded["inline_images_uploaded"].value >= len(inline)

    # email conversations are email conversations when an inbox is configured and the author has an email
    emailed = [t for t in ticket_rows if items[t["first_item_id"]]["source_kind"] == "EMAIL"]
    assert emailed
    with httpx.Client(base_url=r.unthread.url, headers=HEADERS, timeout=60) as client:
        types = {t["ticket_id"]: client.get(f"/api/conversations/{done['ticket:' + t['ticket_id']]}").json()["sourceType"] for t in emailed}
    assert "email" in types.values()

    # tags: the flattened topic names of every ticket, with the Gladly topic ids kept
    def flat(topic_id: str) -> str:
        path, current = [], topic_rows.get(topic_id)
        while current is not None:
            path.append(current.name)
            current = topic_rows.get(current.parent_id) if current.parent_id else None
        return " / ".join(reversed(path))

    changes_by_conversation = defaultdict(list)
    for item in sorted(items.values(), key=lambda i: (i["ts"], i["source_id"])):
        if item["source_kind"] == "TOPIC_CHANGE":
            changes_by_conversation[item["conversation_id"]].append(item)
    tagged = 0
    for t in ticket_rows:
        changes = [(i["source_id"], i["payload"]["content"]) for i in changes_by_conversation[t["conversation_id"]] if i["ts"] <= t["last_ts"]]
        expected_ids = _reference_topics(changes, membership[t["ticket_id"]])
        conversation = httpx.get(f"{r.unthread.url}/api/conversations/{done['ticket:' + t['ticket_id']]}", headers=HEADERS).json()
        assert sorted(x["name"] for x in conversation["tags"]) == sorted(flat(x) for x in expected_ids), t["ticket_id"]
        kept = (conversation["metadata"] or {}).get("gladlyTopicIds", "")
        assert sorted(x for x in kept.split(",") if x) == sorted(expected_ids)
        tagged += bool(expected_ids)
    assert tagged > 0
    assert any(" / " in x["name"] for x in httpx.post(f"{r.unthread.url}/api/tags/list", json={}, headers=HEADERS).json()["data"])
    for topic_id in {t for c in changes_by_conversation.values() for i in c for t in i["payload"]["content"].get("addedTopicIds", [])}:
        assert f"tag:{topic_id}" in done, "every topic's tag is in the ledger under its Gladly id"

    client = UnthreadClient(f"{r.unthread.url}/api", UNTHREAD_KEY)
    db = r.db()
    try:
        lo, hi = utc_text_day(FIRST), utc_text_day(LAST, 1)
        passed, details = tag_coverage(db, client, lo, hi)
        assert passed and details["conversations_checked"] == len(ticket_rows), details
        passed, details = attachment_checksum_mismatches(db)
        assert passed, details
    finally:
        db.dispose()
        client.close()

    # attachments: sha256 of the bytes Gladly serves == recorded source == read back from Unthread
    gladly_files = {
        (item_id, a["source_id"]) for item_id, item in items.items() for a in item["attachments"] or []
    }
    recorded = {(t["item_id"], t["attachment_id"]): t for t in transfers if t["kind"] == "attachment"}
    assert set(recorded) == gladly_files
    for (item_id, attachment_id), row in recorded.items():
        source = hashlib.sha256((layout.attachments_dir / attachment_id).read_bytes()).hexdigest()
        assert row["state"] == "verified" and row["sha256_source"] == row["sha256_target"] == source
        assert row["target_file_id"] and row["target_message_id"] in messages
        assert messages[row["target_message_id"]]["text"].count(f"gladly-item:{item_id}") == 1
    images = [t for t in transfers if t["kind"] == "inline_image"]
    assert images and all(t["state"] == "verified" and t["sha256_source"] == t["sha256_target"] for t in images)

    # unmatched agents listed with id, name and email
    listing = loaded["unmatched_agent_list"].value
    unmatched = [a for a in agent_rows.values() if a.source_id in listing]
    assert unmatched and loaded["unmatched_agents"].value == len(unmatched)
    for a in unmatched:
        assert (a.email or "") in listing and (a.name or "") in listing

    # a re-run sends nothing and asks Gladly for no transcript again
    before = httpx.get(f"{r.gladly.url}/_emulator/requests").json()
    stats = r.stats()
    r.run()
    after = httpx.get(f"{r.gladly.url}/_emulator/requests").json()[len(before):]
    assert r.stats() == stats
    assert not [e for e in after if "voice-transcript" in e["path"]]


def utc_text_day(day: str, plus: int = 0) -> str:
    from datetime import UTC, datetime, timedelta

    return utc_text(datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=plus))


def test_a_corrupted_upload_is_caught_by_the_checksum_read_back(fidelity):
    """Bytes changed on the target after upload: re-verifying reads them back and the check fails
    naming the file; the source side still matches the Gladly file."""
    r = fidelity
    db = r.db()
    try:
        with db.engine.connect() as conn:
            row = conn.execute(
                sa.select(attachment_transfers).where(attachment_transfers.c.kind == "attachment").order_by(attachment_transfers.c.item_id)
            ).mappings().first()
        (r.files_dir / row["target_file_id"]).write_bytes(b"not what was sent")
        with db.begin() as conn:  # ask for a fresh read-back, as after a restart mid-verify
            conn.execute(
                attachment_transfers.update()
                .where(attachment_transfers.c.item_id == row["item_id"], attachment_transfers.c.attachment_id == row["attachment_id"])
                .values(state="uploaded", sha256_target=None)
            )
        from migration_pipeline.vendors.unthread.loader import LoadSettings, UnthreadLoader

        client = UnthreadClient(f"{r.unthread.url}/api", UNTHREAD_KEY)
        loader = UnthreadLoader(db, client, LoadSettings(triage_channel_id="C0TRIAGE001"))
        with db.engine.connect() as conn:
            item = conn.execute(sa.select(conversation_items).where(conversation_items.c.source_id == row["item_id"])).mappings().one()
        conversation = next(m for m in _all_messages(r, [_conversation_of(db, row["item_id"])]).values() if m["id"] == row["target_message_id"])
        group = [s for s in loader.files_of(item) if s["attachment_id"] == row["attachment_id"]]
        loader.verify_transfers(conversation["conversationId"], row["target_message_id"], item, group, None)
        client.close()
        passed, details = attachment_checksum_mismatches(db)
    finally:
        db.dispose()
    assert not passed and details["mismatches"] == 1
    assert details["failing"][0]["attachment_id"] == row["attachment_id"]
    assert details["failing"][0]["sha256_target"] == hashlib.sha256(b"not what was sent").hexdigest()


def _conversation_of(db, item_id: str) -> str:
    with db.engine.connect() as conn:
        ticket = conn.execute(sa.select(ticket_items.c.ticket_id).where(ticket_items.c.item_id == item_id)).scalar_one()
        return conn.execute(sa.select(ledger.c.target_id).where(ledger.c.source_key == f"ticket:{ticket}")).scalar_one()
