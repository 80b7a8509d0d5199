"""The canonical contract (migration_pipeline/contract.py) as every source must write it and every
target must read it. A new source adds its adapter to `SOURCES`; a new target reads the staged
rows of both sources below without a source payload.

Sources: each adapter maps its messy rehearsal dataset (sim/synth) into contract records that keep
the contract's closed vocabularies and invariants and stage into a real database unchanged.
Targets: the Unthread loader renders every item of every source from the contract's columns alone
(the staged rows are read without `payload`, as the loader reads them)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from migration_pipeline.contract import (
    AUTHOR_TYPES,
    CHANNELS,
    ITEM_KINDS,
    SOURCE_SYSTEMS,
    Agent,
    Conversation,
    Customer,
    Item,
)
from migration_pipeline.lib.staging.db import StagingDatabase, conversation_items, item_columns
from migration_pipeline.vendors.gladly import parse as gladly
from migration_pipeline.vendors.unthread.client import UnthreadClient
from migration_pipeline.vendors.unthread.loader import TARGET_COLUMNS, LoadSettings, UnthreadLoader
from migration_pipeline.vendors.zendesk import canonical as zendesk
from migration_pipeline.vendors.zendesk.export import ExportRecord, read_export
from migration_pipeline.vendors.zendesk.records import ZendeskTicket, ZendeskUser
from migration_pipeline_tests.synth.helpers import Dataset
from migration_pipeline_tests.synth.zendesk_helpers import ZendeskDataset

SOURCES = ("gladly", "zendesk")


@dataclass
class Mapped:
    """What one source adapter made of its dataset, plus the ground truth the test checks it by."""

    system: str
    customers: list[Customer] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    conversations: list[Conversation] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    private_ids: set[str] = field(default_factory=set)  # items the source marks internal
    rejected: list[str] = field(default_factory=list)  # RecordError reasons (the quarantine's)


def _gladly(root: Path) -> Mapped:
    ds, out = Dataset(root), Mapped(gladly.SYSTEM)
    for line in ds.lines("conversation_items.jsonl"):
        if line.obj is None:
            continue
        try:
            out.items.append(gladly.parse_item(line.obj))
        except gladly.RecordError as error:
            out.rejected.append(str(error))
            continue
        if (line.obj.get("content") or {}).get("type") in ("CONVERSATION_NOTE", "PHONE_CALL", "VOICEMAIL"):
            out.private_ids.add(line.obj["id"])
    for line in ds.lines("customers.jsonl"):
        if line.obj is not None:
            try:
                out.customers.append(gladly.parse_customer(line.obj))
            except gladly.RecordError as error:
                out.rejected.append(str(error))
    out.agents = [gladly.parse_agent(ln.obj) for ln in ds.lines("agents.jsonl") if ln.obj is not None and ln.obj.get("id")]
    return out


def _zendesk(root: Path) -> Mapped:
    ds, out = ZendeskDataset(root), Mapped(zendesk.SYSTEM)
    records = [e.record for e in read_export(ds.layout.plain_export("embedded", "tickets").parent) if isinstance(e, ExportRecord)]
    users = [r for r in records if isinstance(r, ZendeskUser)]
    roles = {u.id: u.role or "" for u in users}
    for user in users:
        (out.agents.append(zendesk.agent(user)) if zendesk.is_agent(user) else out.customers.append(zendesk.customer(user)))
    for ticket in (r for r in records if isinstance(r, ZendeskTicket)):
        try:
            out.conversations.append(zendesk.conversation(ticket))
        except zendesk.RecordError as error:
            out.rejected.append(str(error))
            continue
        for comment in ticket.comments or []:
            if comment.public is False:
                out.private_ids.add(str(comment.id))
            try:
                out.items.append(zendesk.item(ticket, comment, roles))
            except zendesk.RecordError as error:
                out.rejected.append(str(error))
    return out


@pytest.fixture(scope="module", params=SOURCES)
def mapped(request, small_dataset, tmp_path_factory) -> Mapped:
    if request.param == "gladly":
        return _gladly(small_dataset)
    root = tmp_path_factory.mktemp("zendesk")
    from sim.synth.zendesk import generate

    generate(root, customers=12, days=4, seed=7, end=date(2024, 6, 1))
    return _zendesk(root)


def test_every_record_names_its_source_system_and_keeps_the_vocabularies(mapped: Mapped):
    assert mapped.system in SOURCE_SYSTEMS
    records = [*mapped.customers, *mapped.agents, *mapped.conversations, *mapped.items]
    assert mapped.items and mapped.customers and mapped.agents
    assert {r.source_system for r in records} == {mapped.system}
    assert all(isinstance(r.source_id, str) and r.source_id for r in records)
    for item in mapped.items:
        assert item.kind in ITEM_KINDS and item.author_type in AUTHOR_TYPES, item.source_id
        assert item.channel is None or item.channel in CHANNELS, item.source_id
        assert item.timestamp.tzinfo is not None and item.timestamp.utcoffset().total_seconds() == 0, item.source_id
        assert item.source_kind and item.customer_id and item.payload, item.source_id


def test_what_the_source_marks_internal_is_private_and_notes_are_never_public(mapped: Mapped):
    by_id = {i.source_id: i for i in mapped.items}
    assert mapped.private_ids, "the rehearsal dataset carries internal items"
    assert all(by_id[i].visibility == "private" for i in mapped.private_ids if i in by_id)
    assert all(i.visibility == "private" for i in mapped.items if i.kind == "note")
    kinds = Counter(i.kind for i in mapped.items)
    assert kinds["message"] and kinds["note"], kinds


def test_ticket_shaped_sources_put_every_item_in_a_conversation_of_its_customer(mapped: Mapped):
    if not mapped.conversations:
        pytest.skip(f"{mapped.system} has no tickets: its timelines are split by the pair")
    conversations = {c.source_id: c for c in mapped.conversations}
    for item in mapped.items:
        assert item.conversation_id in conversations, item.source_id
        assert conversations[item.conversation_id].customer_id == item.customer_id, item.source_id


def test_items_stage_and_read_back_unchanged_on_a_real_database(mapped: Mapped, staging_url):
    db = StagingDatabase(staging_url)
    db.create_schema()
    latest = {i.source_id: i for i in mapped.items}  # a later export of the same item wins, as staging does
    rows = [{**item_columns(i), "job_id": "j", "file_name": "f", "line_no": n, "staged_at": "2026-01-01T00:00:00.000000Z"}
            for n, i in enumerate(latest.values())]
    try:
        with db.begin() as conn:
            db.bulk_upsert(conn, conversation_items, rows)
        with db.engine.connect() as conn:
            stored = {r["source_id"]: dict(r) for r in conn.execute(sa.select(*TARGET_COLUMNS)).mappings()}
    finally:
        db.dispose()
    assert set(stored) == set(latest)
    for item in latest.values():
        expected = {k: v for k, v in item_columns(item).items() if k != "payload"}
        assert {k: stored[item.source_id][k] for k in expected} == expected, item.source_id


def test_the_unthread_target_renders_every_item_of_every_source_from_the_contract_alone(mapped: Mapped, tmp_path):
    """The loader is given rows as it reads them (no `payload` column): any read of a source
    record raises, so every kind of every source must render from contract fields."""
    db = StagingDatabase(f"sqlite:///{tmp_path / 'staging.db'}")
    db.create_schema()
    client = UnthreadClient("http://127.0.0.1:9/api", "never-sent")
    latest = {i.source_id: i for i in mapped.items}
    names = {c.name for c in TARGET_COLUMNS}
    try:
        with UnthreadLoader(db, client, LoadSettings(triage_channel_id="C0")) as loader:
            for item in latest.values():
                row = {k: v for k, v in item_columns(item).items() if k in names}
                [first, *_] = loader.render(row)
                assert first.strip(), item.source_id
                assert f"gladly-item:{item.source_id}" in first  # the marker the loader finds it by
                if item.kind in ("call", "activity", "other"):
                    assert item.text.split("\n")[0][:20] in first, item.source_id  # the source's rendering
                if item.kind == "status_change" and item.status_change:
                    assert item.status_change in first
    finally:
        client.close()
        db.dispose()
