"""Zendesk -> Gladly end to end, on both staging engines, against the Zendesk and Gladly emulators
over HTTP: the full export, the same range again (nothing new: the same import files byte for byte,
no profile created twice), then the incremental export's day (only what is new)."""

from __future__ import annotations

import csv
import hashlib
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa
from rich.console import Console

from migration_pipeline.lib.reconcile.accepted_losses import ACCEPTED_LOSSES_FILE
from migration_pipeline.lib.staging.db import StagingDatabase, imported_items
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.pairs.zendesk_to_gladly.jobs import WRITES_OP
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.gladly.resources import GladlyResource
from migration_pipeline.vendors.zendesk.resources import ZendeskResource
from sim.demo_zendesk import PAIR, materialize, zendesk_rehearsal
from sim.synth.dataset import read_json

pytestmark = pytest.mark.e2e


def _metadata(result, name: str) -> dict:
    [mat] = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()
             if e.event_specific_data.materialization.asset_key.to_user_string() == f"{PAIR}/{name}"][:1]
    return {k: v.value for k, v in mat.metadata.items()}


def _checks(result) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _indexed(folder: Path) -> set[str]:
    with (folder / "index.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    key = next(k for k in rows[0] if "item" in k.lower()) if rows else "source_item_id"
    return {r[key] for r in rows}


def _resources(env: dict[str, str], staging_url: str) -> dict:
    return {
        "storage": MigrationStorage(data_dir=env["MIGRATION_DATA_DIR"]),
        "staging": StagingResource(url=staging_url),
        "gladly": GladlyResource(base_url=env["GLADLY_BASE_URL"], api_user=env["GLADLY_API_USER"], api_token=env["GLADLY_API_TOKEN"],
                                 requests_per_second=50, backoff_initial_seconds=0.02, backoff_max_seconds=0.2),
        "zendesk": ZendeskResource(base_url=env["ZENDESK_BASE_URL"], email=env["ZENDESK_EMAIL"], api_token=env["ZENDESK_API_TOKEN"],
                                   requests_per_minute=6000, incremental_requests_per_minute=600),
    }


def test_full_export_then_same_range_again_then_the_delta(tmp_path, staging_url):
    with zendesk_rehearsal(tmp_path / "rehearsal", customers=20, days=4, seed=3, console=Console(quiet=True)) as (env, layout, zd):
        resources = _resources(env, staging_url)
        first = env["MIGRATION_HISTORY_START"]
        last = (datetime.fromisoformat(env["MIGRATION_HISTORY_END"]) - timedelta(days=1)).date().isoformat()
        imports = Path(env["MIGRATION_DATA_DIR"]) / "import" / "gladly"
        counts = read_json(layout.manifest)["counts"]

        full = materialize(first, last, resources)
        assert full.success and _checks(full) == {"every_comment_accounted_for": True, "one_gladly_profile_per_customer": True,
                                                  "quarantine_rate": True}
        [full_folder] = list(imports.iterdir())
        written = _digests(full_folder)
        profiles = _metadata(full, "gladly_customer_profiles")
        assert profiles["created"] == profiles["people"] > 0 and profiles["failed"] == 0
        assert _metadata(full, "reconciliation_report")["range_source"] == counts["comments"]

        again = materialize(first, last, resources)  # a re-run is just another materialization
        assert again.success and all(_checks(again).values())
        assert _digests(full_folder) == written, "the same range writes the same bytes"
        profiles_again = _metadata(again, "gladly_customer_profiles")
        assert profiles_again["created"] == 0 and profiles_again["already_loaded"] == profiles["people"]
        assert profiles_again["api_calls"] == 0

        delta_at = datetime.fromisoformat(read_json(layout.account)["deltaAt"].replace("Z", "+00:00"))
        httpx.put(f"{zd.url}/_emulator/clock", json={"now": (delta_at + timedelta(hours=1)).isoformat()}).raise_for_status()
        day = env["MIGRATION_HISTORY_END"]
        delta = materialize(day, day, resources)
        assert delta.success and all(_checks(delta).values())
        [delta_folder] = [f for f in imports.iterdir() if f != full_folder]
        assert not _indexed(full_folder) & _indexed(delta_folder), "a delta range holds only what is new"
        assert _metadata(delta, "gladly_import_files")["comments"] == counts["deltaNewComments"]

    db = StagingDatabase(staging_url, PAIR)
    try:
        with db.engine.connect() as conn:
            outcomes = dict(conn.execute(sa.select(imported_items.c.outcome, sa.func.count()).group_by(imported_items.c.outcome)).all())
    finally:
        db.dispose()
    # every comment of the export and of the delta: exactly one import row, reject or skip
    assert sum(outcomes.values()) == counts["comments"] + counts["deltaNewComments"]
    assert outcomes.get("rejected", 0) > 0  # the dataset's requesters without a valid email


def test_the_api_path_sends_the_last_year_as_activity_items_and_the_files_leave_them_out(tmp_path, staging_url):
    """With `gladly_activity_items` enabled, the (recent) history goes through Gladly's API once;
    the import files then hold none of it, and every comment is still accounted for exactly once."""
    with zendesk_rehearsal(tmp_path / "rehearsal", customers=12, days=3, seed=5, console=Console(quiet=True)) as (env, layout, _):
        resources = _resources(env, staging_url)
        first = env["MIGRATION_HISTORY_START"]
        last = (datetime.fromisoformat(env["MIGRATION_HISTORY_END"]) - timedelta(days=1)).date().isoformat()
        enabled = {"ops": {WRITES_OP: {"config": {"enabled": True}}}}
        run = materialize(first, last, resources, enabled)
        assert run.success and all(_checks(run).values()), _checks(run)
        sent = _metadata(run, "gladly_activity_items")
        files = _metadata(run, "gladly_import_files")
        assert sent["sent"] > 0 and sent["failed"] == 0, sent["failures"]
        assert files["skipped_by_rule"].get("in_gladly_by_api") == sent["in_gladly"]
        # every comment that would be a row went through the API, but those it cannot carry (a body
        # over 25,000 characters, a customer without a profile): the files take those (as rows, or
        # as rejects when the customer has no valid email)
        to_files = sum(n for reason, n in sent["skipped"].items() if "goes to the import files" in reason)
        assert 0 < files["comments_written"] <= to_files
        again = materialize(first, last, resources, enabled)
        assert again.success and _metadata(again, "gladly_activity_items")["sent"] == 0


def test_a_quarantined_line_no_reviewer_accepted_stops_the_run_before_any_import_file(tmp_path, staging_url):
    """The generator's malformed export lines (a truncated ticket line takes its comments with it)
    without the reviewer's sign-off: the blocking quarantine check fails at staging, names the lines,
    and nothing downstream runs; signed off, the same range goes through."""
    with zendesk_rehearsal(tmp_path / "rehearsal", customers=9, days=2, seed=11, console=Console(quiet=True)) as (env, layout, _):
        resources = _resources(env, staging_url)
        data_dir = Path(env["MIGRATION_DATA_DIR"])
        signed_off = (data_dir / ACCEPTED_LOSSES_FILE).read_text(encoding="utf-8")
        (data_dir / ACCEPTED_LOSSES_FILE).unlink()
        first = env["MIGRATION_HISTORY_START"]
        last = (datetime.fromisoformat(env["MIGRATION_HISTORY_END"]) - timedelta(days=1)).date().isoformat()

        stopped = materialize(first, last, resources)
        [check] = [c for c in stopped.get_asset_check_evaluations() if c.check_name == "quarantine_rate"]
        planted = read_json(layout.manifest)["mess"]["malformed_lines"]["where"]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        assert check.metadata["not_accepted"].value == len(planted) > 0
        listed = {entry["key"].rsplit("/", 1)[1] for entry in check.metadata["not_accepted_lines"].value}
        assert listed == {f"{m['file']}:{m['line']}" for m in planted}
        materialized = {e.event_specific_data.materialization.asset_key.to_user_string()
                        for e in stopped.get_asset_materialization_events()}
        assert f"{PAIR}/gladly_import_files" not in materialized and not stopped.success
        assert not (data_dir / "import" / "gladly").exists() or not any((data_dir / "import" / "gladly").iterdir())

        (data_dir / ACCEPTED_LOSSES_FILE).write_text(signed_off, encoding="utf-8")
        again = materialize(first, last, resources)
        assert again.success and all(_checks(again).values())

