"""One record's path through every stage, for `migration-pipeline trace ID`. No Dagster import.

Accepts a Gladly item id, customer id, email, conversation id, or an Unthread conversation id,
and answers with the stages it reached, each with what proves it (archive file and line, staged
row, ticket, ledger entry, target id), or where it stopped and why. Given an Unthread client it
also reads the record back from Unthread now (`readback` steps): the item's message found by its
`gladly-item:` marker, the conversation, the customer by its `externalCrmMetadata.id` stamp.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from migration_pipeline.lib import ledger_keys, markers
from migration_pipeline.lib.http import VendorAPIError

from migration_pipeline.lib.staging.db import (
    StagingDatabase,
    conversation_items,
    customer_lookups,
    customers,
    ledger,
    quarantine,
    ticket_items,
    tickets,
)
from migration_pipeline.vendors.unthread.client import UnthreadClient


@dataclass
class Trace:
    query: str
    kind: str = "unknown"
    steps: list[tuple[str, str]] = field(default_factory=list)

    def add(self, stage: str, detail: str) -> None:
        self.steps.append((stage, detail))

    @property
    def found(self) -> bool:
        return self.kind != "unknown"

    def render(self) -> str:
        lines = [f"{self.query}: {self.kind}"]
        lines += [f"  {stage:<11} {detail}" for stage, detail in self.steps]
        return "\n".join(lines)

    def render_markdown(self) -> str:
        """The same trace as a markdown table (the Dagster UI's view of it)."""
        def cell(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")

        lines = [f"### Trace of `{cell(self.query)}`: {cell(self.kind)}", "", "| stage | detail |", "|---|---|"]
        lines += [f"| {cell(stage)} | {cell(detail)} |" for stage, detail in self.steps]
        return "\n".join(lines) + "\n"


def trace(db: StagingDatabase, query: str, client: UnthreadClient | None = None) -> Trace:
    """Follow `query` through every stage; with `client`, also read it back from Unthread now."""
    result = Trace(query)
    readback = _Readback(client, result)
    with db.engine.connect() as conn:
        item = conn.execute(sa.select(conversation_items).where(conversation_items.c.source_id == query)).mappings().first()
        if item is not None:
            result.kind = "Gladly conversation item"
            _trace_item(conn, result, item, readback)
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
            _trace_customer(conn, result, customer["source_id"] if customer else query, customer, lookup, readback)
            return result
        conversation_tickets = conn.execute(
            sa.select(tickets).where(tickets.c.conversation_id == query).order_by(tickets.c.first_ts)
        ).mappings().all()
        if conversation_tickets:
            result.kind = "Gladly conversation"
            for t in conversation_tickets:
                _trace_ticket(conn, result, t, readback)
            return result
        target = conn.execute(sa.select(ledger).where(ledger.c.target_id == query)).mappings().first()
        if target is not None:
            result.kind = f"Unthread {target['entity_type']}"
            result.add("ledger", f"{target['source_key']} -> {query} ({target['state']})")
            key = ledger_keys.parse(target["source_key"])
            if key.entity == ledger_keys.TICKET:
                t = conn.execute(sa.select(tickets).where(tickets.c.ticket_id == key.id)).mappings().first()
                if t is not None:
                    _trace_ticket(conn, result, t, readback)
                else:
                    readback.conversation(target)
            elif key.entity == ledger_keys.CUSTOMER:
                readback.customer(key.id, target)
            return result
    result.add("not found", "no staged item, quarantined line, customer, email, conversation or target id matches")
    return result


def _trace_item(conn, result: Trace, item, readback: "_Readback") -> None:
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
    conversation = _ledger(conn, ledger_keys.ticket(ticket["ticket_id"]))
    result.add("loaded", _describe(conversation, "conversation"))
    item_id = item["source_id"]
    parts = ledger.c.source_key.like(ledger_keys.message_parts_like(item_id), escape=ledger_keys.LIKE_ESCAPE)
    rows = [
        row
        for row in conn.execute(
            sa.select(ledger).where(sa.or_(ledger.c.source_key == ledger_keys.message(item_id), parts)).order_by(ledger.c.source_key)
        ).mappings()
        if ledger_keys.parse(row["source_key"]).id == item_id  # SQLite's LIKE ignores case
    ]
    if not rows:
        result.add("message", "stopped: not sent yet (materialize unthread_loaded_records)")
    for row in rows:
        result.add("message", _describe(row, "message"))
    readback.item(item["source_id"], conversation)


def _trace_customer(conn, result: Trace, customer_id: str, customer, lookup, readback: "_Readback") -> None:
    if customer is not None:
        result.add("staged", f"{customer['name']!r} <{customer['primary_email']}> from job {customer['job_id']}")
    if lookup is not None:
        if lookup["status"] == "moved":
            result.add("merged", f"into {lookup['surviving_id']} (Gladly 301); its history loads under that customer")
        else:
            result.add("rest", f"GET customer-profiles: {lookup['status']}")
    surviving = lookup["surviving_id"] if lookup is not None else customer_id
    loaded = _ledger(conn, ledger_keys.customer(surviving))
    result.add("loaded", _describe(loaded, "Unthread customer"))
    readback.customer(surviving, loaded)
    for t in conn.execute(sa.select(tickets).where(tickets.c.customer_id == surviving).order_by(tickets.c.first_ts)).mappings():
        _trace_ticket(conn, result, t, readback)


def _trace_ticket(conn, result: Trace, ticket, readback: "_Readback") -> None:
    conversation = _ledger(conn, ledger_keys.ticket(ticket["ticket_id"]))
    result.add(
        "ticket",
        f"{ticket['ticket_id']} {ticket['first_ts'][:16]}..{ticket['last_ts'][:16]} {ticket['item_count']} items "
        f"-> {_describe(conversation, 'conversation')}",
    )
    if conversation is not None and conversation["state"] == "done":
        readback.conversation(conversation["target_id"])


class _Readback:
    """`readback` steps: is the record on Unthread now? Skipped (and said so) without a client."""

    def __init__(self, client: UnthreadClient | None, result: Trace):
        self.client, self.result = client, result
        self.said_skipped = False

    def _available(self) -> bool:
        if self.client is None:
            if not self.said_skipped:
                self.result.add("readback", "not checked (no Unthread connection: set UNTHREAD_BASE_URL and UNTHREAD_API_KEY)")
                self.said_skipped = True
            return False
        return True

    def item(self, item_id: str, conversation) -> None:
        if conversation is None or conversation["state"] != "done" or not self._available():
            return
        target = conversation["target_id"]
        try:
            found = [
                message["id"]
                for message in self.client.iter_messages(target)
                if any(m.item_id == item_id for m in markers.find(message.get("text") or "", any_part=True))
            ]
        except VendorAPIError as exc:
            if exc.status != 404:
                raise
            self.result.add("readback", f"MISSING: conversation {target} is gone from Unthread (404)")
            return
        if found:
            self.result.add("readback", f"found on Unthread now: message {', '.join(found)} in conversation {target}")
        else:
            self.result.add("readback", f"MISSING: no message of conversation {target} carries `{markers.marker(item_id)}`")

    def conversation(self, target: str) -> None:
        if not self._available():
            return
        if self.client.get_conversation(target) is None:
            self.result.add("readback", f"MISSING: conversation {target} is gone from Unthread (404)")
        else:
            self.result.add("readback", f"conversation {target} found on Unthread now")

    def customer(self, customer_id: str, loaded) -> None:
        if loaded is None or loaded["state"] != "done" or not self._available():
            return
        stamp = markers.customer_stamp(customer_id)
        body = {"select": ["id"], "where": [{"field": "externalCrmMetadata.id", "operator": "==", "value": stamp}]}
        ids = [row["id"] for row in self.client.iter_list("/customers/list", body)]
        if not ids:
            self.result.add("readback", f"MISSING: no Unthread customer stamped {stamp}")
        elif len(ids) > 1:
            self.result.add("readback", f"DUPLICATE: {len(ids)} Unthread customers stamped {stamp}: {', '.join(ids)}")
        else:
            self.result.add("readback", f"customer {ids[0]} found on Unthread now ({stamp})")


def _ledger(conn, key: str):
    return conn.execute(sa.select(ledger).where(ledger.c.source_key == key)).mappings().first()


def _describe(row, what: str) -> str:
    if row is None:
        return f"stopped: no {what} sent yet"
    if row["state"] == "done":
        run = f", run {row['run_id'][:8]}" if row["run_id"] else ""
        retried = f", {row['attempts']} attempts" if (row["attempts"] or 0) > 1 else ""
        return f"{what} {row['target_id']} (ledger {row['source_key']}{run}{retried})"
    if row["state"] == "failed":
        return f"stopped: {what} refused by the target: {row['last_error']}"
    return f"in doubt: {what} intent without an id (a crash or lost response); the next run looks it up"
