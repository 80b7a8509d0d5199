"""What each pair shows in Dagster, pinned: a change to asset keys, checks, jobs, schedules or
sensors is a change users see (saved selections, schedules, alerts), so it must be deliberate."""

import dagster as dg
import pytest

from migration_pipeline import definitions
from migration_pipeline.definitions import defs

GLADLY_TO_UNTHREAD = {
    "assets": [f"gladly_to_unthread/{a}" for a in (
        "gladly_export", "gladly_export_jobs", "reconciliation_report", "split_tickets", "staged_agents",
        "staged_conversation_items", "staged_customers", "staged_topics", "unthread_loaded_records",
        "unthread_preflight", "unthread_workspace",
    )],
    "checks": [f"gladly_to_unthread/{c}" for c in (
        "gladly_export_jobs:export_coverage",
        "reconciliation_report:attachment_checksums",
        "reconciliation_report:customer_attribution",
        "reconciliation_report:every_source_item_accounted_for",
        "reconciliation_report:merged_profiles_no_duplicate_customers",
        "reconciliation_report:messages_in_source_order",
        "reconciliation_report:no_duplicate_messages",
        "reconciliation_report:tag_coverage",
        "reconciliation_report:variance_within_tolerance",
        "reconciliation_report:workspace_capabilities",
        "split_tickets:items_all_in_tickets",
        "staged_conversation_items:newest_partition_fresh",
        "staged_conversation_items:quarantine_rate",
        "unthread_loaded_records:dead_letters",
        "unthread_loaded_records:newest_partition_fresh",
        "unthread_loaded_records:no_writes_refused",
    )],
    "jobs": [
        "dry_run_migration", "gladly_cutover_close", "gladly_to_unthread_migration", "rollback_unthread",
        "sample_migration", "trace_record",
    ],
    "schedules": ["daily_delta_sync"],
    "sensors": ["freshness_sensor", "new_gladly_export_jobs"],
}


ZENDESK_TO_GLADLY = {
    "assets": [f"zendesk_to_gladly/{a}" for a in (
        "gladly_activity_items", "gladly_customer_profiles", "gladly_import_files", "gladly_organization", "gladly_preflight", "reconciliation_report",
        "staged_agents", "staged_conversation_items", "staged_conversations", "staged_customers", "zendesk_account",
        "zendesk_deliveries",
    )],
    "checks": [
        "zendesk_to_gladly/reconciliation_report:every_comment_accounted_for",
        "zendesk_to_gladly/reconciliation_report:one_gladly_profile_per_customer",
        "zendesk_to_gladly/staged_conversation_items:quarantine_rate",
    ],
    "jobs": ["zendesk_to_gladly_dry_run", "zendesk_to_gladly_migration"],
    "schedules": ["zendesk_to_gladly_daily_delta"],
    "sensors": [],
}
PAIRS = {"gladly_to_unthread": GLADLY_TO_UNTHREAD, "zendesk_to_gladly": ZENDESK_TO_GLADLY}


def test_the_code_location_shows_exactly_each_pairs_assets_checks_jobs_schedules_and_sensors():
    graph = defs.resolve_asset_graph()
    shown = {
        "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
        "checks": sorted(f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys),
        "jobs": sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")),
        "schedules": sorted(s.name for s in defs.schedules or []),
        "sensors": sorted(s.name for s in defs.sensors or []),
    }
    assert shown == {part: sorted(x for pair in PAIRS.values() for x in pair[part]) for part in shown}
    # each pair is its own lineage graph: all its assets, and only its assets, in a group named after it
    for pair, expected in PAIRS.items():
        assert {graph.get(dg.AssetKey.from_user_string(k)).group_name for k in expected["assets"]} == {pair}


@pytest.mark.parametrize(("pair", "external"), [
    ("gladly_to_unthread", {"gladly_to_unthread/gladly_export", "gladly_to_unthread/unthread_workspace"}),
    ("zendesk_to_gladly", {"zendesk_to_gladly/zendesk_account", "zendesk_to_gladly/gladly_organization"}),
])
def test_each_migration_job_selects_its_own_pairs_stages_and_checks_only(pair, external):
    job = defs.resolve_job_def(f"{pair}_migration")
    assert sorted(k.to_user_string() for k in job.asset_layer.selected_asset_keys) == sorted(
        set(PAIRS[pair]["assets"]) - external  # the external ends are not run
    )
    assert job.tags["migration/pair"] == pair and job.tags["migration/mode"] == "full"


def test_the_first_pairs_migration_job_runs_the_checks_along_the_pipeline():
    """Its steps too: an op made by `@asset` or `@asset_check` is named after the asset's key, and run
    config (the launchpad's `ops:`) names it so; the multi-asset ops keep their function names."""
    job = defs.resolve_job_def("gladly_to_unthread_migration")
    steps = set(job.graph.node_names())
    assert {f"gladly_to_unthread__{s}" for s in (
        "gladly_export_jobs", "split_tickets", "unthread_preflight", "reconciliation_report",
        "gladly_export_jobs_export_coverage", "split_tickets_items_all_in_tickets",
        "staged_conversation_items_quarantine_rate", "unthread_loaded_records_dead_letters",
    )} | {"staged_gladly_records", "unthread_loaded_records"} <= steps


def test_the_code_location_module_holds_exactly_one_definitions_object():
    """`dg launch -m`, `dg dev -m` and the code server refuse a module with two Definitions at its
    top level (a pair's `defs` imported by name would be a second one)."""
    found = [name for name, value in vars(definitions).items() if isinstance(value, dg.Definitions)]
    assert found == ["defs"]
