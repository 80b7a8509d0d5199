"""Cutover job: close in Gladly the conversations the migration loaded (dry run by default).

Register it in `definitions.py` (jobs=[..., gladly_cutover_close]). Launch it from the UI after
the final delta: first as it comes (dry_run: true, the plan CSV only), then with dry_run: false.
The library code is `vendors/gladly/cutover.py`.
"""

from typing import Optional

import dagster as dg
from pydantic import Field

from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.gladly.cutover import STATUSES, CutoverRow, run_cutover
from migration_pipeline.vendors.gladly.resources import GladlyResource
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.pairs.gladly_to_unthread.pair import NAME

PROGRESS_EVERY = 100  # conversations between progress lines in the run log


class CutoverCloseConfig(dg.Config):
    dry_run: bool = Field(default=True, description="True: write the plan CSV only, send nothing to Gladly")
    topic_id: Optional[str] = Field(default=None, description="Gladly topic id added to each conversation before closing")
    force: bool = Field(
        default=False, description="Close even when the customer waits for a response (Gladly's status.force)"
    )


@dg.op(pool="gladly_api")
def close_migrated_gladly_conversations(
    context: dg.OpExecutionContext,
    config: CutoverCloseConfig,
    storage: MigrationStorage,
    staging: StagingResource,
    gladly: GladlyResource,
) -> dg.Output:
    """Close the Gladly conversations whose every ticket and item is loaded (ledger), never one
    that was not migrated; results CSV `conversationId,status,error` in MIGRATION_DATA_DIR/reports/."""
    done = {"n": 0}

    def progress(_row: CutoverRow) -> None:
        done["n"] += 1
        if done["n"] % PROGRESS_EVERY == 0:
            context.log.info(f"{done['n']} conversations handled")

    reports = storage.root / "reports"
    with staging.database(NAME) as db:
        if config.dry_run:
            result = run_cutover(db, None, reports, dry_run=True, run_id=context.run.run_id)
        else:
            with gladly.client() as client:
                result = run_cutover(
                    db, client, reports, dry_run=False, topic_id=config.topic_id, force=config.force,
                    run_id=context.run.run_id, progress=progress,
                )
    context.log.info(result.summary())
    context.log.info(f"results CSV: {result.csv_path}")
    metadata: dict[str, dg.MetadataValue] = {s: dg.MetadataValue.int(result.counts[s]) for s in STATUSES}
    metadata["results_csv"] = dg.MetadataValue.path(str(result.csv_path))
    metadata["dry_run"] = dg.MetadataValue.bool(config.dry_run)
    return dg.Output(None, metadata=metadata)


@dg.job(
    description="Cutover: close in Gladly the conversations migrated to Unthread (optionally adding a topic first), "
    "from the ledger; skipped ones listed with the reason. dry_run (default true) only writes the plan CSV."
)
def gladly_cutover_close():
    close_migrated_gladly_conversations()
