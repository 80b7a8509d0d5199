"""The whole graph against an Unthread workspace that offers only the confirmed API surface (the
emulator's strict mode: no tag API, no file read-back, no author on read-back messages, no
`isPrivateNote`, no conversation DELETE, users listed by id and email only), on SQLite and
PostgreSQL: a range, then one-day deltas, then the whole range again.

What must hold there is what holds on the permissive emulator (every message once, in order,
attributed where the read-back can show it, nothing lost) — and the run is green, the missing
features are warnings with their reasons, and a re-run sends nothing, not even a probe."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from migration_pipeline.pairs.gladly_to_unthread.assets.reconciliation_report import (
    ATTACHMENT_CHECK,
    ATTRIBUTION_CHECK,
    CAPABILITIES_CHECK,
    TAG_CHECK,
)
from migration_pipeline.lib.staging.db import StagingDatabase, conversation_items, ledger, target_capabilities, tickets
from sim.synth.dataset import DatasetLayout, read_json
from migration_pipeline.vendors.unthread.capabilities import PROBE_KEY
from migration_pipeline.pairs.gladly_to_unthread.pair import NAME as GLADLY_TO_UNTHREAD
from migration_pipeline_tests.conftest import DATASET_END
from migration_pipeline_tests.rehearsal import FIRST, LAST, Rehearsal, target_keys

# What the strict emulator lacks, as the preflight must find it (sim/emulators/unthread/strict.py).
MISSING = {"tags", "tags_on_create", "tags_on_update", "file_read_back", "message_author", "private_notes",
           "conversation_delete"}
LIMIT_CHECKS = {TAG_CHECK, ATTACHMENT_CHECK, ATTRIBUTION_CHECK, CAPABILITIES_CHECK}


@pytest.fixture
def strict_rehearsal(small_dataset, gladly_server_factory, unthread_server_factory, tmp_path, staging_url):
    gladly = gladly_server_factory(small_dataset, rate_limit_per_second=1000)
    unthread = unthread_server_factory(read_json(DatasetLayout(small_dataset).unthread_workspace), strict=True)
    return Rehearsal(small_dataset, gladly, unthread, tmp_path / "pipeline", staging_url)


def _requests(r: Rehearsal) -> list[dict]:
    return httpx.get(f"{r.unthread.url}/_emulator/requests").json()


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def _without_probe(keys: dict[str, list[str]]) -> dict[str, list[str]]:
    return {**keys, "conversations": [k for k in keys["conversations"] if not k.startswith(PROBE_KEY)]}


def test_a_range_and_one_day_deltas_on_a_strict_workspace_load_everything_once_green_with_its_limits_listed(
    strict_rehearsal, loaded_states, staging_url
):
    r = strict_rehearsal
    before_last = (DATASET_END - timedelta(days=3)).isoformat()
    runs = [r.run(FIRST, before_last)]
    db = StagingDatabase(r.staging_url, GLADLY_TO_UNTHREAD)
    try:
        with db.engine.connect() as conn:
            found = {row.name: row.supported for row in conn.execute(sa.select(target_capabilities))}
            first_tickets = conn.execute(sa.select(sa.func.count()).select_from(tickets)).scalar_one()
            first_items = conn.execute(sa.select(sa.func.count()).select_from(conversation_items)).scalar_one()
        assert {name for name, ok in found.items() if not ok} == MISSING
        assert found["conversation_metadata"] and found["metadata_lookup"] and found["metadata_on_update"]

        # two one-day deltas, the everyday job before cutover
        for day in ((DATASET_END - timedelta(days=2)).isoformat(), LAST):
            runs.append(r.run(day, day))
        for result in runs:
            checks = _checks(result)
            errors = {n: c.description for n, c in checks.items() if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR}
            assert not errors, errors  # nothing lost, duplicated, out of order or misattributed
        warned = {n: c.description for n, c in _checks(runs[0]).items() if not c.passed}
        assert set(warned) == LIMIT_CHECKS, warned
        assert all(c.severity == dg.AssetCheckSeverity.WARN for c in _checks(runs[0]).values() if not c.passed)
        assert "metadata.gladlyTags" in warned[TAG_CHECK] and "not verifiable" in warned[ATTACHMENT_CHECK]
        assert "no author" in warned[ATTRIBUTION_CHECK]

        # everything arrived once: the same items, conversations and customers as a clean whole-range
        # run on the permissive emulator, although this one was loaded in three partitions
        truth = loaded_states.get("sqlite" if staging_url.startswith("sqlite") else "postgresql").target_keys
        assert _without_probe(target_keys(r.unthread.url)) == truth
        with db.engine.connect() as conn:
            items = conn.execute(sa.select(sa.func.count()).select_from(conversation_items)).scalar_one()
            all_tickets = conn.execute(sa.select(sa.func.count()).select_from(tickets)).scalar_one()
            failed = conn.execute(sa.select(sa.func.count()).select_from(ledger).where(ledger.c.state == "failed")).scalar_one()
        assert failed == 0
        # items of the deltas that continue a ticket open at the partition boundary joined it
        assert items > first_items and all_tickets - first_tickets < items - first_items

        # the whole range again: nothing is sent, and no probe is repeated
        seen = len(_requests(r))
        again = r.run()
        assert not [c for c in _checks(again).values() if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
        sent = [e for e in _requests(r)[seen:] if e["method"] in ("POST", "PATCH", "DELETE") and not e["path"].endswith("/list")]
        assert sent == [], sent[:5]
        assert not [e for e in _requests(r)[seen:] if "/tags" in e["path"] or "/files/" in e["path"]]

        # a rollback on this workspace cannot delete: it lists, deletes nothing, marks nothing
        from migration_pipeline.vendors.unthread.client import UnthreadClient
        from migration_pipeline.vendors.unthread.rollback import execute_rollback, plan_rollback
        from migration_pipeline_tests.conftest import UNTHREAD_KEY

        plan = plan_rollback(db, window=(FIRST, LAST))
        stats = httpx.get(f"{r.unthread.url}/_emulator/stats").json()
        with UnthreadClient(f"{r.unthread.url}/api", UNTHREAD_KEY, requests_per_second=500) as client:
            undone = execute_rollback(db, client, plan)
        assert len(undone.not_deletable) == len(plan.conversations) > 0 and "405" in undone.not_deletable_reason
        assert undone.conversations_deleted == undone.customers_deleted == undone.ledger_rows_rolled_back == 0
        assert httpx.get(f"{r.unthread.url}/_emulator/stats").json() == stats
    finally:
        db.dispose()
