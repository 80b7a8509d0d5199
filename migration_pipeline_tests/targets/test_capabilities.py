"""What the Unthread workspace supports, probed once against the real emulator in both modes, and
refusals of optional fields at run time (a workspace that changed, or a load with no preflight on
record): recorded, sent again without the field, never stopping the load."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa

from migration_pipeline.lib.http import VendorAPIError
from migration_pipeline.lib.staging.db import ledger, target_capabilities
from sim.synth.dataset import DatasetLayout, read_json
from migration_pipeline.vendors.unthread.capabilities import (
    CATALOG,
    TAGS_ON_UPDATE,
    CapabilityStore,
    without_refused_fields,
)
from migration_pipeline.vendors.unthread.client import UnthreadClient
from migration_pipeline.vendors.unthread.loader import LoadSettings, UnthreadLoader
from migration_pipeline.vendors.unthread.preflight import run_preflight
from migration_pipeline_tests.conftest import UNTHREAD_KEY

STRICT_LACKS = {"tags", "tags_on_create", "tags_on_update", "file_read_back", "message_author", "private_notes",
                "conversation_delete"}


def _requests(url: str) -> list[dict]:
    return httpx.get(f"{url}/_emulator/requests").json()


@pytest.mark.parametrize("strict", [False, True], ids=["permissive", "strict"])
def test_the_preflight_probes_each_capability_once_and_a_rerun_sends_no_probe(
    strict, staging_db, small_dataset, unthread_server_factory
):
    workspace = read_json(DatasetLayout(small_dataset).unthread_workspace)
    server = unthread_server_factory(workspace, strict=strict)
    triage = workspace["triageChannels"][0]["id"]
    with UnthreadClient(f"{server.url}/api", UNTHREAD_KEY, requests_per_second=500) as client:
        report = run_preflight(client, staging_db, triage_channel_id=triage, placeholder_user_id=None)
        assert report.passed, report.render()
        found = {f.name: f for f in report.capabilities}
        assert set(found) == set(CATALOG)
        assert {n for n, f in found.items() if not f.supported} == (STRICT_LACKS if strict else set())
        assert all(f.detail for f in found.values())
        if strict:  # each missing optional feature is a warning saying what the load does instead
            assert sum("workspace lacks" in w for w in report.warnings) == len(STRICT_LACKS)
            assert "gladlyTags" in report.render()
        conversations = httpx.get(f"{server.url}/_emulator/stats").json()["conversations"]
        # the probe conversation is deleted where the workspace allows it, and kept (closed) where not
        assert conversations == (1 if strict else 0)

        seen = len(_requests(server.url))
        again = run_preflight(client, staging_db, triage_channel_id=triage, placeholder_user_id=None)
        assert again.passed and again.probed_now == []
        assert [e["path"] for e in _requests(server.url)[seen:]] == ["/api/users/list"]

        assert httpx.get(f"{server.url}/_emulator/stats").json()["customers"] == 0  # the probe customer is gone

        # a re-probe asks again, and reuses the probe conversation that could not be deleted
        fresh = run_preflight(client, staging_db, triage_channel_id=triage, placeholder_user_id=None, reprobe=True)
        assert set(fresh.probed_now) == set(CATALOG)
        assert httpx.get(f"{server.url}/_emulator/stats").json()["conversations"] == conversations

        # without what exactly-once rests on, the load does not start
        CapabilityStore(staging_db).record("conversation_metadata", False, "metadata sent on create is not read back")
        blocked = run_preflight(client, staging_db, triage_channel_id=triage, placeholder_user_id=None)
        assert not blocked.passed and any("conversation_metadata" in f for f in blocked.failures), blocked.render()


def test_a_refused_optional_field_is_sent_again_without_it_and_recorded_once(staging_db):
    store = CapabilityStore(staging_db)
    sent: list[dict] = []

    def patch(body: dict) -> dict:
        sent.append(body)
        if "tags" in body:
            raise VendorAPIError("unthread", "PATCH", "/conversations/c1", 400, "unknown field: tags")
        return {"id": "c1"}

    body = {"tags": ["t1"], "metadata": {"sourceKey": "ticket:1"}}
    optional = {TAGS_ON_UPDATE: "tags", "metadata_on_update": "metadata"}
    assert without_refused_fields(store, patch, body, optional) == {"id": "c1"}
    assert sent == [body, {"metadata": {"sourceKey": "ticket:1"}}]  # only the refused key dropped
    assert not store.supports(TAGS_ON_UPDATE) and store.supports("metadata_on_update")
    with staging_db.engine.connect() as conn:
        row = conn.execute(sa.select(target_capabilities)).mappings().one()
    assert row["name"] == TAGS_ON_UPDATE and not row["supported"] and row["found_by"] == "load"
    assert "unknown field: tags" in row["detail"]

    # known absent: never sent again, by this store or by the next run's
    sent.clear()
    without_refused_fields(CapabilityStore(staging_db), patch, body, optional)
    assert sent == [{"metadata": {"sourceKey": "ticket:1"}}]

    # a refusal that is not about the optional field is the write's own: raised, nothing recorded
    def refuse_all(body: dict) -> dict:
        raise VendorAPIError("unthread", "PATCH", "/conversations/c1", 400, "status: must be one of ...")

    fresh = CapabilityStore(None)
    with pytest.raises(VendorAPIError, match="status"):
        without_refused_fields(fresh, refuse_all, body, optional)
    assert fresh.findings() == []


def test_a_delta_on_a_workspace_that_refuses_tags_goes_on_and_keeps_the_names_in_metadata(migrated, unthread_server_factory):
    """The loaded state of the permissive emulator, then the workspace turns strict and nothing was
    probed (a load with no preflight on record): a ticket whose topics changed is updated without
    stopping, the refusal is recorded, and the next ticket sends no tags at all."""
    r = migrated
    r.unthread.stop()  # the same workspace state, served strictly from now on
    r.unthread = unthread_server_factory(read_json(DatasetLayout(r.dataset).unthread_workspace), name="unthread", strict=True)
    db = r.db()
    try:
        with db.begin() as conn:
            conn.execute(target_capabilities.delete())
            tagged = conn.execute(
                sa.select(ledger.c.source_key).where(ledger.c.entity_type == "tags", ledger.c.state == "done")
                .order_by(ledger.c.source_key).limit(2)
            ).scalars().all()
            # the topics "changed" since the last load: the digest no longer matches
            conn.execute(ledger.update().where(ledger.c.source_key.in_(tagged)).values(target_id="changed"))
        tickets = [key.removeprefix("tags:") for key in tagged]
        settings = LoadSettings(triage_channel_id=r.workspace["triageChannels"][0]["id"], run_id="delta")
        with UnthreadClient(f"{r.unthread.url}/api", UNTHREAD_KEY, requests_per_second=500) as client, \
                UnthreadLoader(db, client, settings) as loader:
            seen = len(_requests(r.unthread.url))
            for ticket_id in tickets:
                loader.load_ticket(ticket_id, datetime.now(UTC))
            counts = loader.counts
        assert counts.failed == 0 and not counts.errors
        patches = [e for e in _requests(r.unthread.url)[seen:] if e["method"] == "PATCH"]
        refused = [e for e in patches if e["status"] == 400]
        assert len(refused) == 1, patches  # tags refused once; never sent again
        store = CapabilityStore(db)
        assert not store.supports(TAGS_ON_UPDATE)
        with db.engine.connect() as conn:
            states = dict(conn.execute(sa.select(ledger.c.source_key, ledger.c.state).where(ledger.c.source_key.in_(tagged))).all())
        assert set(states.values()) == {"done"}
        for ticket_id in tickets:
            target = _conversation_of(db, ticket_id)
            conversation = httpx.get(f"{r.unthread.url}/api/conversations/{target}", headers={"X-Api-Key": UNTHREAD_KEY}).json()
            assert conversation["metadata"].get("gladlyTags"), conversation["metadata"]

        # Again from nothing on record, with the tags never created and transient faults on: a
        # tag create that goes unanswered (503) is looked up on a tag list that does not exist
        # (404). That is a missing feature, recorded; the tickets load on, nothing fails.
        with db.begin() as conn:
            conn.execute(target_capabilities.delete())
            conn.execute(ledger.delete().where(ledger.c.entity_type == "tag"))
            conn.execute(ledger.update().where(ledger.c.source_key.in_(tagged)).values(target_id="changed again"))
        httpx.put(f"{r.unthread.url}/_emulator/faults", json={"seed": 0, "rate_5xx": 0.5}).raise_for_status()
        seen = len(_requests(r.unthread.url))
        with UnthreadClient(f"{r.unthread.url}/api", UNTHREAD_KEY, requests_per_second=500, max_attempts=12,
                            backoff_initial_seconds=0.01, backoff_max_seconds=0.05) as client, \
                UnthreadLoader(db, client, settings) as loader:
            for ticket_id in tickets:
                loader.load_ticket(ticket_id, datetime.now(UTC))
            counts = loader.counts
        log = _requests(r.unthread.url)[seen:]
        assert any(e["path"] == "/api/tags" and e["fault"] for e in log), "the fault never hit a tag create"
        assert any(e["path"] == "/api/tags/list" and e["status"] == 404 for e in log)
        assert counts.failed == 0 and not counts.errors and counts.tags_created == 0
        store = CapabilityStore(db)
        assert not store.supports("tags") and "404" in next(f.detail for f in store.missing() if f.name == "tags")
        with db.engine.connect() as conn:
            assert not conn.execute(sa.select(ledger.c.source_key).where(ledger.c.entity_type == "tag")).all()
            states = set(conn.execute(sa.select(ledger.c.state).where(ledger.c.source_key.in_(tagged))).scalars())
        assert states == {"done"}
    finally:
        db.dispose()


def _conversation_of(db, ticket_id: str) -> str:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(ledger.c.target_id).where(ledger.c.source_key == f"ticket:{ticket_id}")).scalar_one()
