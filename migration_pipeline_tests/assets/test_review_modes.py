"""Dry and sample runs tell Dagster the truth: observations of unthread_loaded_records, never a
materialization (so no day looks loaded), each run tagged with its mode; only a real load
materializes. Against both emulators, one staged day, a real Dagster instance."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from migration_pipeline.pairs.gladly_to_unthread.assets.loaded_records import LOADED, MODE_TAG, REFUSED_CHECK
from migration_pipeline.pairs.gladly_to_unthread.mappings import load_mappings
from migration_pipeline.lib.rule_files import packaged_file
from migration_pipeline.pairs.gladly_to_unthread.definitions import defs  # this pair's assets only
from migration_pipeline.pairs.gladly_to_unthread.jobs import LOAD_OP, PREFLIGHT_OP, dry_run_migration, sample_migration
from migration_pipeline.lib.staging.db import ledger
from migration_pipeline_tests.rehearsal import LAST, Rehearsal
from migration_pipeline_tests.targets.test_review_ops import LOAD_KEYS, STAGING_KEYS, _requests

DAY = LAST  # one day holding tickets of several customers (its own daily export job)
# the mode is engine-independent: SQLite only (test_review_ops runs the review path on both)
pytestmark = pytest.mark.parametrize("staging_url", ["sqlite"], indirect=True)


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def _staged_day(r: Rehearsal, instance: dg.DagsterInstance) -> None:
    staged = dg.materialize(list(defs.assets), selection=STAGING_KEYS, resources=r.resources, partition_key=DAY, instance=instance)
    assert staged.success


def _load(r: Rehearsal, instance: dg.DagsterInstance, ops: dict | None = None) -> dg.ExecuteInProcessResult:
    """The load steps of DAY as any job runs them (op config, no mode tag), with the load's check."""
    return dg.materialize(
        list(defs.assets), selection=LOAD_KEYS, resources=r.resources, partition_key=DAY, instance=instance,
        run_config={"ops": ops or {}},
    )


def _loaded_days(instance: dg.DagsterInstance) -> set[str]:
    return set(instance.get_materialized_partitions(LOADED))


def _observed(result: dg.ExecuteInProcessResult) -> dict:
    [observation] = result.asset_observations_for_node("unthread_loaded_records")
    assert observation.partition == DAY
    return {k: v.value for k, v in observation.metadata.items()}


def test_dry_and_sample_runs_materialize_nothing_and_a_real_run_does(rehearsal, instance):
    r = rehearsal
    _staged_day(r, instance)
    review = dg.Definitions(assets=list(defs.assets), jobs=[dry_run_migration, sample_migration], resources=r.resources)

    dry = review.resolve_job_def("dry_run_migration").execute_in_process(partition_key=DAY, instance=instance)
    assert dry.success and dry.dagster_run.tags[MODE_TAG] == "dry_run"
    assert instance.get_latest_materialization_event(LOADED) is None and _loaded_days(instance) == set()
    planned = _observed(dry)
    assert planned["mode"] == "dry_run" and planned["tickets"] == planned["conversations_created"] > 0
    assert (Path(planned["dry_run_dir"]) / "conversations.jsonl").read_text().count("\n") == planned["conversations_created"]
    assert _requests(r) == []
    # the job leaves the refused-writes check out: nothing evaluated, nothing left planned
    check = dg.AssetCheckKey(LOADED, REFUSED_CHECK)
    assert instance.event_log_storage.get_asset_check_execution_history(check, limit=5) == []

    # three customers: fewer than the day holds, so the real run has tickets of its own left to send
    sample = review.resolve_job_def("sample_migration").execute_in_process(
        partition_key=DAY, instance=instance, run_config={"ops": {LOAD_OP: {"config": {"sample_customers": 3}}}}
    )
    assert sample.success and sample.dagster_run.tags[MODE_TAG] == "sample"
    assert instance.get_latest_materialization_event(LOADED) is None and _loaded_days(instance) == set()
    tried = _observed(sample)
    assert tried["mode"] == "sample" and tried["sample_readback_passed"] is True
    assert 0 < tried["conversations_created"] == r.stats()["conversations"] < planned["conversations_created"]

    real = _load(r, instance)
    assert _loaded_days(instance) == {DAY}
    [loaded] = real.asset_materializations_for_node("unthread_loaded_records")
    meta = {k: v.value for k, v in loaded.metadata.items()}
    assert meta["mode"] == "full" and meta["tickets"] == planned["tickets"]
    # what the sample created is in the ledger: the real run creates the rest, as the dry run listed
    assert meta["conversations_created"] + tried["conversations_created"] == planned["conversations_created"]
    assert [(c.check_name, c.passed) for c in real.get_asset_check_evaluations()] == [(REFUSED_CHECK, True)]
    assert r.stats()["conversations"] == planned["conversations_created"]


def test_a_dry_run_after_a_mapping_change_lists_the_conversation_patches_and_sends_nothing(rehearsal, instance, tmp_path):
    """Loaded tickets whose metadata changed (here the mapping tables' version, stamped on every
    conversation) are PATCHed by the next real run: the dry run lists each PATCH in
    conversation_updates.jsonl, sends nothing and leaves the ledger and Dagster's record as they were."""
    r = rehearsal
    _staged_day(r, instance)
    real = _load(r, instance)
    assert real.success

    version = load_mappings().version
    changed = tmp_path / "mappings.yaml"
    changed.write_text(Path(packaged_file("mappings.yaml")).read_text().replace(version, f"{version}-review"))
    r.with_unthread(mappings_file=str(changed))
    db = r.db()
    try:
        with db.engine.connect() as conn:
            before = conn.execute(sa.select(ledger).order_by(ledger.c.source_key)).all()
        conversations = {row.target_id for row in before if row.entity_type == "conversation" and row.state == "done"}
        requests = len(_requests(r))

        dry = _load(r, instance, {PREFLIGHT_OP: {"config": {"offline": True}}, LOAD_OP: {"config": {"dry_run": True}}})

        with db.engine.connect() as conn:
            assert conn.execute(sa.select(ledger).order_by(ledger.c.source_key)).all() == before
    finally:
        db.dispose()
    assert dry.success and len(_requests(r)) == requests, "a dry run sends nothing"
    # run through config, without the review job's tag: said out loud, and still no materialization
    warnings = [e.user_message for e in instance.all_logs(dry.run_id) if e.level == 30]
    assert any("load mode: dry_run" in w and MODE_TAG in w for w in warnings), warnings
    assert instance.get_latest_materialization_event(LOADED).run_id == real.run_id
    assert dry.get_asset_check_evaluations() == []

    out_dir = Path(_observed(dry)["dry_run_dir"])
    updates = [json.loads(line) for line in (out_dir / "conversation_updates.jsonl").read_text().splitlines()]
    assert conversations and {u["conversationId"] for u in updates} == conversations and len(updates) == len(conversations)
    assert all(u["payload"]["metadata"]["mappingVersion"] == f"{version}-review" for u in updates)
    assert (out_dir / "conversations.jsonl").read_text() == (out_dir / "messages.jsonl").read_text() == ""
