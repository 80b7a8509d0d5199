"""Resolve Gladly customers over REST where the export lacks facts: merges and custom attributes.

The export's `customers.jsonl` has no merge information and no custom attributes, so each
customer id the pipeline meets is looked up once with GET customer-profiles/{id} (10 requests
per second org-wide, so only ids never looked up before), cached in `customer_lookups`, and:
- a 301 (`meta.new`) marks the id merged into the surviving profile, which is looked up too;
- a profile fills in custom attributes and creates the staged customer if no export line had it;
- an answer that cannot be staged (held to the rules of an export line: no NUL, column widths) is
  recorded `unusable` with its reason and changes nothing staged.
No Dagster import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from migration_pipeline.lib.jsonl import unstorable
from migration_pipeline.vendors.gladly.client import CustomerLookup, GladlyClient
from migration_pipeline.vendors.gladly.parse import RecordError, parse_customer
from migration_pipeline.lib.staging.widths import column_widths
from migration_pipeline.vendors.gladly.staging import check_widths, customer_row
from migration_pipeline.lib.staging.db import (
    StagingDatabase,
    conversation_items,
    customer_lookups,
    customers,
    now_text,
)

MAX_MERGE_CHAIN = 10


@dataclass
class ResolveCounts:
    looked_up: int = 0
    merged: int = 0
    not_found: int = 0
    unusable: list[str] = field(default_factory=list)  # "<id>: <reason>" for answers that cannot be staged


def customer_ids_needing_lookup(db: StagingDatabase, lo: str, hi: str) -> list[str]:
    """Customers referenced by items in [lo, hi) or staged without a lookup yet, sorted."""
    seen = sa.select(customer_lookups.c.customer_id)
    from_items = sa.select(conversation_items.c.customer_id).where(
        conversation_items.c.ts >= lo, conversation_items.c.ts < hi, conversation_items.c.customer_id.not_in(seen)
    )
    from_customers = sa.select(customers.c.source_id).where(customers.c.source_id.not_in(seen))
    with db.engine.connect() as conn:
        ids = {r[0] for r in conn.execute(from_items.distinct())} | {r[0] for r in conn.execute(from_customers)}
    return sorted(ids)


def resolve_customers(db: StagingDatabase, client: GladlyClient, ids: list[str]) -> ResolveCounts:
    counts = ResolveCounts()
    pending = list(ids)
    depth: dict[str, int] = {i: 0 for i in ids}
    while pending:
        customer_id = pending.pop(0)
        lookup = client.get_customer(customer_id)
        counts.looked_up += 1
        problem = unusable_answer(lookup)
        if problem is not None:
            # The same rules as an export line: what PostgreSQL would refuse is refused on both
            # engines, and this customer keeps its export row (if any) instead of failing the step.
            counts.unusable.append(f"{customer_id}: {problem}")
            with db.begin() as conn:
                db.upsert(conn, customer_lookups, [{
                    "customer_id": customer_id, "status": "unusable", "moved_to": None, "surviving_id": customer_id,
                    "profile": None, "detail": problem, "fetched_at": now_text(),
                }])
            continue
        row = {
            "customer_id": customer_id,
            "status": lookup.status,
            "moved_to": lookup.moved_to,
            "surviving_id": lookup.moved_to or customer_id,
            "profile": lookup.profile.model_dump(mode="json", by_alias=True) if lookup.profile else None,
            "fetched_at": now_text(),
        }
        with db.begin() as conn:
            db.upsert(conn, customer_lookups, [row])
            if lookup.status == "moved" and lookup.moved_to:
                counts.merged += 1
                conn.execute(
                    customers.update().where(customers.c.source_id == customer_id).values(merged_into=lookup.moved_to)
                )
                survivor = lookup.moved_to
                if depth[customer_id] < MAX_MERGE_CHAIN and not _looked_up(conn, survivor) and survivor not in depth:
                    depth[survivor] = depth[customer_id] + 1
                    pending.append(survivor)
            elif lookup.status == "found" and lookup.profile is not None:
                _merge_profile(db, conn, lookup.profile.model_dump(mode="json", by_alias=True))
            else:
                counts.not_found += 1
    if counts.merged:
        compress_merge_chains(db)
    return counts


def unusable_answer(lookup: CustomerLookup) -> str | None:
    """Why a REST answer cannot be staged as it is (a NUL or lone surrogate anywhere, JSON nested
    too deep, a merge target or field wider than its staging column), or None."""
    if lookup.status == "moved":
        moved_to = lookup.moved_to or ""
        width = customer_lookups.c.moved_to.type.length
        if len(moved_to) > width or unstorable({"new": moved_to}):
            return f"the merge target id is not storable ({len(moved_to)} characters; at most {width}, no NUL)"
        return None
    if lookup.status != "found" or lookup.profile is None:
        return None
    profile = lookup.profile.model_dump(mode="json", by_alias=True)
    problem = unstorable(profile)
    if problem is not None:
        return f"profile: {problem}"
    try:
        check_widths(customer_row(profile, None, now_text()), column_widths(customers))
    except RecordError as exc:
        return f"profile: {exc}"
    return None


def compress_merge_chains(db: StagingDatabase) -> None:
    """A merged into B merged into C: both A and B survive as C (in lookups and staged customers)."""
    with db.begin() as conn:
        moved = dict(
            conn.execute(
                sa.select(customer_lookups.c.customer_id, customer_lookups.c.moved_to).where(
                    customer_lookups.c.status == "moved"
                )
            ).all()
        )
        for customer_id in moved:
            survivor, hops = moved[customer_id], 0
            while survivor in moved and hops < MAX_MERGE_CHAIN:
                survivor, hops = moved[survivor], hops + 1
            conn.execute(
                customer_lookups.update()
                .where(customer_lookups.c.customer_id == customer_id)
                .values(surviving_id=survivor)
            )
            conn.execute(customers.update().where(customers.c.source_id == customer_id).values(merged_into=survivor))


def _looked_up(conn, customer_id: str) -> bool:
    query = sa.select(customer_lookups.c.customer_id).where(customer_lookups.c.customer_id == customer_id)
    return conn.execute(query).first() is not None


def _merge_profile(db: StagingDatabase, conn, profile: dict) -> None:
    parsed = parse_customer(profile)
    existing = conn.execute(sa.select(customers).where(customers.c.source_id == parsed.source_id)).mappings().first()
    if existing is None:
        db.upsert(conn, customers, [{**customer_row(profile, None, now_text()), "merged_into": None}])
    else:
        conn.execute(
            customers.update()
            .where(customers.c.source_id == parsed.source_id)
            .values(custom_attributes=parsed.custom_attributes)
        )
