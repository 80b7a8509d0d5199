"""The splitting rules through the whole graph against the emulators: a candidate rules file
given to split_tickets cuts the tickets (its version on every ticket), a reopen's Unthread
conversation links back to the conversation of the ticket it reopens, and split-preview shows
exactly the tickets the real run cut."""


import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from migration_pipeline.lib.split_rules import SplitRules
from migration_pipeline.pairs.gladly_to_unthread.assets.tickets import split_tickets
from migration_pipeline.pairs.gladly_to_unthread.definitions import defs  # this pair's assets only
from migration_pipeline.lib.staging.db import ledger, ticket_items, tickets
from migration_pipeline.lib.staging.preview import preview, timeline_items
from sim.synth.dataset import DatasetLayout, read_json
from migration_pipeline_tests.conftest import UNTHREAD_KEY
from migration_pipeline_tests.rehearsal import FIRST, LAST, Rehearsal

RULES = """\
version: 7
rules:
  time_gap: {days: 2}
  reopen_after_dormancy: {enabled: true, closed_days: 0.5}
  channel_switch: {enabled: true}
  max_items_per_ticket: {enabled: true, limit: 15}
"""


@pytest.fixture
def rehearsal(small_dataset, gladly_server_factory, unthread_server_factory, tmp_path):
    gladly = gladly_server_factory(small_dataset, rate_limit_per_second=1000)
    unthread = unthread_server_factory(read_json(DatasetLayout(small_dataset).unthread_workspace))
    return Rehearsal(small_dataset, gladly, unthread, tmp_path / "pipeline", f"sqlite:///{tmp_path / 'staging.db'}")


def test_candidate_rules_cut_the_tickets_and_reopens_link_back_on_unthread(rehearsal, tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES)
    rules = SplitRules.load(rules_file)
    result = dg.materialize(
        list(defs.assets),
        resources=rehearsal.resources,
        run_config={"ops": {split_tickets.op.name: {"config": {"rules_file": str(rules_file)}}}},
        tags={"dagster/asset_partition_range_start": FIRST, "dagster/asset_partition_range_end": LAST},
        raise_on_error=False,
    )
    assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    split_meta = result.asset_materializations_for_node(split_tickets.op.name)[0].metadata
    assert split_meta["rule_version"].value == rules.rule_version

    db = rehearsal.db()
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(tickets)).mappings().all()
        done = dict(conn.execute(
            sa.select(ledger.c.source_key, ledger.c.target_id).where(ledger.c.state == "done", ledger.c.entity_type == "conversation")
        ).all())
        members: dict[str, set[str]] = {}
        for item_id, ticket_id in conn.execute(sa.select(ticket_items.c.item_id, ticket_items.c.ticket_id)):
            members.setdefault(ticket_id, set()).add(item_id)
    assert {r["rule_version"] for r in rows} == {rules.rule_version}
    reasons = {r["cut_reason"] for r in rows}
    assert {"first", "time_gap", "reopen_after_dormancy", "channel_switch"} <= reasons, reasons
    assert all(len(members[r["ticket_id"]]) <= 15 for r in rows)

    # every reopen's Unthread conversation names the ticket it reopens and that ticket's conversation
    reopens = [r for r in rows if r["previous_ticket_id"]]
    assert reopens
    with httpx.Client(base_url=f"{rehearsal.unthread.url}/api", headers={"X-API-KEY": UNTHREAD_KEY}) as client:
        for r in reopens:
            conversation = client.get(f"/conversations/{done['ticket:' + r['ticket_id']]}").json()
            meta = conversation["metadata"]
            assert meta["gladlyReopensTicketId"] == r["previous_ticket_id"]
            assert meta["reopensUnthreadConversationId"] == done["ticket:" + r["previous_ticket_id"]]
            assert meta["splitReason"] == "reopen_after_dormancy" and meta["splitRuleVersion"] == rules.rule_version

    # split-preview under the same rules shows exactly the tickets the run cut, customer by customer
    real = {frozenset(m) for m in members.values()}
    customers = {r["customer_id"] for r in rows}
    previewed = set()
    for customer in customers:
        for timeline in preview(timeline_items(db, customer, None), rules):
            previewed |= {frozenset(t.items) for t in timeline.tickets}
    assert previewed == real
    db.dispose()
