"""Readback of a sample run: every item of the sample's tickets found once, in source order.

The full `reconciliation_report` compares the whole source with the target; a sample loads only a
few customers on purpose, so it is checked on its own tickets instead. No Dagster import.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from migration_pipeline.lib import ledger_keys, markers
from migration_pipeline.lib.http import VendorAPIError
from migration_pipeline.lib.staging.db import StagingDatabase, ledger, ticket_items
from migration_pipeline.vendors.unthread.client import UnthreadClient


@dataclass
class SampleReadback:
    tickets: int = 0
    conversations_read: int = 0
    expected_items: int = 0
    found_items: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not (self.missing or self.duplicates or self.out_of_order)

    def summary(self) -> str:
        return (
            f"sample readback: {self.tickets} tickets, {self.conversations_read} conversations read, "
            f"{self.found_items}/{self.expected_items} items found, {len(self.missing)} missing, "
            f"{len(self.duplicates)} duplicated, {len(self.out_of_order)} conversations out of order"
        )


def sample_readback(db: StagingDatabase, client: UnthreadClient, ticket_ids: list[str]) -> SampleReadback:
    """Read every sample ticket's conversation back from the target and compare with staging."""
    result = SampleReadback(tickets=len(ticket_ids))
    for ticket_id in ticket_ids:
        with db.engine.connect() as conn:
            expected = [
                r[0]
                for r in conn.execute(
                    sa.select(ticket_items.c.item_id)
                    .where(ticket_items.c.ticket_id == ticket_id)
                    .order_by(ticket_items.c.ts, ticket_items.c.item_id)
                )
            ]
            row = conn.execute(
                sa.select(ledger.c.target_id, ledger.c.state).where(ledger.c.source_key == ledger_keys.ticket(ticket_id))
            ).first()
        result.expected_items += len(expected)
        seen: list[str] = []
        if row is not None and row.state == "done":
            try:
                for message in client.iter_messages(row.target_id):
                    seen += [m.item_id for m in markers.find(message.get("text") or "") if m.first]
                result.conversations_read += 1
            except VendorAPIError as exc:
                if exc.status != 404:
                    raise
        counts = Counter(seen)
        result.duplicates += [{"item_id": i, "ticket_id": ticket_id, "copies": n} for i, n in counts.items() if n > 1]
        order = {item_id: n for n, item_id in enumerate(expected)}
        found = [i for i in dict.fromkeys(seen) if i in order]
        result.found_items += len(found)
        if found != sorted(found, key=order.__getitem__):
            result.out_of_order.append(ticket_id)
        result.missing += [{"item_id": i, "ticket_id": ticket_id} for i in expected if i not in counts]
    return result
