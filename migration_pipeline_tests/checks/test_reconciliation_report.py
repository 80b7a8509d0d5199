"""The reconciliation report against both emulators: the HTML file, its metadata, and the
attribution and merged-profile checks passing on a clean load and failing when the Unthread
workspace is tampered with after it (authors changed, customers duplicated or deleted)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import httpx
import pyarrow.parquet as pq
import sqlalchemy as sa

from migration_pipeline.pairs.gladly_to_unthread.assets.reconciliation_report import (
    ATTRIBUTION_CHECK,
    DUPLICATE_CHECK,
    MERGED_PROFILES_CHECK,
    ORDER_CHECK,
    VARIANCE_CHECK,
    reconciliation_report,
)
from migration_pipeline.lib.staging.db import agents, conversation_items, ledger, tickets
from sim.synth.dataset import DatasetLayout, read_json
from migration_pipeline_tests.conftest import DATASET_END, UNTHREAD_KEY
from migration_pipeline_tests.rehearsal import FIRST, LAST, Rehearsal

OUR_CHECKS = {VARIANCE_CHECK, ORDER_CHECK, DUPLICATE_CHECK, ATTRIBUTION_CHECK, MERGED_PROFILES_CHECK}
HEADERS = {"X-Api-Key": UNTHREAD_KEY}


def _report_again(r: Rehearsal) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [reconciliation_report],
        resources=r.resources,
        tags={"dagster/asset_partition_range_start": FIRST, "dagster/asset_partition_range_end": LAST},
        raise_on_error=False,
    )


def _checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def _conversations(r: Rehearsal) -> list[tuple[str, str, str]]:
    """(ticket id, Unthread conversation id, surviving Gladly customer) of every loaded ticket."""
    db = r.db()
    try:
        with db.engine.connect() as conn:
            return conn.execute(
                sa.select(tickets.c.ticket_id, ledger.c.target_id, tickets.c.customer_id)
                .join(ledger, ledger.c.source_key == sa.literal("ticket:") + tickets.c.ticket_id)
                .where(ledger.c.state == "done")
                .order_by(tickets.c.ticket_id)
            ).all()
    finally:
        db.dispose()


def _messages(r: Rehearsal, conversation_id: str) -> list[dict]:
    return httpx.post(
        f"{r.unthread.url}/api/conversations/{conversation_id}/messages/list",
        json={"order": ["ts", "id"], "limit": 100}, headers=HEADERS,
    ).json()["data"]


def test_clean_run_passes_every_check_and_writes_an_offline_html_report(migrated):
    rehearsal, result = migrated, migrated.first_run
    checks = _checks(result)
    assert OUR_CHECKS <= set(checks)
    assert all(checks[name].passed for name in OUR_CHECKS), {n: c.description for n, c in checks.items()}
    # the checks looked at real data: every conversation, every message's author, merged customers
    materialization = result.asset_materializations_for_node(reconciliation_report.op.name)[0]
    meta = materialization.metadata
    n_tickets = len(_conversations(rehearsal))
    order = checks[ORDER_CHECK].metadata
    assert order["conversations_checked"].value == order["conversations_expected"].value == n_tickets
    assert checks[ATTRIBUTION_CHECK].metadata["messages_attributed"].value >= meta["range_read_back"].value > 0
    assert checks[ATTRIBUTION_CHECK].metadata["messages_unverifiable"].value == 0
    manifest = read_json(DatasetLayout(rehearsal.dataset).manifest)
    assert manifest["mess"]["merged_profiles"]["where"], "the dataset should carry merged profiles"
    assert meta["target_customers"].value == rehearsal.stats()["customers"] > 0

    # the same figures as Dagster metadata: per-day table, distributions, numbers
    per_day = meta["per_day"].value
    assert [c.name for c in per_day.schema.columns] == ["day", "source", "staged", "in_tickets", "loaded", "read_back"]
    assert sum(r.data["read_back"] for r in per_day.records) == meta["range_read_back"].value
    assert sum(r.data["source"] for r in per_day.records) == meta["range_source_items"].value
    days = [r.data["day"] for r in per_day.records]
    assert days == sorted(set(days)) and FIRST <= days[0] and days[-1] <= LAST and len(days) >= 15
    # each day's materialization carries that day's own figures (one run for the range); the
    # range's totals are the range_* ones
    by_day = {r.data["day"]: r.data for r in per_day.records}
    materializations = {m.partition: m.metadata for m in result.asset_materializations_for_node(reconciliation_report.op.name)}
    span = (date.fromisoformat(LAST) - date.fromisoformat(FIRST)).days + 1
    assert sorted(materializations) == [(date.fromisoformat(FIRST) + timedelta(days=n)).isoformat() for n in range(span)]
    assert set(days) < set(materializations), "a day with nothing in it has its own figures too (zeros)"
    for day, day_meta in materializations.items():
        row = by_day.get(day, {})
        assert [day_meta[k].value for k in ("source_items", "staged", "in_tickets", "loaded", "read_back")] == [
            row.get(k, 0) for k in ("source", "staged", "in_tickets", "loaded", "read_back")], day
        assert day_meta["range_read_back"].value == meta["range_read_back"].value
    assert sum(m["missing"].value for m in materializations.values()) == meta["range_missing"].value
    assert len({m["source_items"].value for m in materializations.values()}) > 1, "not the range's figure on every day"
    sizes = meta["ticket_size_distribution"].value.records
    assert sum(r.data["tickets"] for r in sizes) == meta["tickets"].value == n_tickets
    assert sum(r.data["items_per_ticket"] * r.data["tickets"] for r in sizes) >= meta["range_in_tickets"].value
    assert meta["quarantine_reasons"].value.records, "the dataset's malformed lines show up by reason"
    # agents who wrote items in the range without an Unthread user of the same email, worked out
    # here from the staged rows and the workspace's users
    user_emails = {u["email"].lower() for u in rehearsal.workspace["users"] if u.get("email")}
    db = rehearsal.db()
    try:
        with db.engine.connect() as conn:
            authors = conn.execute(
                sa.select(conversation_items.c.author_id, agents.c.email)
                .join(agents, agents.c.source_id == conversation_items.c.author_id, isouter=True)
                .where(conversation_items.c.author_type == "agent", conversation_items.c.author_id.is_not(None),
                       conversation_items.c.ts >= FIRST, conversation_items.c.ts < DATASET_END.isoformat())
            ).all()
    finally:
        db.dispose()
    unmatched = {agent for agent, email in authors if (email or "").strip().lower() not in user_emails}
    assert unmatched, "the dataset should carry agents with no Unthread user"
    assert meta["unmatched_agents"].value == len(unmatched)
    assert {r.data["agent_id"] for r in meta["unmatched_agent_list"].value.records} == unmatched

    # one self-contained HTML file: plotly.js inlined exactly once, nothing from the network
    html_path = meta["report_html"].value
    html = open(html_path, encoding="utf-8").read()
    assert html.count("* plotly.js v") == 1 and html.count('class="plotly-graph-div"') >= 3
    assert "<script src=" not in html and 'src="http' not in html
    assert "Items per day" in html and "Ticket size distribution" in html and "Unmatched agents" in html
    for name in OUR_CHECKS:
        assert name in html
    run_copy = meta["report_html_url"].value
    assert run_copy.startswith("file://") and result.run_id in run_copy
    assert open(run_copy.removeprefix("file://"), encoding="utf-8").read() == html
    data = json.loads(open(html_path.replace(".html", ".json"), encoding="utf-8").read())
    assert data["conversations_checked"] == n_tickets and data["attribution_mismatches"] == []

    # every list in full as Parquet beside the JSON, linked from the metadata, copied for the run
    missing = Path(meta["full_list_missing"].value)
    assert missing.parent == Path(html_path).with_suffix("") and data["full_lists"]["missing"]["file"] == (
        f"{missing.parent.name}/missing.parquet")
    assert pq.read_table(missing).column("item_id").to_pylist() == [m["item_id"] for m in data["missing"]]
    assert pq.read_table(meta["full_list_losses"].value).num_rows == data["losses_count"] > 0
    run_copy_dir = Path(run_copy.removeprefix("file://")).with_suffix("")
    assert (run_copy_dir / "missing.parquet").read_bytes() == missing.read_bytes()


def test_attribution_check_fails_when_a_message_author_or_customer_changes_on_unthread(migrated, tmp_path):
    rehearsal = migrated
    conversations = _conversations(rehearsal)
    ticket_id, conversation_id, _ = conversations[0]
    message = next(m for m in _messages(rehearsal, conversation_id) if "gladly-item:" in m["text"])
    assert message["onBehalfOf"], "the loader says who each message is from"

    # Unthread has no message-edit endpoint: change the stored author in the emulator's state file
    state = sqlite3.connect(tmp_path / "unthread.sqlite")
    try:
        (raw,) = state.execute("select doc from messages where id = ?", (message["id"],)).fetchone()
        doc = json.loads(raw)
        doc.update(onBehalfOf={"name": "Mallory Impostor", "email": "mallory@impostor.example"}, user=None, userId=None)
        with state:
            state.execute("update messages set doc = ? where id = ?", (json.dumps(doc), message["id"]))
    finally:
        state.close()
    checks = _checks(_report_again(rehearsal))
    attribution = checks[ATTRIBUTION_CHECK]
    assert not attribution.passed
    assert attribution.metadata["mismatches"].value == 1
    assert attribution.metadata["examples"].value[0]["found"] == "email:mallory@impostor.example"
    assert all(checks[n].passed for n in OUR_CHECKS - {ATTRIBUTION_CHECK})

    # a conversation moved under another customer through the API is caught too
    other = next(c for c in conversations if c[2] != conversations[0][2])
    other_customer = httpx.get(f"{rehearsal.unthread.url}/api/conversations/{other[1]}", headers=HEADERS).json()["customerId"]
    httpx.patch(
        f"{rehearsal.unthread.url}/api/conversations/{conversation_id}", json={"customerId": other_customer}, headers=HEADERS
    ).raise_for_status()
    attribution = _checks(_report_again(rehearsal))[ATTRIBUTION_CHECK]
    assert not attribution.passed
    assert attribution.metadata["conversation_customer_mismatches"].value == 1
    wrong = [e for e in attribution.metadata["examples"].value if "ticket_id" in e]
    assert wrong == [{
        "ticket_id": ticket_id, "conversation_id": conversation_id, "gladly_customer": conversations[0][2],
        "expected_customer": wrong[0]["expected_customer"], "found_customer": other_customer,
    }] and wrong[0]["expected_customer"] != other_customer


def test_merged_profiles_check_fails_on_duplicate_merged_away_or_deleted_customers(migrated):
    rehearsal = migrated
    merge = read_json(DatasetLayout(rehearsal.dataset).manifest)["mess"]["merged_profiles"]["where"][0]
    surviving, merged_away = merge["survivingId"], merge["mergedId"]
    assert surviving in {c[2] for c in _conversations(rehearsal)}

    # a second Unthread customer for the same Gladly person, made directly on the emulator
    httpx.post(
        f"{rehearsal.unthread.url}/api/customers",
        json={"name": "duplicate", "externalCrmMetadata": {"id": f"gladly:{surviving}"}}, headers=HEADERS,
    ).raise_for_status()
    check = _checks(_report_again(rehearsal))[MERGED_PROFILES_CHECK]
    assert not check.passed
    assert check.metadata["duplicate_customers"].value == 1 and check.metadata["merged_customers_on_target"].value == 0
    assert check.metadata["examples"].value[0]["gladly_id"] == surviving

    # an Unthread customer for the merged-away profile: the merge was not applied
    httpx.post(
        f"{rehearsal.unthread.url}/api/customers",
        json={"name": "merged away", "externalCrmMetadata": {"id": f"gladly:{merged_away}"}}, headers=HEADERS,
    ).raise_for_status()
    check = _checks(_report_again(rehearsal))[MERGED_PROFILES_CHECK]
    assert not check.passed and check.metadata["merged_customers_on_target"].value == 1


def test_checks_fail_when_a_loaded_customer_is_deleted_from_unthread(migrated):
    """The issue's case: a record deleted from the Unthread emulator after the load (here a
    customer; test_graph.py deletes a conversation) fails the report's checks."""
    rehearsal = migrated
    _, _, gladly_customer = _conversations(rehearsal)[0]
    found = httpx.post(
        f"{rehearsal.unthread.url}/api/customers/list",
        json={"where": [{"field": "externalCrmMetadata.id", "operator": "==", "value": f"gladly:{gladly_customer}"}]},
        headers=HEADERS,
    ).json()["data"]
    assert len(found) == 1
    httpx.delete(f"{rehearsal.unthread.url}/api/customers/{found[0]['id']}", headers=HEADERS).raise_for_status()
    checks = _checks(_report_again(rehearsal))
    assert not checks[MERGED_PROFILES_CHECK].passed
    assert checks[MERGED_PROFILES_CHECK].metadata["customers_missing_on_target"].value == 1
    # its conversations now point at a customer that is gone
    assert not checks[ATTRIBUTION_CHECK].passed
    counts = Counter(c.passed for c in checks.values())
    assert counts[False] == 2
