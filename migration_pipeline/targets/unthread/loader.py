"""Load split tickets into Unthread without ever creating a duplicate. No Dagster import.

Order: customers, then per ticket (oldest first) the conversation with its first item as the
initial message, the remaining items as messages in source order, then the final status.

Ledger protocol (table `ledger`, one row per target object, keyed by a source key):
1. before a create request, an `intent` row is committed;
2. after it, the row is completed (`done`) with the target id;
3. an `intent` found on a later run means the outcome is unknown (crash, lost response): the
   object is looked up on the target by the source key stamped on it — `externalCrmMetadata.id`
   for customers, `metadata.sourceKey` for conversations, a `gladly-item:<id>` marker line in a
   message's text — and only re-sent if it is not there.
A 4xx validation error is recorded as `failed` with the vendor's message and not retried in the
run; the run reports it. Everything stamped on the target names the Gladly source ids.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from markdownify import markdownify

from migration_pipeline.core.http import VendorAPIError
from migration_pipeline.staging.db import (
    StagingDatabase,
    agents,
    conversation_items,
    customers,
    ledger,
    now_text,
    ticket_items,
    tickets,
)
from migration_pipeline.targets.unthread.client import UnthreadClient

STATUS_MAP = {"OPEN": "open", "CLOSED": "closed", "WAITING": "on_hold"}
MARKER = "gladly-item:"
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class LoadSettings:
    triage_channel_id: str
    placeholder_user_id: str | None = None
    # "per_person": one Unthread customer per surviving Gladly customer; "single": all history
    # under one Unthread customer (Unthread customers are organisations, Gladly's are people).
    customer_mode: str = "per_person"
    single_customer_name: str = "Gladly customers"
    max_markdown_chars: int = 40_000
    run_id: str | None = None
    create_attempts: int = 6
    create_backoff_seconds: float = 0.5
    lease_ttl_seconds: float = 120.0  # how long a crashed run's ticket blocks a restart
    max_files_per_message: int = 10
    max_file_bytes: int = 20 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.customer_mode not in ("per_person", "single"):
            raise ValueError(f"customer_mode must be 'per_person' or 'single', got {self.customer_mode!r}")


@dataclass
class LoadCounts:
    customers_created: int = 0
    conversations_created: int = 0
    messages_created: int = 0
    statuses_patched: int = 0
    recovered: int = 0  # intents resolved by finding the object on the target
    tickets_blocked: int = 0  # stopped at a refused message; resumed by the next run
    attachments_uploaded: int = 0
    attachment_bytes: int = 0
    attachments_oversize: int = 0  # over the target's file limit: listed in the message, not uploaded
    waited_for_lease: int = 0  # tickets/customers another run was loading at the same time
    failed: int = 0
    unmatched_agents: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


class Ledger:
    def __init__(self, db: StagingDatabase, run_id: str | None):
        self.db, self.run_id = db, run_id

    def get(self, key: str) -> dict[str, Any] | None:
        with self.db.engine.connect() as conn:
            row = conn.execute(sa.select(ledger).where(ledger.c.source_key == key)).mappings().first()
        return dict(row) if row else None

    def write(self, key: str, entity: str, state: str, *, target_id=None, parent=None, error=None) -> None:
        """One committed upsert; `attempts` counts the intents (requests) ever made for the key."""
        row = {
            "source_key": key,
            "entity_type": entity,
            "parent_key": parent,
            "target_id": target_id,
            "state": state,
            "attempts": 1 if state == "intent" else 0,
            "last_error": error,
            "run_id": self.run_id,
            "updated_at": now_text(),
        }
        with self.db.begin() as conn:
            self.db.upsert(conn, ledger, [row], accumulate=("attempts",))


class UnthreadLoader:
    def __init__(
        self,
        db: StagingDatabase,
        client: UnthreadClient,
        settings: LoadSettings,
        fetch_attachment: Callable[[str, str], bytes] | None = None,
    ):
        """`fetch_attachment(item_id, attachment_id)` downloads a source attachment; without it
        attachments are listed in the message text but not uploaded."""
        self.db, self.client, self.settings = db, client, settings
        self.fetch_attachment = fetch_attachment
        self.ledger = Ledger(db, settings.run_id)
        self.counts = LoadCounts()
        self._users_by_email: dict[str, str] | None = None
        self._agents: dict[str, Any] | None = None
        self._customers: dict[str, Any] = {}
        self.owner = f"{settings.run_id or 'run'}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renewed: dict[str, float] = {}

    # -- leases: one loader at a time per ticket / customer ------------------------------------
    @contextmanager
    def lease(self, key: str) -> Iterator[None]:
        """Hold the lease on `key`, waiting while another live run holds it."""
        waited, deadline = False, time.monotonic() + 10 * self.settings.lease_ttl_seconds
        while not self.db.try_lease(key, self.owner, self.settings.lease_ttl_seconds):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{key} stayed leased by another run for {10 * self.settings.lease_ttl_seconds:.0f}s")
            waited = True
            time.sleep(0.2)
        self.counts.waited_for_lease += waited
        self._renewed[key] = time.monotonic()
        try:
            yield
        finally:
            self._renewed.pop(key, None)
            self.db.release_lease(key, self.owner)

    def renew_leases(self) -> None:
        """Called before each create: keep our leases live during a long ticket."""
        now = time.monotonic()
        for key, at in list(self._renewed.items()):
            if now - at > self.settings.lease_ttl_seconds / 3:
                if not self.db.try_lease(key, self.owner, self.settings.lease_ttl_seconds):
                    raise RuntimeError(f"lost the lease on {key} to another run; stopping before any send")
                self._renewed[key] = now

    # -- the protocol, once for every kind of object -----------------------------------------
    def ensure(
        self,
        key: str,
        entity: str,
        create: Callable[[], dict[str, Any]],
        find: Callable[[], dict[str, Any] | None],
        parent: str | None = None,
    ) -> str | None:
        """The target id for `key`: from the ledger, found on the target, or created now.

        Whenever an earlier attempt's outcome is unknown (an intent left by a crash, a 5xx, a
        dropped connection), the object is looked up before anything is sent again."""
        row = self.ledger.get(key)
        if row and row["state"] == "done":
            return row["target_id"]
        unknown = bool(row and row["state"] == "intent")
        last_error: VendorAPIError | None = None
        for attempt in range(self.settings.create_attempts):
            if unknown:
                found = find()
                if found is not None:
                    self.ledger.write(key, entity, "done", target_id=found["id"], parent=parent)
                    self.counts.recovered += 1
                    return found["id"]
            if attempt:
                time.sleep(min(self.settings.create_backoff_seconds * 2 ** (attempt - 1), 30.0))
            self.renew_leases()
            self.ledger.write(key, entity, "intent", parent=parent)
            try:
                created = create()
            except VendorAPIError as exc:
                if not exc.retryable:
                    self.ledger.write(key, entity, "failed", parent=parent, error=str(exc))
                    self.counts.failed += 1
                    self.counts.errors.append(f"{key}: {exc}")
                    return None
                unknown, last_error = True, exc
                continue
            self.ledger.write(key, entity, "done", target_id=created["id"], parent=parent)
            return created["id"]
        assert last_error is not None
        raise last_error  # the intent stays: the next run looks the object up before re-sending

    # -- customers ---------------------------------------------------------------------------
    def ensure_customer(self, customer_id: str) -> str | None:
        if self.settings.customer_mode == "single":
            return self._ensure_named_customer("*", self.settings.single_customer_name)
        row = self.customer(customer_id)
        name = (row and (row["name"] or row["primary_email"])) or f"Gladly customer {customer_id}"
        return self._ensure_named_customer(customer_id, name)

    def _ensure_named_customer(self, customer_id: str, name: str) -> str | None:
        key = f"customer:{customer_id}"
        row = self.ledger.get(key)
        if row and row["state"] == "done":
            return row["target_id"]
        with self.lease(key):
            return self._create_customer(customer_id, name)

    def _create_customer(self, customer_id: str, name: str) -> str | None:
        stamp = f"gladly:{customer_id}"

        def create() -> dict[str, Any]:
            created = self.client.create_customer({"name": name, "externalCrmMetadata": {"id": stamp}})
            self.counts.customers_created += 1
            return created

        return self.ensure(
            f"customer:{customer_id}",
            "customer",
            create,
            lambda: self.client.find_one("/customers/list", "externalCrmMetadata.id", stamp),
        )

    # -- tickets -----------------------------------------------------------------------------
    def load_tickets(self, ticket_ids: list[str], until: datetime) -> LoadCounts:
        for ticket_id in ticket_ids:
            self.load_ticket(ticket_id, until)
        return self.counts

    def load_ticket(self, ticket_id: str, until: datetime) -> None:
        with self.lease(f"ticket:{ticket_id}"):
            self._load_ticket(ticket_id, until)

    def _load_ticket(self, ticket_id: str, until: datetime) -> None:
        with self.db.engine.connect() as conn:
            ticket = conn.execute(sa.select(tickets).where(tickets.c.ticket_id == ticket_id)).mappings().one()
            items = (
                conn.execute(
                    sa.select(conversation_items)
                    .join(ticket_items, ticket_items.c.item_id == conversation_items.c.source_id)
                    .where(ticket_items.c.ticket_id == ticket_id)
                    .order_by(conversation_items.c.ts, conversation_items.c.source_id)
                )
                .mappings()
                .all()
            )
            later = conn.execute(
                sa.select(sa.func.count()).where(
                    tickets.c.conversation_id == ticket["conversation_id"], tickets.c.first_ts > ticket["first_ts"]
                )
            ).scalar_one()
        if not items:
            return
        customer_target = self.ensure_customer(ticket["customer_id"])
        if customer_target is None:
            return
        key = f"ticket:{ticket_id}"
        first, rest = items[0], items[1:]
        first_parts = self.render(first)
        first_groups = self.attachment_groups(first)

        def create_conversation() -> dict[str, Any]:
            payload = {
                "type": "triage",
                "triageChannelId": self.settings.triage_channel_id,
                "title": self.title(first, ticket),
                "markdown": first_parts[0],
                "status": "open",
                "customerId": customer_target,
                "onBehalfOf": self.on_behalf_of(first),
                "metadata": {
                    "sourceKey": key,
                    "gladlyConversationId": str(ticket["conversation_id"]),
                    "gladlyCustomerId": str(ticket["customer_id"]),
                    "gladlyTicketId": ticket_id,
                },
            }
            files = self.uploads(first, first_groups[0]) if first_groups and len(first_parts) == 1 else None
            created = self.client.create_conversation(payload, files)
            self.counts.conversations_created += 1
            initial = created.get("initialMessage") or {}
            self.ledger.write(
                _message_key(first["source_id"], 0, len(first_parts)),
                "message",
                "done",
                target_id=initial.get("id") or created["id"],
                parent=key,
            )
            return created

        conversation_id = self.ensure(
            key, "conversation", create_conversation, lambda: self.client.find_one("/conversations/list", "metadata.sourceKey", key)
        )
        if conversation_id is None:
            return
        if self.ledger.get(_message_key(first["source_id"], 0, len(first_parts))) is None:
            # The conversation was found rather than created (a lost response or a crash): its
            # initial message exists, so record it from the target.
            markers = self.markers_in_conversation(conversation_id)
            marker = _marker(first["source_id"], 0, len(first_parts))
            if marker in markers:
                self.ledger.write(
                    _message_key(first["source_id"], 0, len(first_parts)), "message", "done",
                    target_id=markers[marker], parent=key,
                )
        for item in items:
            parts = first_parts if item is first else self.render(item)
            groups = first_groups if item is first else self.attachment_groups(item)
            # Text parts first, then any further groups of files (10 a message) right after them.
            sends = [(index, body, groups[0] if groups and index == len(parts) - 1 else None) for index, body in enumerate(parts)]
            sends += [
                (f"f{n + 1}", f"📎 Attachments {n + 1}/{len(groups)} of the message above\n\n`{MARKER}{item['source_id']}#f{n + 1}`", group)
                for n, group in enumerate(groups[1:], start=1)
            ]
            for index, body, group in sends:
                if item is first and index == 0:
                    continue
                if isinstance(index, str):
                    mkey, marker = f"message:{item['source_id']}#{index}", f"{MARKER}{item['source_id']}#{index}"
                else:
                    mkey, marker = _message_key(item["source_id"], index, len(parts)), _marker(item["source_id"], index, len(parts))

                def find_message(marker=marker) -> dict[str, Any] | None:
                    target = self.markers_in_conversation(conversation_id).get(marker)
                    return {"id": target} if target else None

                def create_message(body=body, item=item, group=group) -> dict[str, Any]:
                    payload: dict[str, Any] = {"body": {"type": "markdown", "value": body}, "onBehalfOf": self.on_behalf_of(item)}
                    if item["kind"] == "CONVERSATION_NOTE":
                        payload["isPrivateNote"] = True
                    created = self.client.create_message(conversation_id, payload, self.uploads(item, group) if group else None)
                    self.counts.messages_created += 1
                    return created

                if self.ensure(mkey, "message", create_message, find_message, parent=key) is None:
                    # Refused for good: stop this ticket here so that, once the cause is fixed,
                    # the next run sends this message and the rest still in source order.
                    self.counts.tickets_blocked += 1
                    return
        self.ensure_status(ticket_id, conversation_id, self.final_status(items, later > 0, until))

    def markers_in_conversation(self, conversation_id: str) -> dict[str, str]:
        """Source item marker -> Unthread message id, for every message of a conversation."""
        return {
            marker: message["id"]
            for message in self.client.iter_messages(conversation_id)
            for marker in _markers_in(message.get("text") or "")
        }

    def ensure_status(self, ticket_id: str, conversation_id: str, status: str) -> None:
        key = f"status:{ticket_id}"
        row = self.ledger.get(key)
        if row and row["state"] == "done" and row["target_id"] == status:
            return
        self.ledger.write(key, "status", "intent", parent=f"ticket:{ticket_id}")
        self.client.patch_conversation(conversation_id, {"status": status})  # idempotent: safe to repeat
        self.counts.statuses_patched += 1
        self.ledger.write(key, "status", "done", target_id=status, parent=f"ticket:{ticket_id}")

    # -- mapping -----------------------------------------------------------------------------
    @staticmethod
    def final_status(items, has_later_ticket: bool, until: datetime) -> str:
        for item in reversed(items):
            if item["kind"] == "CONVERSATION_STATUS_CHANGE":
                value = str((item["payload"].get("content") or {}).get("status", "")).upper()
                if value in STATUS_MAP:
                    return STATUS_MAP[value]
        return "closed" if has_later_ticket else "open"

    def title(self, first, ticket) -> str:
        if first["subject"]:
            return str(first["subject"])[:200]
        return f"Gladly {first['channel'] or first['kind'].lower()} conversation from {first['ts'][:10]}"

    def agent(self, agent_id: str) -> Any:
        if self._agents is None:  # a few hundred rows: read once per run, not once per message
            with self.db.engine.connect() as conn:
                self._agents = {r["source_id"]: r for r in conn.execute(sa.select(agents)).mappings()}
        return self._agents.get(agent_id)

    def customer(self, customer_id: str) -> Any:
        if customer_id not in self._customers:
            with self.db.engine.connect() as conn:
                self._customers[customer_id] = (
                    conn.execute(sa.select(customers).where(customers.c.source_id == customer_id)).mappings().first()
                )
        return self._customers[customer_id]

    def users_by_email(self) -> dict[str, str]:
        if self._users_by_email is None:
            self._users_by_email = {
                u["email"].strip().lower(): u["id"] for u in self.client.list_users() if isinstance(u.get("email"), str)
            }
        return self._users_by_email

    def on_behalf_of(self, item) -> dict[str, Any]:
        if item["author_type"] == "agent" and item["author_id"]:
            agent = self.agent(item["author_id"])
            email = (agent["email"] or "").strip().lower() if agent else ""
            user_id = self.users_by_email().get(email)
            if user_id:
                return {"id": user_id}
            self.counts.unmatched_agents.add(item["author_id"])
            if self.settings.placeholder_user_id:
                return {"id": self.settings.placeholder_user_id}
            return {"name": (agent and agent["name"]) or f"Gladly agent {item['author_id']}"}
        customer = self.customer(item["customer_id"])
        who: dict[str, Any] = {"name": (customer and customer["name"]) or f"Gladly customer {item['customer_id']}"}
        email = customer and customer["primary_email"]
        if email and EMAIL_RE.match(email):
            who["email"] = email.lower()
        return who

    def attachment_groups(self, item) -> list[list[dict[str, Any]]]:
        """The item's uploadable attachments in groups of at most max_files_per_message."""
        if self.fetch_attachment is None:
            return []
        fits = [a for a in item["attachments"] or [] if (a.get("size") or 0) <= self.settings.max_file_bytes]
        size = self.settings.max_files_per_message
        return [fits[i : i + size] for i in range(0, len(fits), size)]

    def uploads(self, item, group: list[dict[str, Any]]) -> list[tuple[str, bytes, str]]:
        """Download a group of source attachments (only when actually sending)."""
        files = []
        for attachment in group:
            content = self.fetch_attachment(item["source_id"], attachment["source_id"])  # type: ignore[misc]
            files.append(
                (attachment.get("filename") or attachment["source_id"], content, attachment.get("content_type") or "application/octet-stream")
            )
            self.counts.attachments_uploaded += 1
            self.counts.attachment_bytes += len(content)
        return files

    def attachment_notes(self, item) -> list[str]:
        """Lines for attachments the target cannot take, so nothing is dropped silently."""
        notes = []
        limit_mb = self.settings.max_file_bytes / (1024 * 1024)
        for attachment in item["attachments"] or []:
            size = attachment.get("size") or 0
            name = attachment.get("filename") or attachment["source_id"]
            if size > self.settings.max_file_bytes:
                self.counts.attachments_oversize += 1
                notes.append(
                    f"📎 {name} ({size / (1024 * 1024):.1f} MB) is over Unthread's {limit_mb:.0f} MB file limit: "
                    f"not uploaded; it stays in the Gladly export archive (attachment {attachment['source_id']})."
                )
            elif self.fetch_attachment is None:
                notes.append(f"📎 {name} ({size} bytes): not uploaded in this run (attachment {attachment['source_id']}).")
        return notes

    def render(self, item) -> list[str]:
        """Markdown for one item, split into parts when over the target's limit (never truncated)."""
        author = {"customer": "Customer", "agent": "Agent", "system": "System", "external": "External"}[item["author_type"]]
        header = f"**{author}** · {item['kind']} · {item['ts'][:19].replace('T', ' ')} UTC"
        if item["html"]:
            body = markdownify(item["html"], heading_style="ATX").strip()
        else:
            body = (item["text"] or "").strip()
        if not body:
            body = _describe(item)
        if item["subject"]:
            body = f"*{item['subject']}*\n\n{body}"
        notes = self.attachment_notes(item)
        if notes:
            body = body + "\n\n" + "\n".join(notes)
        room = self.settings.max_markdown_chars - len(header) - 120
        chunks = [body[i : i + room] for i in range(0, len(body), room)] or [""]
        total = len(chunks)
        return [
            f"{header}{f' (part {n + 1}/{total})' if total > 1 else ''}\n\n{chunk}\n\n`{_marker(item['source_id'], n, total)}`"
            for n, chunk in enumerate(chunks)
        ]


def _describe(item) -> str:
    content = item["payload"].get("content") or {}
    details = {k: v for k, v in content.items() if k != "type" and isinstance(v, (str, int, float, bool))}
    return "; ".join(f"{k}: {v}" for k, v in sorted(details.items())) or f"({item['kind']})"


def _message_key(item_id: str, index: int, total: int) -> str:
    return f"message:{item_id}" if total == 1 else f"message:{item_id}#{index + 1}"


def _marker(item_id: str, index: int, total: int) -> str:
    return f"{MARKER}{item_id}" if total == 1 else f"{MARKER}{item_id}#{index + 1}"


def _markers_in(text: str) -> list[str]:
    return re.findall(r"`(" + re.escape(MARKER) + r"[^`]+)`", text)


def tickets_touching(db: StagingDatabase, lo: str, hi: str) -> list[str]:
    """Tickets holding at least one item of [lo, hi), oldest first."""
    query = (
        sa.select(tickets.c.ticket_id)
        .where(sa.exists().where(ticket_items.c.ticket_id == tickets.c.ticket_id, ticket_items.c.ts >= lo, ticket_items.c.ts < hi))
        .order_by(tickets.c.first_ts, tickets.c.ticket_id)
    )
    with db.engine.connect() as conn:
        return [r[0] for r in conn.execute(query)]
