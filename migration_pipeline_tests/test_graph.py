"""The whole asset graph against both emulators, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from migration_pipeline.definitions import defs
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.sources.gladly.resources import GladlyResource
from migration_pipeline.staging.db import StagingDatabase, conversation_items, ledger, ticket_items, tickets
from migration_pipeline.staging.resources import StagingResource
from migration_pipeline.synth.dataset import DatasetLayout, read_json
from migration_pipeline.targets.unthread.resources import UnthreadResource
from migration_pipeline_tests.conftest import DATASET_END, GLADLY_TOKEN, GLADLY_USER, UNTHREAD_KEY

FIRST = (DATASET_END - timedelta(days=20)).isoformat()
LAST = (DATASET_END - timedelta(days=1)).isoformat()


class Rehearsal:
    def __init__(self, dataset, gladly, unthread, data_dir, staging_url):
        self.dataset, self.gladly, self.unthread = dataset, gladly, unthread
        workspace = read_json(DatasetLayout(dataset).unthread_workspace)
        self.resources = {
            "gladly": GladlyResource(
                base_url=gladly.url, api_user=GLADLY_USER, api_token=GLADLY_TOKEN, requests_per_second=50,
                backoff_initial_seconds=0.02, backoff_max_seconds=0.2,
            ),
            "unthread": UnthreadResource(
                base_url=f"{unthread.url}/api", api_key=UNTHREAD_KEY,
                triage_channel_id=workspace["triageChannels"][0]["id"], requests_per_second=500,
                backoff_initial_seconds=0.02, backoff_max_seconds=0.2,
            ),
            "storage": MigrationStorage(data_dir=str(data_dir)),
            "staging": StagingResource(url=staging_url),
        }
        self.staging_url = staging_url

    def run(self, first=FIRST, last=LAST):
        result = dg.materialize(
            list(defs.assets),
            resources=self.resources,
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
            raise_on_error=False,
        )
        assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        return result

    def stats(self) -> dict:
        return httpx.get(f"{self.unthread.url}/_emulator/stats").json()

    def db(self) -> StagingDatabase:
        return StagingDatabase(self.staging_url)


@pytest.fixture
def rehearsal(small_dataset, gladly_server_factory, unthread_server_factory, tmp_path, staging_url):
    # Gladly's real limit is 10/s; the rehearsal lifts it so the suite stays quick.
    gladly = gladly_server_factory(small_dataset, rate_limit_per_second=1000)
    unthread = unthread_server_factory(read_json(DatasetLayout(small_dataset).unthread_workspace))
    return Rehearsal(small_dataset, gladly, unthread, tmp_path / "pipeline", staging_url)


def _counts(r: Rehearsal) -> dict[str, int]:
    db = r.db()
    try:
        return {
            "items": db.count(conversation_items),
            "ticket_items": db.count(ticket_items),
            "tickets": db.count(tickets),
            "conversations_done": db.count(ledger, sa.and_(ledger.c.entity_type == "conversation", ledger.c.state == "done")),
            "messages_done": db.count(ledger, sa.and_(ledger.c.entity_type == "message", ledger.c.state == "done")),
            "failed": db.count(ledger, ledger.c.state == "failed"),
        }
    finally:
        db.dispose()


def test_full_range_migrates_everything_once_and_a_rerun_changes_nothing(rehearsal):
    rehearsal.run()
    counts = _counts(rehearsal)
    manifest = read_json(DatasetLayout(rehearsal.dataset).manifest)
    assert counts["items"] == manifest["counts"]["items"]
    assert counts["ticket_items"] == counts["items"]
    assert counts["failed"] == 0
    stats = rehearsal.stats()
    assert stats["conversations"] == counts["tickets"] == counts["conversations_done"]
    assert stats["messages"] == counts["messages_done"] >= counts["items"]

    rehearsal.run()
    assert rehearsal.stats() == stats, "a second run of the same range must create nothing"
    assert _counts(rehearsal) == counts


def test_one_more_day_only_does_that_days_work(rehearsal):
    before_last = (DATASET_END - timedelta(days=2)).isoformat()
    rehearsal.run(FIRST, before_last)
    first_stats, first_counts = rehearsal.stats(), _counts(rehearsal)
    rehearsal.run(LAST, LAST)
    stats, counts = rehearsal.stats(), _counts(rehearsal)
    new_items = counts["items"] - first_counts["items"]
    assert new_items > 0
    assert stats["messages"] - first_stats["messages"] == counts["messages_done"] - first_counts["messages_done"]
    assert counts["messages_done"] - first_counts["messages_done"] >= new_items
    # items continuing an open ticket joined it rather than starting a new ticket each
    assert counts["tickets"] - first_counts["tickets"] < new_items
