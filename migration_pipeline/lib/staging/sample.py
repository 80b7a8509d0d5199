"""Sample runs: pick the messiest customers from staging and the tickets to load for them.

A sample takes the N customers whose history is hardest to migrate (`rpt_messiest_customers.sql`:
most items, most channels, merged profiles, bad emails, attachments) through split -> load ->
readback into a target of the user's choice, for a mapping review before the full run. Ledger rows
written by a sample carry the run id `sample:<run id>` so `migration-pipeline rollback --sample`
can find and wipe them. No Dagster import.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from migration_pipeline.lib.staging.db import StagingDatabase, conversation_items, ticket_items, tickets
from migration_pipeline.lib.staging.sql import run_model

SAMPLE_RUN_PREFIX = "sample:"


def sample_run_id(run_id: str) -> str:
    """The ledger run id of a sample run (fits the ledger's 64-character column)."""
    return f"{SAMPLE_RUN_PREFIX}{run_id}"[:64]


def messiest_customers(db: StagingDatabase, n: int) -> list[dict[str, Any]]:
    """The `n` messiest surviving customers with their scores, messiest first (stable order)."""
    if n <= 0:
        return []
    return run_model(db, "rpt_messiest_customers", n=n)


def tickets_of_customers(db: StagingDatabase, customer_ids: list[str], lo: str, hi: str) -> list[str]:
    """Tickets of these customers holding at least one item of [lo, hi), oldest first (the
    loader's order)."""
    if not customer_ids:
        return []
    query = (
        sa.select(tickets.c.ticket_id)
        .where(tickets.c.customer_id.in_(customer_ids))
        .where(sa.exists().where(ticket_items.c.ticket_id == tickets.c.ticket_id, ticket_items.c.ts >= lo, ticket_items.c.ts < hi))
        .order_by(tickets.c.first_ts, tickets.c.ticket_id)
    )
    with db.engine.connect() as conn:
        return [r[0] for r in conn.execute(query)]


def staged_span(db: StagingDatabase) -> tuple[str, str] | None:
    """[first item ts, last item ts] in staging, or None when nothing is staged."""
    with db.engine.connect() as conn:
        lo, hi = conn.execute(sa.select(sa.func.min(conversation_items.c.ts), sa.func.max(conversation_items.c.ts))).one()
    return (lo, hi) if lo else None
