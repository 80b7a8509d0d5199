"""One record's path through every stage, for `migration-pipeline trace ID`. No Dagster import.

Accepts a Gladly item id, customer id, email, conversation id, or an Unthread conversation id,
and answers with the stages it reached, each with what proves it (archive file and line, staged
row, ticket, ledger entry, target id), or where it stopped and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from migration_pipeline.staging.db import (
    StagingDatabase,
    conversation_items,
    customer_lookups,
    customers,
    ledger,
    quarantine,
    ticket_items,
    tickets,
)


@dataclass
class Trace:
    query: str
    kind: str = "unknown"
    steps: list[tuple[str, str]] = field(default_factory=list)

    def add(self, stage: str, detail: str) -> None:
        self.steps.append((stage, detail))

    def render(self) -> str:
        lines = [f"{self.query}: {self.kind}"]
        lines += [f"  {stage:<11} {detail}" for stage, detail in self.steps]
        return "\n".join(lines)


def trace(db: StagingDatabase, query: str) -> Trace:
    result = Trace(query)
    with db.engine.connect() as conn:
        item = conn.execute(sa.select(conversation_items).where(conversation_items.c.source_id == query)).mappings().first()
        if item is not None:
            result.kind = "Gladly conversation item"
            _trace_item(conn, result, item)
            return result
        bad = conn.execute(
            sa.select(quarantine).where(quarantine.c.raw_text.contains(f'"{query}"')).order_by(quarantine.c.job_id)
        ).mappings().all()
        if bad:
            result.kind = "quarantined line(s)"
            for q in bad:
                result.add("archive", f"job {q['job_id']} file {q['file_name']} line {q['line_no']}")
                result.add("quarantine", f"stopped: {q['reason']}")
            return result
        customer = conn.execute(
            sa.select(customers).where(
                sa.or_(customers.c.source_id == query, sa.func.lower(customers.c.primary_email) == query.lower())
            )
        ).mappings().first()
        lookup = conn.execute(sa.select(customer_lookups).where(customer_lookups.c.customer_id == query)).mappings().first()
        if customer is not None or lookup is not None:
            result.kind = "Gladly customer"
            _trace_customer(conn, result, customer["source_id"] if customer else query, customer, lookup)
            return result
        conversation_tickets = conn.execute(
            sa.select(tickets).where(tickets.c.conversation_id == query).order_by(tickets.c.first_ts)
        ).mappings().all()
        if conversation_tickets:
            result.kind = "Gladly conversation"
            for t in conversation_tickets:
                _trace_ticket(conn, result, t)
            return result
        target = conn.execute(sa.select(ledger).where(ledger.c.target_id == query)).mappings().first()
        if target is not None:
            result.kind = f"Unthread {target['entity_type']}"
            result.add("ledger", f"{target['source_key']} -> {query} ({target['state']})")
            if target["source_key"].startswith("ticket:"):
                t = conn.execute(
                    sa.select(tickets).where(tickets.c.ticket_id == target["source_key"].removeprefix("ticket:"))
                ).mappings().first()
                if t is not None:
                    _trace_ticket(conn, result, t)
            return result
    result.add("not found", "no staged item, quarantined line, customer, email, conversation or target id matches")
    return result


def _trace_item(conn, result: Trace, item) -> None:
    result.add("archive", f"job {item['job_id']} file {item['file_name']} line {item['line_no']}")
    result.add("staged", f"{item['kind']} at {item['ts']} customer {item['customer_id']} conversation {item['conversation_id']}")
    lookup = conn.execute(
        sa.select(customer_lookups).where(customer_lookups.c.customer_id == item["customer_id"])
    ).mappings().first()
    if lookup is not None and lookup["status"] == "moved":
        result.add("customer", f"{item['customer_id']} was merged into {lookup['surviving_id']}")
    placed = conn.execute(sa.select(ticket_items).where(ticket_items.c.item_id == item["source_id"])).mappings().first()
    if placed is None:
        result.add("split", "stopped: not in a ticket yet (materialize split_tickets for its day)")
        return
    ticket = conn.execute(sa.select(tickets).where(tickets.c.ticket_id == placed["ticket_id"])).mappings().one()
    position = conn.execute(
        sa.select(sa.func.count()).where(
            ticket_items.c.ticket_id == ticket["ticket_id"],
            sa.or_(ticket_items.c.ts < placed["ts"], sa.and_(ticket_items.c.ts == placed["ts"], ticket_items.c.item_id < placed["item_id"])),
        )
    ).scalar_one()
    result.add("ticket", f"{ticket['ticket_id']} item {position + 1} of {ticket['item_count']} (rule {ticket['rule_version']})")
    conversation = _ledger(conn, f"ticket:{ticket['ticket_id']}")
    result.add("loaded", _describe(conversation, "conversation"))
    rows = conn.execute(
        sa.select(ledger).where(
            sa.or_(ledger.c.source_key == f"message:{item['source_id']}", ledger.c.source_key.like(f"message:{item['source_id']}#%"))
        ).order_by(ledger.c.source_key)
    ).mappings().all()
    if not rows:
        result.add("message", "stopped: not sent yet (materialize unthread_loaded_records)")
    for row in rows:
        result.add("message", _describe(row, "message"))


def _trace_customer(conn, result: Trace, customer_id: str, customer, lookup) -> None:
    if customer is not None:
        result.add("staged", f"{customer['name']!r} <{customer['primary_email']}> from job {customer['job_id']}")
    if lookup is not None:
        if lookup["status"] == "moved":
            result.add("merged", f"into {lookup['surviving_id']} (Gladly 301); its history loads under that customer")
        else:
            result.add("rest", f"GET customer-profiles: {lookup['status']}")
    surviving = lookup["surviving_id"] if lookup is not None else customer_id
    result.add("loaded", _describe(_ledger(conn, f"customer:{surviving}"), "Unthread customer"))
    for t in conn.execute(sa.select(tickets).where(tickets.c.customer_id == surviving).order_by(tickets.c.first_ts)).mappings():
        _trace_ticket(conn, result, t)


def _trace_ticket(conn, result: Trace, ticket) -> None:
    result.add(
        "ticket",
        f"{ticket['ticket_id']} {ticket['first_ts'][:16]}..{ticket['last_ts'][:16]} {ticket['item_count']} items "
        f"-> {_describe(_ledger(conn, 'ticket:' + ticket['ticket_id']), 'conversation')}",
    )


def _ledger(conn, key: str):
    return conn.execute(sa.select(ledger).where(ledger.c.source_key == key)).mappings().first()


def _describe(row, what: str) -> str:
    if row is None:
        return f"stopped: no {what} sent yet"
    if row["state"] == "done":
        return f"{what} {row['target_id']} (ledger {row['source_key']})"
    if row["state"] == "failed":
        return f"stopped: {what} refused by the target: {row['last_error']}"
    return f"in doubt: {what} intent without an id (a crash or lost response); the next run looks it up"
