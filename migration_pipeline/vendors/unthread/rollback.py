"""Rollback: delete from Unthread what a run, a day range or the sample runs created, driven by
the ledger, so a sample can be wiped before the full migration. No Dagster import.

- Conversations are deleted with their messages (`DELETE /conversations/:id`; Unthread documents
  no per-message delete, so messages go with their conversation). A conversation whose create
  outcome is unknown (`intent`) is looked up by its `metadata.sourceKey` first.
- Customers are deleted last, and only when nothing else of theirs remains: no loaded conversation
  of theirs outside the rollback in the ledger, and no conversation on the target with their id
  (conversations someone else made in the workspace keep their customer).
- Every ledger row of a deleted object (the conversation, its messages, its status) is marked
  `rolled_back` (target id kept for the audit trail), so a later run recreates them, and the same
  rollback run twice finds nothing to do. A 404 on delete counts as already gone.
- Selecting by run id only catches conversations that run created: messages it appended to an
  older conversation cannot be deleted alone; they are listed as kept (roll back by range instead).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from migration_pipeline.lib import ledger_keys
from migration_pipeline.lib.staging.db import StagingDatabase, ledger, now_text, tickets
from migration_pipeline.vendors.unthread.capabilities import CONVERSATION_DELETE, CapabilityStore
from migration_pipeline.lib.staging.sample import SAMPLE_RUN_PREFIX
from migration_pipeline.vendors.unthread.client import UnthreadClient
from migration_pipeline.vendors.unthread.loader import tickets_touching

ROLLED_BACK = "rolled_back"
LIVE_STATES = ("done", "intent")


@dataclass
class Target:
    source_key: str
    target_id: str | None
    state: str
    detail: str = ""


@dataclass
class RollbackPlan:
    selection: str
    conversations: list[Target] = field(default_factory=list)
    customers: list[Target] = field(default_factory=list)  # candidates: deleted only if nothing remains
    kept_messages: list[Target] = field(default_factory=list)
    kept_setup: list[Target] = field(default_factory=list)  # e.g. tags: shared, no documented delete

    @property
    def empty(self) -> bool:
        return not (self.conversations or self.customers)

    def render(self) -> str:
        lines = [f"rollback of {self.selection}:"]
        if self.empty:
            return lines[0] + " nothing in the ledger to delete (already rolled back, or never loaded)\n"
        lines.append(f"  {len(self.conversations)} conversations (with all their messages)")
        lines += [f"    - {t.source_key} -> {t.target_id or '(outcome unknown: looked up first)'}{t.detail}" for t in self.conversations]
        lines.append(f"  {len(self.customers)} customers (each only if no other conversation of theirs remains)")
        lines += [f"    - {t.source_key} -> {t.target_id}" for t in self.customers]
        if self.kept_messages:
            lines.append(
                f"  {len(self.kept_messages)} messages this run added to conversations it did not create are kept "
                "(Unthread has no message delete; roll back the range to remove their conversations)"
            )
            lines += [f"    - {t.source_key} -> {t.target_id}" for t in self.kept_messages[:50]]
        if self.kept_setup:
            lines.append(
                f"  {len(self.kept_setup)} workspace setup objects (tags) are kept: other conversations may use them, "
                "Unthread documents no delete for them, and a later run reuses them"
            )
            lines += [f"    - {t.source_key} -> {t.target_id}" for t in self.kept_setup[:50]]
        return "\n".join(lines) + "\n"


@dataclass
class RollbackResult:
    conversations_deleted: int = 0
    conversations_already_gone: int = 0
    customers_deleted: int = 0
    customers_already_gone: int = 0
    customers_kept: list[str] = field(default_factory=list)
    ledger_rows_rolled_back: int = 0
    skipped_leased: list[str] = field(default_factory=list)
    # the workspace has no conversation DELETE (the preflight's probe): listed, not deleted
    not_deletable: list[str] = field(default_factory=list)
    not_deletable_reason: str = ""

    def render(self) -> str:
        return (
            f"deleted {self.conversations_deleted} conversations ({self.conversations_already_gone} were already gone), "
            f"{self.customers_deleted} customers ({self.customers_already_gone} already gone, "
            f"{len(self.customers_kept)} kept: other conversations remain); "
            f"{self.ledger_rows_rolled_back} ledger rows marked rolled_back"
            + (f"; {len(self.skipped_leased)} tickets skipped (a run is loading them)" if self.skipped_leased else "")
            + (f"; {len(self.not_deletable)} conversations NOT deleted: this workspace has no conversation DELETE "
               f"({self.not_deletable_reason}); delete them in Unthread by hand: {', '.join(self.not_deletable)}"
               if self.not_deletable else "")
        )


def _rows(db: StagingDatabase, where: Any) -> list[Any]:
    with db.engine.connect() as conn:
        return conn.execute(
            sa.select(ledger.c.source_key, ledger.c.target_id, ledger.c.state, ledger.c.entity_type, ledger.c.parent_key)
            .where(where)
            .order_by(ledger.c.source_key)
        ).all()


def plan_rollback(
    db: StagingDatabase, *, run_id: str | None = None, window: tuple[str, str] | None = None, sample: bool = False
) -> RollbackPlan:
    """What a rollback of one run, one [lo, hi) window of item timestamps, or every sample run
    would delete, from the ledger."""
    if sum(x is not None and x is not False for x in (run_id, window, sample)) != 1:
        raise ValueError("choose exactly one of run_id, window, sample")
    live = ledger.c.state.in_(LIVE_STATES)
    if run_id is not None:
        plan = RollbackPlan(f"run {run_id}")
        by_run = ledger.c.run_id == run_id
    elif sample:
        plan = RollbackPlan("every sample run")
        by_run = ledger.c.run_id.like(f"{SAMPLE_RUN_PREFIX}%")
    else:
        plan = RollbackPlan(f"items from {window[0][:10]} to {window[1][:10]} (end exclusive)")  # type: ignore[index]
        by_run = None

    if by_run is not None:
        conversations = _rows(db, sa.and_(by_run, live, ledger.c.entity_type == "conversation"))
        customers = _rows(db, sa.and_(by_run, ledger.c.state == "done", ledger.c.entity_type == "customer"))
        planned = {r.source_key for r in conversations}
        plan.kept_messages = [
            Target(r.source_key, r.target_id, r.state)
            for r in _rows(db, sa.and_(by_run, ledger.c.state == "done", ledger.c.entity_type == "message"))
            if r.parent_key not in planned
        ]
        plan.kept_setup = [
            Target(r.source_key, r.target_id, r.state)
            for r in _rows(db, sa.and_(by_run, ledger.c.state == "done", ledger.c.parent_key.is_(None),
                                       ledger.c.entity_type.notin_(("conversation", "customer", "message"))))
        ]
    else:
        lo, hi = window  # type: ignore[misc]
        keys = [ledger_keys.ticket(t) for t in tickets_touching(db, lo, hi)]
        conversations = []
        for chunk in range(0, len(keys), 500):
            conversations += _rows(
                db, sa.and_(ledger.c.source_key.in_(keys[chunk : chunk + 500]), live, ledger.c.entity_type == "conversation")
            )
        customer_keys = _customer_keys(db, [ledger_keys.parse(r.source_key).id for r in conversations])
        customers = _rows(db, sa.and_(ledger.c.source_key.in_(customer_keys), ledger.c.state == "done"))
    plan.conversations = [Target(r.source_key, r.target_id, r.state) for r in conversations]
    plan.customers = [Target(r.source_key, r.target_id, r.state) for r in customers]
    return plan


def _customer_keys(db: StagingDatabase, ticket_ids: list[str]) -> list[str]:
    """Ledger keys of the customers these tickets were loaded under (`customer:*` in single mode)."""
    found: set[str] = {ledger_keys.single_customer()}
    with db.engine.connect() as conn:
        for chunk in range(0, len(ticket_ids), 500):
            found.update(
                ledger_keys.customer(c)
                for c in conn.execute(
                    sa.select(tickets.c.customer_id.distinct()).where(tickets.c.ticket_id.in_(ticket_ids[chunk : chunk + 500]))
                ).scalars()
            )
    return sorted(found)


def _mark_rolled_back(db: StagingDatabase, keys: list[str], *, children_of: str | None = None) -> int:
    where = ledger.c.source_key.in_(keys)
    if children_of is not None:
        where = sa.or_(where, ledger.c.parent_key == children_of)
    with db.begin() as conn:
        return conn.execute(
            ledger.update().where(where, ledger.c.state != ROLLED_BACK).values(state=ROLLED_BACK, updated_at=now_text())
        ).rowcount


def _customer_still_used(db: StagingDatabase, client: UnthreadClient, customer: Target) -> bool:
    """Anything of this customer's left: a loaded conversation in the ledger, or any on the target."""
    key = customer.source_key
    ticket_keys = sa.select(ledger_keys.ticket_sql(tickets.c.ticket_id))
    if key != ledger_keys.single_customer():
        ticket_keys = ticket_keys.where(tickets.c.customer_id == ledger_keys.parse(key).id)
    with db.engine.connect() as conn:
        in_ledger = conn.execute(
            sa.select(sa.func.count()).where(
                ledger.c.entity_type == "conversation", ledger.c.state.in_(LIVE_STATES), ledger.c.source_key.in_(ticket_keys)
            )
        ).scalar_one()
    if in_ledger:
        return True
    where = [{"field": "customerId", "operator": "==", "value": customer.target_id}]
    return client.count("/conversations/list", where) > 0


def execute_rollback(
    db: StagingDatabase,
    client: UnthreadClient,
    plan: RollbackPlan,
    *,
    progress: Callable[[str], None] | None = None,
    lease_ttl_seconds: float = 120.0,
) -> RollbackResult:
    """Delete what the plan lists (conversations, then customers nobody else uses) and mark the
    ledger. Safe to repeat: gone objects answer 404 and marked rows are not selected again."""
    result = RollbackResult()
    owner = f"rollback:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    missing = {f.name: f for f in CapabilityStore(db).missing()}
    if CONVERSATION_DELETE in missing:
        # Nothing is marked rolled back (the objects are still there); customers with a listed
        # conversation stay too, as _customer_still_used finds them live in the ledger.
        result.not_deletable = [c.target_id or c.source_key for c in plan.conversations]
        result.not_deletable_reason = missing[CONVERSATION_DELETE].detail
    for conversation in plan.conversations if not result.not_deletable else []:
        # Hold the ticket's lease so a load running at the same time cannot add to it meanwhile.
        if not db.try_lease(conversation.source_key, owner, lease_ttl_seconds):
            result.skipped_leased.append(conversation.source_key)
            continue
        try:
            target_id = conversation.target_id
            if conversation.state == "intent" and not target_id:
                found = client.find_one("/conversations/list", "metadata.sourceKey", conversation.source_key)
                target_id = found["id"] if found else None
            if target_id and client.delete_conversation(target_id):
                result.conversations_deleted += 1
            else:
                result.conversations_already_gone += 1
            result.ledger_rows_rolled_back += _mark_rolled_back(
                db, [conversation.source_key], children_of=conversation.source_key
            )
        finally:
            db.release_lease(conversation.source_key, owner)
        if progress:
            progress(conversation.source_key)
    for customer in plan.customers:
        if _customer_still_used(db, client, customer):
            result.customers_kept.append(customer.source_key)
        else:
            if customer.target_id and client.delete_customer(customer.target_id):
                result.customers_deleted += 1
            else:
                result.customers_already_gone += 1
            result.ledger_rows_rolled_back += _mark_rolled_back(db, [customer.source_key])
        if progress:
            progress(customer.source_key)
    return result
