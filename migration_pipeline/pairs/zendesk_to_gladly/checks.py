"""Checks along the Zendesk -> Gladly pipeline, at the stage where a loss happens (the
reconciliation at the end proves every comment of the window):
- `quarantine_rate` (blocking above MIGRATION_MAX_QUARANTINE_RATE): lines of the deliveries that
  hold the window's comments quarantined at staging and not accepted by a reviewer (a truncated
  ticket line takes its comments with it, so the reconciliation's recount cannot see them); a
  warning while few, an error that stops the run past the limit.
"""

import dagster as dg
import sqlalchemy as sa

from migration_pipeline.lib.reconcile.accepted_losses import ACCEPTED_LOSSES_FILE, load_accepted_losses
from migration_pipeline.lib.staging.db import quarantine
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.pairs.day_figures import run_window
from migration_pipeline.pairs.quarantine_check import MAX_QUARANTINE_RATE, QUARANTINE_RATE_ENV, quarantine_rate_result
from migration_pipeline.pairs.zendesk_to_gladly.pair import NAME, key
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.zendesk.staging import deliveries_for



@dg.asset_check(
    asset=key("staged_conversation_items"),
    blocking=True,
    description="Lines of the Zendesk deliveries holding the window's comments quarantined at staging and not "
    f"accepted in {ACCEPTED_LOSSES_FILE}: a warning while they stay within {QUARANTINE_RATE_ENV} "
    f"(now {MAX_QUARANTINE_RATE:.2%} of the lines), an error that stops the run past it.",
)
def quarantine_rate(context: dg.AssetCheckExecutionContext, storage: MigrationStorage,
                    staging: StagingResource) -> dg.AssetCheckResult:
    window = run_window(context)
    q = quarantine.c
    with staging.database(NAME) as db:
        read = deliveries_for(db, window)
        with db.engine.connect() as conn:
            quarantined = {(job, file, int(line)): reason for job, file, line, reason in conn.execute(
                sa.select(q.job_id, q.file_name, q.line_no, q.reason).where(q.job_id.in_(sorted(read))))}
    accepted = load_accepted_losses(storage.root / ACCEPTED_LOSSES_FILE)
    return quarantine_rate_result(quarantined, sum(read.values()), accepted, MAX_QUARANTINE_RATE,
                                  f"the window's {len(read)} deliveries", {"deliveries": dg.MetadataValue.json(sorted(read))})


PAIR_CHECKS = [quarantine_rate]
