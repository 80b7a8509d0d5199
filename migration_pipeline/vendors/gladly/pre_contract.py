"""The one-time upgrade of a staging database made before the canonical contract.

That release staged only Gladly items, with Gladly's own content type in `kind` and none of the
contract's other columns. When `StagingDatabase.create_schema` adds them (`source_kind` first
among them), it runs the upgrade registered here: every contract column derived from the stored
payloads (the Gladly records, verbatim), as staging them today would. It runs once per such
database and never again. Registered when the Gladly package is imported (its __init__), so
lib/staging/db.py names no source.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from migration_pipeline.lib.staging.db import (
    BULK_BATCH,
    agents,
    conversation_items,
    customers,
    item_columns,
    register_column_upgrade,
    topics,
)
from migration_pipeline.vendors.gladly.parse import SYSTEM, RecordError, parse_item

# The column whose addition marks a pre-contract database (lib/staging/db.py UPGRADE_REQUIRED).
MARKER_COLUMN = "stg_conversation_items.source_kind"
DERIVED = ("kind", "source_kind", "visibility", "text", "html", "subject", "envelope", "transcript_expected", "split_change")


def upgrade_pre_contract_items(conn: Connection) -> None:
    """Fill the contract columns of every item staged without them, and mark every customer,
    agent and topic of that release as Gladly's."""
    c = conversation_items.c
    ids = [r[0] for r in conn.execute(sa.select(c.source_id).where(c.source_kind.is_(None)))]
    for start in range(0, len(ids), BULK_BATCH):
        rows = conn.execute(sa.select(c.source_id, c.payload).where(c.source_id.in_(ids[start : start + BULK_BATCH]))).all()
        updates = []
        for source_id, payload in rows:
            record = json.loads(payload) if isinstance(payload, str) else payload
            try:
                columns = item_columns(parse_item(record))
            except RecordError as error:  # staged once, so it parsed then: say so rather than guess
                raise RuntimeError(f"staged item {source_id} no longer parses ({error}); re-stage its export") from error
            updates.append({"id": source_id, "system": SYSTEM, **{f"v_{k}": columns[k] for k in DERIVED}})
        conn.execute(
            conversation_items.update()
            .where(c.source_id == sa.bindparam("id"))
            .values(source_system=sa.bindparam("system"), **{k: sa.bindparam(f"v_{k}") for k in DERIVED}),
            updates,
        )
    for table in (customers, agents, topics):
        conn.execute(table.update().where(table.c.source_system.is_(None)).values(source_system=SYSTEM))


register_column_upgrade(MARKER_COLUMN, upgrade_pre_contract_items)
