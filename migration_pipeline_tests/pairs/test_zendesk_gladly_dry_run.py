"""The Zendesk -> Gladly dry run (`zendesk_to_gladly_dry_run`) against the Gladly and Zendesk
emulators over HTTP, on both staging engines, in one Dagster instance: after a real first day, a
dry run of the whole range sends Gladly no write, leaves the ledger and leases as they were,
materializes neither profiles nor activity items (an observation per day instead) and writes the
plan; with a profile created in Gladly meanwhile, the next dry run plans it as matched; the real run
that follows creates exactly what the plan lists, under the planned ids."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa
from rich.console import Console

from migration_pipeline.lib.staging.db import StagingDatabase, ledger, load_leases
from migration_pipeline.pairs.spec import MODE_TAG
from migration_pipeline.pairs.zendesk_to_gladly.assets.activity_items import ACTIVITY
from migration_pipeline.pairs.zendesk_to_gladly.assets.profiles import PROFILES
from migration_pipeline.pairs.zendesk_to_gladly.definitions import SPEC
from migration_pipeline.pairs.zendesk_to_gladly.jobs import DRY_RUN_OPS, WRITES_OP, dry_run
from migration_pipeline.vendors.gladly.client import GladlyClient
from migration_pipeline.vendors.gladly.profiles import GladlyTarget, ProfileFields
from migration_pipeline_tests.pairs.test_zendesk_to_gladly import _metadata, _resources
from sim.demo_zendesk import PAIR, zendesk_rehearsal

pytestmark = pytest.mark.e2e

ENABLED = {WRITES_OP: {"config": {"enabled": True}}}  # the API path on: activity items planned and sent too
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _range_tags(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def _real_run(instance, resources, first: str, last: str) -> dg.ExecuteInProcessResult:
    """The migration job's stages and checks over [first, last]."""
    result = dg.materialize([*SPEC.external, *SPEC.stages, *SPEC.checks], resources=resources, instance=instance,
                            tags=_range_tags(first, last), run_config={**QUIET, "ops": ENABLED}, raise_on_error=False)
    assert result.success
    return result


def _dry_run(instance, resources, first: str, last: str) -> dg.ExecuteInProcessResult:
    """The dry-run job as launched from the UI, with `enabled: true` added to its writes' config."""
    ops = {**DRY_RUN_OPS, WRITES_OP: {"config": {**DRY_RUN_OPS[WRITES_OP]["config"], "enabled": True}}}
    job = dg.Definitions(assets=[*SPEC.external, *SPEC.stages], asset_checks=list(SPEC.checks), jobs=[dry_run],
                         resources=resources).resolve_job_def(dry_run.name)
    result = job.execute_in_process(instance=instance, tags=_range_tags(first, last), run_config={**QUIET, "ops": ops})
    assert result.success and result.dagster_run.tags[MODE_TAG] == "dry_run"
    return result


def _state(staging_url: str) -> tuple[list, list]:
    """Every ledger row and lease of the pair's staging namespace."""
    db = StagingDatabase(staging_url, PAIR)
    try:
        with db.engine.connect() as conn:
            return (conn.execute(sa.select(ledger).order_by(ledger.c.source_key)).all(),
                    conn.execute(sa.select(load_leases).order_by(load_leases.c.lease_key)).all())
    finally:
        db.dispose()


def _gladly(url: str, path: str) -> dict | list:
    return httpx.get(url + path).json()


def _plan(folder: Path, kind: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{kind}.jsonl").read_text(encoding="utf-8").splitlines()]


def _originals(profile: dict, part: str) -> list[str]:
    """The emails or phones of a profile or profile body, as written."""
    return sorted(entry["original"] for entry in profile.get(part) or [])


def _observed(result: dg.ExecuteInProcessResult, days: list[str]) -> dict[dg.AssetKey, dict]:
    """One observation per day and asset, each with the same figures: those figures by asset."""
    observations = result.asset_observations_for_node(WRITES_OP)
    assert sorted((o.asset_key.to_user_string(), o.partition) for o in observations) == sorted(
        (k.to_user_string(), d) for k in (PROFILES, ACTIVITY) for d in days)
    figures = {}
    for o in observations:
        meta = {k: v.value for k, v in o.metadata.items()}
        assert figures.setdefault(o.asset_key, meta) == meta and meta["mode"] == "dry_run"
    return figures


def _checked_dry_run(instance, resources, staging_url: str, url: str, first: str, last: str, days: list[str]):
    """A dry run that must send Gladly no write and change neither the ledger, the leases nor
    what Dagster holds as materialized: its figures by asset and its plan folder."""
    before = (_state(staging_url), _gladly(url, "/_emulator/stats"),
              {k: instance.get_materialized_partitions(k) for k in (PROFILES, ACTIVITY)})
    httpx.post(url + "/_emulator/requests/clear").raise_for_status()
    result = _dry_run(instance, resources, first, last)
    sent = [(r["method"], r["path"]) for r in _gladly(url, "/_emulator/requests") if r["path"].startswith("/api/")]
    assert sent and {method for method, _ in sent} == {"GET"}, "a dry run reads, and writes nothing"
    after = (_state(staging_url), _gladly(url, "/_emulator/stats"),
             {k: instance.get_materialized_partitions(k) for k in (PROFILES, ACTIVITY)})
    assert after == before
    figures = _observed(result, days)
    [folder] = {Path(f["plan_file"]).parent for f in figures.values()}
    assert folder == resources["storage"].root / "dry-run" / result.run_id
    return figures[PROFILES], figures[ACTIVITY], folder


def test_a_dry_run_writes_nothing_and_the_real_run_creates_what_it_planned(tmp_path, staging_url):
    with zendesk_rehearsal(tmp_path / "rehearsal", customers=12, days=3, seed=5, console=Console(quiet=True)) as (env, _, _zd):
        resources = _resources(env, staging_url)
        url = env["GLADLY_BASE_URL"]
        first = env["MIGRATION_HISTORY_START"]
        last = (datetime.fromisoformat(env["MIGRATION_HISTORY_END"]) - timedelta(days=1)).date().isoformat()
        span = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).days
        days = [(datetime.fromisoformat(first) + timedelta(days=n)).date().isoformat() for n in range(span + 1)]
        with dg.DagsterInstance.ephemeral() as instance, GladlyClient(url, env["GLADLY_API_USER"], env["GLADLY_API_TOKEN"],
                                                                      requests_per_second=8) as client:
            # the first day for real: the dry run of the range plans only what is left
            _real_run(instance, resources, first, first)
            profiles, items, folder = _checked_dry_run(instance, resources, staging_url, url, first, last, days)
            creates = [w for w in _plan(folder, "profiles") if w["method"] == "POST"]
            assert profiles["would_create"] == len(creates) == profiles["planned_writes"] > 0
            assert profiles["would_match_existing"] == {} and profiles["already_loaded"] > 0
            assert items["would_create"] == len(_plan(folder, "activity_items")) > 0 and items["already_loaded"] > 0

            # a profile made in Gladly meanwhile (by an agent, say) with one planned person's email and
            # nothing else: matched, not created, and completed with the person's name
            taken = next(w["body"]["emails"][0]["original"] for w in creates if w["body"].get("name") and w["body"].get("emails"))
            GladlyTarget(client).create_profile(ProfileFields(emails=[taken]))
            profiles, items, folder = _checked_dry_run(instance, resources, staging_url, url, first, last, days)
            plan = _plan(folder, "profiles")
            creates = [w["body"] for w in plan if w["method"] == "POST"]
            completes = [w for w in plan if w["method"] == "PATCH"]
            assert profiles["would_create"] == len(creates) and profiles["would_match_existing"] == {"email": 1}
            assert profiles["would_update"] == len(completes) == 1 and "name" in completes[0]["body"]
            activity = _plan(folder, "activity_items")

            stats = _gladly(url, "/_emulator/stats")
            real = _real_run(instance, resources, first, last)
            loaded, sent = _metadata(real, "gladly_customer_profiles"), _metadata(real, "gladly_activity_items")
            assert (loaded["created"], loaded["matched_existing"], loaded["updated"]) == (len(creates), {"email": 1}, 1)
            assert sent["sent"] == len(activity) and sent["failed"] == 0
            now = _gladly(url, "/_emulator/stats")
            assert now["customer_profiles_created"] - stats["customer_profiles_created"] == len(creates)
            assert now["activity_items_created"] - stats["activity_items_created"] == len(activity)
            # under the planned ids, with the planned bodies
            for body in creates:
                made = client.request("GET", f"/customer-profiles/{body['id']}").json()
                assert [_originals(made, part) for part in ("emails", "phones")] == [_originals(body, part) for part in ("emails", "phones")]
            for write in activity:
                made = client.request("GET", f"/conversation-items/{write['body']['id']}").json()
                assert (made["content"]["title"], made["content"]["body"]) == (write["body"]["content"]["title"],
                                                                              write["body"]["content"]["body"])
            assert all(set(instance.get_materialized_partitions(k)) == set(days) for k in (PROFILES, ACTIVITY))
