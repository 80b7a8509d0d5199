"""The asset checks along the pipeline (checks/pipeline_checks.py), each on a clean window and on a
seeded fault: an uncovered day, quarantined lines past the limit, an item in no ticket, a write
Unthread refused, a delta sync that stopped.

Small windows on real components: export jobs archived as files (as the archive keeps them),
staged and split into the real staging database (SQLite, and PostgreSQL where SQL runs), the
checks run by Dagster, alone (a run of checks only, as the UI launches one) or after their asset.
One test runs them all on the clean whole-range rehearsal: none may turn it red."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from migration_pipeline.pairs.gladly_to_unthread.assets.export_jobs import gladly_export_jobs
from migration_pipeline.pairs.gladly_to_unthread.assets.loaded_records import unthread_loaded_records
from migration_pipeline.pairs.gladly_to_unthread.assets.staged_records import staged_gladly_records
from migration_pipeline.pairs.gladly_to_unthread.assets.tickets import split_tickets
from migration_pipeline.pairs.gladly_to_unthread.pair import key
from migration_pipeline.pairs.gladly_to_unthread.checks.pipeline_checks import (
    FRESHNESS_CHECK,
    MAX_QUARANTINE_RATE,
    PIPELINE_CHECKS,
    QUARANTINE_RATE_ENV,
    dead_letters,
    export_coverage,
    fresh_partition_keys,
    freshness_sensor,
    items_all_in_tickets,
    max_quarantine_rate,
    newest_partition_fresh,
    quarantine_rate,
)
from migration_pipeline.pairs.gladly_to_unthread.checks.reconciliation import ACCEPTED_LOSSES_FILE, line_key, write_accepted_losses
from migration_pipeline.lib import ledger_keys
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.gladly.archive import CUSTOMER_CONVERSATIONS_LAYOUT, ExportArchive
from migration_pipeline.vendors.gladly.resources import GladlyResource
from migration_pipeline.vendors.gladly.staging import stage_job_file
from migration_pipeline.lib.staging.db import StagingDatabase, conversation_items, ledger, ticket_items, utc_text
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.lib.staging.tickets import split_window
from migration_pipeline.vendors.unthread.resources import UnthreadResource
from migration_pipeline.pairs.gladly_to_unthread.pair import NAME as GLADLY_TO_UNTHREAD
from migration_pipeline_tests.checks.test_missing_data_checks import _item
from migration_pipeline_tests.rehearsal import FIRST, LAST

PARTITION = "2026-11-10"  # the day _item's lines are on
DAY = (datetime(2026, 11, 10, tzinfo=UTC), datetime(2026, 11, 11, tzinfo=UTC))
ITEMS = "conversation_items.jsonl"
ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


def _archive(data, job_id: str, start: datetime, end: datetime, files: dict[str, list[str]], **meta) -> None:
    """An export job as the archive keeps it: its files and archive.json with their line counts."""
    directory = ExportArchive(data).job_dir(job_id)
    directory.mkdir(parents=True)
    for name, lines in files.items():
        (directory / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (directory / "archive.json").write_text(json.dumps({
        "jobId": job_id, "source": "api", "startAt": start.isoformat(), "endAt": end.isoformat(),
        "updatedAt": end.isoformat(), "files": {n: {"bytes": 0, "sha256": "", "lines": len(v)} for n, v in files.items()},
        **meta,
    }))


def _stage(data, staging_url: str, job_id: str) -> None:
    db = StagingDatabase(staging_url, GLADLY_TO_UNTHREAD)
    db.create_schema()
    try:
        job = ExportArchive(data).load(job_id)
        for name in job.files:
            stage_job_file(db, job, name, DAY)
        split_window(db, *map(utc_text, DAY))
    finally:
        db.dispose()


def _resources(data, staging_url: str) -> dict:
    return {
        "storage": MigrationStorage(data_dir=str(data)),
        "staging": StagingResource(url=staging_url),
        # the checks send nothing: dead_letters reads the customer mode; the assets beside them are not run
        "unthread": UnthreadResource(base_url="http://127.0.0.1:9/api", api_key="unused", triage_channel_id="T"),
        "gladly": GladlyResource(base_url="http://127.0.0.1:9", api_user="bot@example.com", api_token="unused"),
    }


# the assets the checks target, so a run of checks only can be planned
TARGETS = [gladly_export_jobs, staged_gladly_records, split_tickets, unthread_loaded_records]
# `_run_checks` results are named `<asset key>:<check>`, as the UI shows them
COVERAGE = "gladly_to_unthread/gladly_export_jobs:export_coverage"
QUARANTINE = "gladly_to_unthread/staged_conversation_items:quarantine_rate"


def _run_checks(
    checks, resources, first=PARTITION, last=PARTITION, instance=None, one_day: str | None = None
) -> dict[str, dg.AssetCheckEvaluation]:
    """Run `checks` alone over the partition range [first, last] (no asset materialized), or as a
    one-day run (`one_day`: only the partition tag, as the schedule, the sensor and the UI's launch set)."""
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last} if first else {}
    if one_day:
        tags = {"dagster/partition": one_day}
    result = dg.materialize(
        [*TARGETS, *checks], selection=dg.AssetSelection.checks(*checks), resources=resources, tags=tags,
        raise_on_error=False, instance=instance,
    )
    # a blocking check that fails with ERROR fails its step (and the run): nothing else may
    errors = [e.step_failure_data.error for e in result.all_events if e.is_step_failure]
    assert all(e.cls_name == "DagsterAssetCheckFailedError" for e in errors), [e.message for e in errors]
    assert not result.get_asset_materialization_events()
    return {f"{c.asset_key.to_user_string()}:{c.check_name}": c for c in result.get_asset_check_evaluations()}


def _failed(evaluation: dg.AssetCheckEvaluation, severity: dg.AssetCheckSeverity) -> bool:
    return not evaluation.passed and evaluation.severity == severity


# -- export coverage ---------------------------------------------------------------------------
def test_export_coverage_needs_the_whole_window_archived_with_its_files(tmp_path):
    data = tmp_path / "pipeline"
    noon = DAY[0] + timedelta(hours=12)
    _archive(data, "morning", DAY[0], noon, {ITEMS: [_item("a", 1)]})
    _archive(data, "afternoon", noon, DAY[1], {ITEMS: []})
    # one customer's Support Tools export of the next day: it never proves the day complete
    _archive(data, "one-customer", DAY[1], DAY[1] + timedelta(days=1), {ITEMS: []}, layout=CUSTOMER_CONVERSATIONS_LAYOUT)
    resources = _resources(data, f"sqlite:///{tmp_path / 'staging.db'}")

    coverage = _run_checks([export_coverage], resources)[COVERAGE]
    assert coverage.passed and coverage.blocking
    assert {j["job_id"] for j in coverage.metadata["covering_jobs"].value} == {"morning", "afternoon"}
    # a one-day run (no range tags) checks its own day, not the whole history
    one_day = _run_checks([export_coverage], resources, one_day=PARTITION)[COVERAGE]
    assert one_day.passed, one_day.description

    over_two_days = _run_checks([export_coverage], resources, last="2026-11-11")[COVERAGE]
    assert _failed(over_two_days, ERROR)
    assert over_two_days.metadata["uncovered"].value == ["2026-11-11 00:00..2026-11-12 00:00 UTC"]
    assert over_two_days.metadata["partial_exports_not_counted"].value == 1
    assert "2026-11-11 00:00..2026-11-12 00:00 UTC" in over_two_days.description
    assert "Gladly Support" in over_two_days.description and str(data / "landing" / "gladly") in over_two_days.description

    # an archived job whose file is gone from disk covers nothing
    (ExportArchive(data).job_dir("morning") / ITEMS).unlink()
    gone = _run_checks([export_coverage], resources)[COVERAGE]
    assert _failed(gone, ERROR) and gone.metadata["uncovered"].value == ["2026-11-10 00:00..2026-11-10 12:00 UTC"]
    assert gone.metadata["jobs_with_files_missing"].value == [{"job_id": "morning", "files_missing": [ITEMS]}]


# -- quarantine, split and dead letters on one staged window, on both engines ----------------------
def test_a_clean_staged_window_passes_and_each_seeded_fault_is_named(tmp_path, staging_url):
    data = tmp_path / "pipeline"
    lines = [_item(f"item-{n:03d}", n % 60, customer=f"c{n % 7}") for n in range(150)]
    _archive(data, "job-10", *DAY, {ITEMS: lines})
    _stage(data, staging_url, "job-10")
    resources = _resources(data, staging_url)

    # the split materialized with its blocking check after it, then every check of the window
    result = dg.materialize([split_tickets, items_all_in_tickets], resources=resources, partition_key=PARTITION)
    [after_split] = result.get_asset_check_evaluations()
    assert after_split.passed and after_split.metadata["staged_items"].value == 150
    checks = _run_checks([quarantine_rate, items_all_in_tickets, dead_letters], resources)
    assert all(c.passed for c in checks.values()), {k: c.description for k, c in checks.items()}

    # faults: an item staged after the split, an item whose ticket is gone, a refused write
    db = StagingDatabase(staging_url, GLADLY_TO_UNTHREAD)
    try:
        with db.engine.connect() as conn:
            row = dict(conn.execute(sa.select(conversation_items).limit(1)).mappings().one())
            assigned = conn.execute(sa.select(ticket_items.c.item_id, ticket_items.c.ticket_id).order_by(ticket_items.c.item_id)).all()
        (orphan, _), (refused, ticket_id) = assigned[0], assigned[-1]
        with db.begin() as conn:
            conn.execute(conversation_items.insert().values({**row, "source_id": "late-item", "ts": utc_text(DAY[0])}))
            conn.execute(ticket_items.update().where(ticket_items.c.item_id == orphan).values(ticket_id="no-such-ticket"))
            conn.execute(ledger.insert(), [
                {"source_key": ledger_keys.message(refused), "entity_type": "message", "parent_key": ledger_keys.ticket(ticket_id),
                 "state": "failed", "attempts": 3, "last_error": "POST /messages -> 400: body.value: 30000 characters "
                 "exceeds the limit of 25000", "updated_at": utc_text(DAY[1])},
                # another window's ticket: not this window's dead letter
                {"source_key": ledger_keys.message("elsewhere"), "entity_type": "message",
                 "parent_key": ledger_keys.ticket("other-window"),
                 "state": "failed", "attempts": 1, "last_error": "400: no", "updated_at": utc_text(DAY[1])},
            ])
    finally:
        db.dispose()
    checks = _run_checks([items_all_in_tickets, dead_letters], resources)

    split = checks["gladly_to_unthread/split_tickets:items_all_in_tickets"]
    assert _failed(split, ERROR) and split.blocking
    assert {(i["item_id"], i["reason"]) for i in split.metadata["items"].value} == {
        ("late-item", "in no ticket"), (orphan, "assigned to a ticket that does not exist"),
    }
    assert "late-item" in split.description and split.metadata["not_in_one_ticket"].value == 2

    letters = checks["gladly_to_unthread/unthread_loaded_records:dead_letters"]
    assert _failed(letters, WARN) and not letters.blocking
    assert [d["source_key"] for d in letters.metadata["dead_letters"].value] == [ledger_keys.message(refused)]
    assert letters.metadata["by_reason"].value == {"N: body.value: N characters exceeds the limit of N": 1}
    assert "exceeds the limit" in letters.description


def test_quarantined_lines_warn_within_the_limit_stop_the_run_past_it_and_pass_once_accepted(tmp_path):
    staging_url = f"sqlite:///{tmp_path / 'staging.db'}"
    data = tmp_path / "pipeline"
    good = [_item(f"item-{n:03d}", n % 60) for n in range(300)]
    truncated = _item("cut", 1)[:40]
    no_customer = json.loads(_item("orphan", 2))
    del no_customer["customerId"]
    # one bad line in 301 (0.33%: within 1%), then a second job with 4 bad of 20 (5 of 321: past it)
    _archive(data, "big", *DAY, {ITEMS: [*good, truncated]})
    _stage(data, staging_url, "big")
    resources = _resources(data, staging_url)
    assert MAX_QUARANTINE_RATE == 0.01

    within = _run_checks([quarantine_rate], resources)[QUARANTINE]
    assert _failed(within, WARN) and within.blocking
    assert within.metadata["not_accepted_lines"].value[0]["key"] == line_key("big", ITEMS, 301)
    assert within.metadata["lines"].value == 301 and within.metadata["not_accepted"].value == 1

    small = [_item("s1", 3), truncated, json.dumps(no_customer), "not json", "[1, 2, 3]", *good[:15]]
    _archive(data, "small", *DAY, {ITEMS: small})
    _stage(data, staging_url, "small")
    past = _run_checks([quarantine_rate], resources)[QUARANTINE]
    assert _failed(past, ERROR)
    assert past.metadata["rate"].value == pytest.approx(5 / 321)  # the window's files together
    assert past.metadata["not_accepted"].value == 5 and past.metadata["by_file"].value == {ITEMS: 5}
    assert "over the 1.00% limit" in past.description

    accepted = {line_key("big", ITEMS, 301): "a truncated copy"} | {
        line_key("small", ITEMS, n): "not an item" for n in (2, 4, 5)
    }
    write_accepted_losses(data / ACCEPTED_LOSSES_FILE, accepted)
    one_left = _run_checks([quarantine_rate], resources)[QUARANTINE]
    assert _failed(one_left, WARN) and one_left.metadata["accepted"].value == 4
    assert [x["key"] for x in one_left.metadata["not_accepted_lines"].value] == [line_key("small", ITEMS, 3)]
    assert "customerId" in one_left.metadata["not_accepted_lines"].value[0]["reason"]
    assert sum(one_left.metadata["by_reason"].value.values()) == 1

    write_accepted_losses(data / ACCEPTED_LOSSES_FILE, accepted | {line_key("small", ITEMS, 3): "no customer"})
    signed_off = _run_checks([quarantine_rate], resources)[QUARANTINE]
    assert signed_off.passed and "5 accepted" in signed_off.description


def test_the_quarantine_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(QUARANTINE_RATE_ENV, "0.05")
    assert max_quarantine_rate() == 0.05
    monkeypatch.delenv(QUARANTINE_RATE_ENV)
    assert max_quarantine_rate() == 0.01
    for bad in ("5%", "2", "-0.1"):
        monkeypatch.setenv(QUARANTINE_RATE_ENV, bad)
        with pytest.raises(ValueError, match=QUARANTINE_RATE_ENV):
            max_quarantine_rate()


# -- freshness of the delta syncs ----------------------------------------------------------------
def test_the_newest_partition_must_be_yesterdays_and_an_observation_does_not_count(tmp_path):
    yesterday = fresh_partition_keys(datetime.now(UTC))[0]
    week_ago = f"{datetime.now(UTC) - timedelta(days=7):%Y-%m-%d}"
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(key("staged_conversation_items"), partition=yesterday))
        instance.report_runless_asset_event(dg.AssetMaterialization(key("unthread_loaded_records"), partition=week_ago))
        # what a dry or sample run of the load records: it loaded nothing
        instance.report_runless_asset_event(dg.AssetObservation(key("unthread_loaded_records"), partition=yesterday))
        checks = _run_checks([newest_partition_fresh], _resources(tmp_path, "sqlite://"), first=None, instance=instance)
    staged = checks[f"gladly_to_unthread/staged_conversation_items:{FRESHNESS_CHECK}"]
    assert staged.passed and yesterday in staged.description
    loaded = checks[f"gladly_to_unthread/unthread_loaded_records:{FRESHNESS_CHECK}"]
    assert _failed(loaded, WARN) and not loaded.blocking
    assert loaded.metadata["newest_partition"].value == week_ago and f"the newest materialized is {week_ago}" in loaded.description


def test_fresh_means_the_day_ended_at_most_a_day_and_eight_hours_ago():
    assert fresh_partition_keys(datetime(2026, 12, 2, 14, 0, tzinfo=UTC)) == ["2026-12-01"]
    # before 08:00 the day before yesterday is still on time
    assert fresh_partition_keys(datetime(2026, 12, 2, 7, 59, tzinfo=UTC)) == ["2026-12-01", "2026-11-30"]


def test_the_freshness_sensor_is_off_by_default_and_runs_the_check_alone():
    from migration_pipeline.definitions import defs

    sensor = defs.resolve_sensor_def(freshness_sensor.name)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    request = freshness_sensor()
    assert set(request.asset_check_keys) == set(newest_partition_fresh.check_keys) and len(request.asset_check_keys) == 2
    assert not request.asset_selection
    # the run it asks for, as the code location builds it: the two checks, no asset, no resource to configure
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def(sensor.job_name).execute_in_process(instance=instance)
    assert not result.get_asset_materialization_events()
    assert {c.asset_key.to_user_string() for c in result.get_asset_check_evaluations() if not c.passed} == {
        "gladly_to_unthread/staged_conversation_items", "gladly_to_unthread/unthread_loaded_records",
    }


# -- the clean rehearsal stays green -------------------------------------------------------------
def test_no_check_turns_the_clean_whole_range_rehearsal_red(loaded_states):
    """The migrated 20-day dataset, planted malformed lines and all (the rehearsal's reviewer
    accepted them), read in place: every window check passes; the dataset's last day is weeks
    old, so freshness alone warns."""
    state = loaded_states.get("sqlite")
    checks = _run_checks(PIPELINE_CHECKS, _resources(state.root / "pipeline", state.staging_url), first=FIRST, last=LAST)
    stale = {k: c for k, c in checks.items() if k.endswith(FRESHNESS_CHECK)}
    assert len(checks) == 6 and len(stale) == 2 and all(_failed(c, WARN) for c in stale.values())
    others = {k: c for k, c in checks.items() if k not in stale}
    assert all(c.passed for c in others.values()), {k: c.description for k, c in others.items() if not c.passed}
    quarantine = checks[QUARANTINE]
    assert quarantine.metadata["quarantined"].value == quarantine.metadata["accepted"].value > 0

