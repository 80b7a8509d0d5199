"""Load split tickets into Unthread without ever creating a duplicate. No Dagster import.

Order: customers, then per ticket (oldest first) the conversation with its first item as the
initial message, the remaining items as messages in source order, then the final status.

Exactly once through the ledger protocol and leases of lib/ledger.py (`ExactlyOnce`): an object
whose create's outcome is unknown is looked up by the source key stamped on it —
`externalCrmMetadata.id` for customers, `metadata.sourceKey` for conversations, a
`gladly-item:<id>` marker line in a message's text — and only re-sent if it is not there.
A write refused for good is recorded as `failed` and the run reports it. Everything stamped on
the target names the Gladly source ids.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from migration_pipeline.contract import system_name
from migration_pipeline.lib import ledger_keys, markers, notes
from migration_pipeline.lib.content import Converted, html_to_markdown, load_rules, neutralize_text, text_to_markdown
from migration_pipeline.lib.downloads import DownloadedFile, FileDownloadError, FileTooLarge, redact_urls_in
from migration_pipeline.lib.http import VendorAPIError
from migration_pipeline.lib.ledger import ExactlyOnce
from migration_pipeline.pairs.gladly_to_unthread.mappings import Mappings, TypeChoice, load_mappings, topics_of_ticket
from migration_pipeline.lib.splitting import decode_change
from migration_pipeline.lib.staging.db import (
    StagingDatabase,
    agents,
    attachment_transfers,
    conversation_items,
    customers,
    now_text,
    surviving_customers,
    ticket_items,
    tickets,
    topics,
)
from migration_pipeline.vendors.unthread.capabilities import (
    FILE_READ_BACK,
    METADATA_ON_UPDATE,
    PRIVATE_NOTES,
    TAGS,
    TAGS_ON_CREATE,
    TAGS_ON_UPDATE,
    CapabilityStore,
    without_refused_fields,
)
from migration_pipeline.vendors.unthread.client import UnthreadClient, Upload

log = logging.getLogger(__name__)
# The contract's columns, so no target reads the source record (`payload`) nor carries its weight.
TARGET_COLUMNS = tuple(c for c in conversation_items.c if c.name != "payload")
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
    # Conversation types other than triage need their channel settings (mappings.yaml says which
    # source channel wants which type); without them the conversation is created in triage.
    email_inbox_id: str | None = None
    slack_channel_id: str | None = None
    mappings_file: str | None = None  # MIGRATION_MAPPINGS_FILE via the resource; None: the packaged tables
    content_rules_file: str | None = None  # MIGRATION_CONTENT_RULES_FILE via the resource; None: the packaged rules
    verify_uploads: bool = True  # read every uploaded file back and record its sha256

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
    # fidelity (counted when a message is sent, so a re-run that sends nothing counts nothing)
    content_types: Counter[str] = field(default_factory=Counter)  # items sent, by the source's own type
    unknown_types: Counter[str] = field(default_factory=Counter)  # content types this code does not know
    quotes_trimmed: int = 0
    signatures_trimmed: int = 0
    inline_images_uploaded: int = 0
    transcripts_included: int = 0
    private_notes: int = 0
    type_fallbacks: Counter[str] = field(default_factory=Counter)  # reason -> conversations
    conversation_types: Counter[str] = field(default_factory=Counter)
    tags_created: int = 0
    tag_patches: int = 0
    tags_in_metadata: int = 0  # conversations whose topic names went to metadata.gladlyTags (no tag API)
    topic_changes_not_written: int = 0  # the workspace takes neither tags nor metadata on update
    notes_not_private: int = 0  # notes/calls posted without isPrivateNote (the workspace lacks it)
    uploads_verified: int = 0
    checksum_mismatches: int = 0
    uploads_unverified: int = 0
    uploads_unverifiable: int = 0  # the workspace offers no file read-back
    # content made inert so it cannot act in Slack (core.content.NEUTRALIZED_KINDS: mentions,
    # unsafe links, raw HTML, forged markers), by kind, counted like the rest when sent
    neutralized: Counter[str] = field(default_factory=Counter)


@dataclass
class Uploads:
    """What goes out with one message: its files (open until it is sent) and a line in its text
    for each file that cannot go (over the target's limit once downloaded); counted once sent."""

    files: list[Upload] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    attachments: int = 0
    attachment_bytes: int = 0
    inline_images: int = 0
    oversize: int = 0
    neutralized: Counter[str] = field(default_factory=Counter)  # in the notes

    def text(self, markdown: str) -> str:
        """`markdown` with the notes added just above its closing marker line."""
        if not self.notes:
            return markdown
        head, sep, marker = markdown.rpartition("\n\n`")
        lines = "\n".join(self.notes)
        return f"{head}\n\n{lines}{sep}{marker}" if sep else f"{markdown}\n\n{lines}"


class UnthreadLoader(ExactlyOnce):
    def __init__(
        self,
        db: StagingDatabase,
        client: UnthreadClient,
        settings: LoadSettings,
        fetch_attachment: Callable[..., DownloadedFile | bytes] | None = None,
        fetch_transcript: Callable[[str], Any] | None = None,
    ):
        """`fetch_attachment(item_id, attachment_id, max_bytes=N)` downloads a source attachment
        (a `DownloadedFile` streamed to disk, or bytes), raising VendorAPIError when it cannot
        (`FileTooLarge` past N bytes); without it attachments are listed in the message text but
        not uploaded. `fetch_transcript(item_id)` returns a call's transcript (paragraphs with
        speaker and text) or None."""
        self.client, self.settings = client, settings
        self.counts = LoadCounts()
        super().__init__(
            db, settings.run_id, counts=self.counts, create_attempts=settings.create_attempts,
            create_backoff_seconds=settings.create_backoff_seconds, lease_ttl_seconds=settings.lease_ttl_seconds,
        )
        self.fetch_attachment = fetch_attachment
        self.fetch_transcript = fetch_transcript
        self.mappings: Mappings = load_mappings(settings.mappings_file)
        self.rules = load_rules(settings.content_rules_file)
        self._prepared: dict[str, Converted] = {}
        self._topic_names: dict[str, str] | None = None
        self._tag_ids: dict[str, str] = {}
        self.caps = CapabilityStore(db)  # what the preflight found the workspace supports
        self._users_by_email: dict[str, str] | None = None
        self._agents: dict[str, Any] | None = None
        self._customers: dict[str, Any] = {}
        self._survivors: dict[str, str | None] = {}

    # -- customers ---------------------------------------------------------------------------
    def ensure_customer(self, customer_id: str) -> str | None:
        if self.settings.customer_mode == "single":
            return self._ensure_named_customer(ledger_keys.SINGLE_CUSTOMER_ID, self.settings.single_customer_name)
        row = self.customer(customer_id)
        name = (row and (row["name"] or row["primary_email"])) or f"Gladly customer {customer_id}"
        return self._ensure_named_customer(customer_id, name)

    def _ensure_named_customer(self, customer_id: str, name: str) -> str | None:
        key = ledger_keys.customer(customer_id)
        row = self.ledger.get(key)
        if row and row["state"] == "done":
            return row["target_id"]
        with self.lease(key):
            return self._create_customer(customer_id, name)

    def _create_customer(self, customer_id: str, name: str) -> str | None:
        stamp = markers.customer_stamp(customer_id)

        def create() -> dict[str, Any]:
            created = self.client.create_customer({"name": name, "externalCrmMetadata": {"id": stamp}})
            self.counts.customers_created += 1
            return created

        return self.ensure(
            ledger_keys.customer(customer_id),
            "customer",
            create,
            lambda: self.client.find_one("/customers/list", "externalCrmMetadata.id", stamp),
        )

    # -- tickets -----------------------------------------------------------------------------
    def load_ticket(self, ticket_id: str, until: datetime) -> None:
        with self.lease(ledger_keys.ticket(ticket_id)):
            self._load_ticket(ticket_id, until)

    def _load_ticket(self, ticket_id: str, until: datetime) -> None:
        with self.db.engine.connect() as conn:
            ticket = conn.execute(sa.select(tickets).where(tickets.c.ticket_id == ticket_id)).mappings().one()
            items = (
                conn.execute(
                    sa.select(*TARGET_COLUMNS)
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
        key = ledger_keys.ticket(ticket_id)
        self._prepared.clear()
        first = items[0]
        first_parts = self.render(first)
        first_groups = self.attachment_groups(first)
        topic_ids = self.ticket_topics(ticket, items)
        tag_ids = [t for t in (self.ensure_tag(topic) for topic in topic_ids) if t]
        choice = self.conversation_type(first)
        metadata = self.conversation_metadata(ticket_id, ticket, topic_ids, choice)
        first_part = _part(0, len(first_parts))
        first_mkey = ledger_keys.message(first["source_id"], first_part)
        first_group = first_groups[0] if first_groups and len(first_parts) == 1 else None
        sent: dict[str, Any] = {}

        def create_conversation() -> dict[str, Any]:
            payload = {
                "type": choice.type,
                **self.channel_fields(choice.type),
                "title": self.title(first, ticket),
                "markdown": first_parts[0],
                "status": "open",
                "customerId": customer_target,
                "onBehalfOf": self.on_behalf_of(first),
                "metadata": metadata,
            }
            if tag_ids:
                # assumed: tags are set by id on create (unconfirmed, facts file §4.4): left out
                # where the workspace refused them; ensure_tags then PATCHes them or keeps names.
                payload["tags"] = tag_ids

            def send(markdown: str, files: list[Upload] | None) -> dict[str, Any]:
                return without_refused_fields(
                    self.caps, lambda body: self.client.create_conversation(body, files),
                    {**payload, "markdown": markdown}, {TAGS_ON_CREATE: "tags"}, rewind=lambda: _rewind(files),
                )

            created = self.send_with_files(first, first_group, first_mkey, first_parts[0], send)
            set_tags = tag_ids if self.caps.supports(TAGS_ON_CREATE) else []
            self.counts.tags_in_metadata += "gladlyTags" in metadata
            sent[first_mkey] = created.get("initialMessage") or {}
            self.counts.conversations_created += 1
            self.counts.conversation_types[choice.type] += 1
            if choice.reason:
                self.counts.type_fallbacks[choice.reason] += 1
            self.count_sent(first, 0)
            initial = created.get("initialMessage") or {}
            self.ledger.write(first_mkey, "message", "done", target_id=initial.get("id") or created["id"], parent=key)
            self.ledger.write(ledger_keys.tags(ticket_id), "tags", "done", target_id=_digest(set_tags, metadata), parent=key)
            return created

        conversation_id = self.ensure(
            key, "conversation", create_conversation, lambda: self.client.find_one("/conversations/list", "metadata.sourceKey", key)
        )
        if conversation_id is None:
            return
        if self.ledger.get(first_mkey) is None:
            # The conversation was found rather than created (a lost response or a crash): its
            # initial message exists, so record it from the target.
            found = self.markers_in_conversation(conversation_id)
            marker = markers.marker(first["source_id"], first_part)
            if marker in found:
                self.ledger.write(first_mkey, "message", "done", target_id=found[marker], parent=key)
        if first_group:
            initial = self.ledger.get(first_mkey)
            if initial and initial["state"] == "done":
                self.verify_transfers(conversation_id, initial["target_id"], first, first_group, sent.get(first_mkey))
        for item in items:
            parts = first_parts if item is first else self.render(item)
            groups = first_groups if item is first else self.attachment_groups(item)
            # Text parts first, then any further groups of files (10 a message) right after them.
            sends = [(index, body, groups[0] if groups and index == len(parts) - 1 else None) for index, body in enumerate(parts)]
            sends += [
                (f"f{n + 1}", f"📎 Attachments {n + 1}/{len(groups)} of the message above\n\n{markers.stamp(item['source_id'], f'f{n + 1}')}", group)
                for n, group in enumerate(groups[1:], start=1)
            ]
            for index, body, group in sends:
                if item is first and index == 0:
                    continue
                part = index if isinstance(index, str) else _part(index, len(parts))
                mkey, marker = ledger_keys.message(item["source_id"], part), markers.marker(item["source_id"], part)

                def find_message(marker=marker) -> dict[str, Any] | None:
                    target = self.markers_in_conversation(conversation_id).get(marker)
                    return {"id": target} if target else None

                def create_message(body=body, item=item, group=group, mkey=mkey, index=index) -> dict[str, Any]:
                    payload: dict[str, Any] = {"body": {"type": "markdown", "value": body}, "onBehalfOf": self.on_behalf_of(item)}
                    if item["visibility"] == "private":
                        payload["isPrivateNote"] = True

                    def send(text: str, files: list[Upload] | None) -> dict[str, Any]:
                        return without_refused_fields(
                            self.caps, lambda b: self.client.create_message(conversation_id, b, files),
                            {**payload, "body": {"type": "markdown", "value": text}}, {PRIVATE_NOTES: "isPrivateNote"},
                            rewind=lambda: _rewind(files),
                        )

                    created = self.send_with_files(item, group, mkey, body, send)
                    if "isPrivateNote" in payload and not self.caps.supports(PRIVATE_NOTES):
                        self.counts.notes_not_private += 1
                    sent[mkey] = created
                    self.counts.messages_created += 1
                    if index == 0:
                        self.count_sent(item, 0)
                    return created

                target = self.ensure(mkey, "message", create_message, find_message, parent=key)
                if target is None:
                    # Refused for good: stop this ticket here so that, once the cause is fixed,
                    # the next run sends this message and the rest still in source order.
                    self.counts.tickets_blocked += 1
                    return
                if group:
                    self.verify_transfers(conversation_id, target, item, group, sent.get(mkey))
        self.ensure_tags(ticket_id, conversation_id, tag_ids, lambda: self.conversation_metadata(ticket_id, ticket, topic_ids, choice))
        self.ensure_status(ticket_id, conversation_id, self.final_status(items, later > 0, until, self.mappings))

    def markers_in_conversation(self, conversation_id: str) -> dict[str, str]:
        """Source item marker -> Unthread message id, for every message of a conversation."""
        return {
            found.text: message["id"]
            for message in self.client.iter_messages(conversation_id)
            for found in markers.find(message.get("text") or "")
        }

    def ensure_status(self, ticket_id: str, conversation_id: str, status: str) -> None:
        key, parent = ledger_keys.status(ticket_id), ledger_keys.ticket(ticket_id)
        row = self.ledger.get(key)
        if row and row["state"] == "done" and row["target_id"] == status:
            return
        self.ledger.write(key, "status", "intent", parent=parent)
        self.client.patch_conversation(conversation_id, {"status": status})  # idempotent: safe to repeat
        self.counts.statuses_patched += 1
        self.ledger.write(key, "status", "done", target_id=status, parent=parent)

    # -- mapping -----------------------------------------------------------------------------
    @staticmethod
    def final_status(items, has_later_ticket: bool, until: datetime, mappings: Mappings | None = None) -> str:
        table = (mappings or load_mappings()).status
        for item in reversed(items):
            if item["kind"] == "status_change":
                value = decode_change(item["split_change"])[0] or ""
                if value in table:
                    return table[value]
        return "closed" if has_later_ticket else "open"

    def conversation_type(self, first) -> TypeChoice:
        """The Unthread type for a ticket from its first item's channel (mappings.yaml), only when
        the type's required settings exist; otherwise triage, with the reason."""
        configured = {"triage": True, "email": bool(self.settings.email_inbox_id), "slack": bool(self.settings.slack_channel_id)}
        who = self.on_behalf_of(first, count=False)
        choice = self.mappings.conversation_type(first["channel"], configured, bool(who.get("email") or who.get("id")))
        if choice.reason and choice.reason not in self.counts.type_fallbacks:
            log.info("conversation type %s", choice.reason)
        return choice

    def channel_fields(self, kind: str) -> dict[str, Any]:
        if kind == "email":
            # Unthread's clients send the triage channel with email conversations too (facts §3.1).
            return {"emailInboxId": self.settings.email_inbox_id, "triageChannelId": self.settings.triage_channel_id}
        if kind == "slack":
            return {"channelId": self.settings.slack_channel_id}
        return {"triageChannelId": self.settings.triage_channel_id}

    def conversation_metadata(self, ticket_id: str, ticket, topic_ids: list[str], choice: TypeChoice) -> dict[str, str]:
        """Source ids stamped on the conversation (a string map): ticket, conversation, customer,
        the Gladly topic ids behind its tags, and the mapping tables' version."""
        metadata = {
            "sourceKey": ledger_keys.ticket(ticket_id),
            "gladlyConversationId": str(ticket["conversation_id"]),
            "gladlyCustomerId": str(ticket["customer_id"]),
            "gladlyTicketId": ticket_id,
            "mappingVersion": self.mappings.version,
        }
        if ticket.get("rule_version"):
            metadata["splitRuleVersion"] = str(ticket["rule_version"])
            metadata["splitReason"] = str(ticket.get("cut_reason") or "first")
        previous = ticket.get("previous_ticket_id")
        if previous:  # a reopen after dormancy links back to the ticket it reopens
            metadata["gladlyReopensTicketId"] = str(previous)
            row = self.ledger.get(ledger_keys.ticket(previous))
            if row and row["state"] == "done" and row["target_id"]:
                metadata["reopensUnthreadConversationId"] = str(row["target_id"])
        if topic_ids:
            metadata["gladlyTopicIds"] = ",".join(topic_ids)
            if not self.tags_attachable():
                metadata["gladlyTags"] = json.dumps(sorted({self.topic_name(t) for t in topic_ids}), ensure_ascii=False)
        if choice.reason:
            metadata["conversationTypeFallback"] = choice.reason
        return metadata

    # -- topics → tags -----------------------------------------------------------------------
    def topic_names(self) -> dict[str, str]:
        """Gladly topic id -> flattened tag name, from stg_topics (read once per run)."""
        if self._topic_names is None:
            with self.db.engine.connect() as conn:
                rows = conn.execute(sa.select(topics.c.source_id, topics.c.name, topics.c.parent_id)).mappings().all()
            self._topic_names = self.mappings.topic_names(rows)
        return self._topic_names

    def topic_name(self, topic_id: str) -> str:
        return self.mappings.topic_name(topic_id, self.topic_names())

    def ticket_topics(self, ticket, items) -> list[str]:
        """The Gladly topic ids the ticket carried (core.mappings.topics_of_ticket)."""
        return ticket_topic_ids(self.db, ticket, {i["source_id"] for i in items})

    def tags_attachable(self) -> bool:
        """Whether topics can become tags on this workspace and stay equal to them: a tag API and
        tags taken on update (on create too, or else PATCHed right after it). Otherwise the names
        are kept in metadata (`gladlyTags`)."""
        return self.caps.supports(TAGS) and self.caps.supports(TAGS_ON_UPDATE)

    def ensure_tag(self, topic_id: str) -> str | None:
        """The Unthread tag for a Gladly topic (ledger `tag:<topic id>`), created once; None where
        the workspace has no tag API (found by the preflight, or refused now: recorded, and the
        ticket goes on without it)."""
        if topic_id in self._tag_ids:
            return self._tag_ids[topic_id]
        if not self.tags_attachable():
            return None
        name = self.topic_name(topic_id)

        def create() -> dict[str, Any]:
            created = self.client.create_tag({"name": name})
            self.counts.tags_created += 1
            return created

        key = ledger_keys.tag(topic_id)
        row = self.ledger.get(key)
        if row and row["state"] == "done":
            target = row["target_id"]
        else:
            try:
                with self.lease(key):
                    target = self.ensure(key, "tag", create, lambda: self.client.find_one("/tags/list", "name", name), optional=True)
            except VendorAPIError as exc:
                if exc.retryable:  # unanswered: the intent stays, the next run looks the tag up first
                    log.warning("tag %s for topic %s not created in this run: %s", name, topic_id, exc)
                    return None
                self.caps.refused(TAGS, exc, "a tag")
                self.ledger.forget(key)
                return None
        if target:
            self._tag_ids[topic_id] = target
        return target

    def ensure_tags(self, ticket_id: str, conversation_id: str, tag_ids: list[str], metadata_of: Callable[[], dict[str, str]]) -> None:
        """Keep the conversation's tags (and the topic ids in its metadata) equal to the ticket's
        topics: PATCHed only when they changed since they were last set (e.g. a late topic change).
        Only what the workspace takes is sent; a refused field is recorded and left out, never
        stopping the ticket."""
        key, parent = ledger_keys.tags(ticket_id), ledger_keys.ticket(ticket_id)
        for _ in range(2):  # a second pass when a refusal moved the tag names into metadata
            metadata = metadata_of()
            body: dict[str, Any] = {}
            if self.caps.supports(TAGS) and self.caps.supports(TAGS_ON_UPDATE):
                body["tags"] = tag_ids
            if self.caps.supports(METADATA_ON_UPDATE):
                body["metadata"] = metadata
            digest = _digest(body.get("tags", []), metadata)
            row = self.ledger.get(key)
            if row and row["state"] == "done" and row["target_id"] == digest:
                return
            if row is None and not tag_ids:
                return
            if not body:
                self.counts.topic_changes_not_written += 1
                return
            attachable = self.tags_attachable()
            self.ledger.write(key, "tags", "intent", parent=parent)
            # assumed: PATCH takes tag ids and replaces the map of metadata whole (facts §3.3, §4.4)
            try:
                without_refused_fields(
                    self.caps, lambda b: self.client.patch_conversation(conversation_id, b), body,
                    {TAGS_ON_UPDATE: "tags", METADATA_ON_UPDATE: "metadata"},
                )
            except VendorAPIError as exc:
                if exc.retryable:
                    raise
                self.ledger.write(key, "tags", "failed", parent=parent, error=str(exc))
                self.counts.failed += 1
                self.counts.errors.append(f"{key}: {exc}")
                return
            self.counts.tag_patches += 1
            sent = _digest(body["tags"] if self.caps.supports(TAGS_ON_UPDATE) and "tags" in body else [], metadata)
            self.ledger.write(key, "tags", "done", target_id=sent, parent=parent)
            if self.tags_attachable() == attachable:
                return

    def title(self, first, ticket) -> str:
        if first["subject"]:
            return neutralize_text(str(first["subject"])[:200])
        return f"{system_name(first['source_system'])} {first['channel'] or first['source_kind'].lower()} conversation from {first['ts'][:10]}"

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

    def person(self, customer_id: str) -> Any:
        """The profile an item's customer is today: for a merged-away Gladly profile the one it
        was merged into (its emails moved there; the old one may not even be staged), else its own."""
        if customer_id not in self._survivors:
            with self.db.engine.connect() as conn:
                self._survivors[customer_id] = surviving_customers(conn, [customer_id]).get(customer_id)
        survivor = self._survivors[customer_id]
        if survivor:
            surviving = self.customer(survivor)
            if surviving is not None:
                return surviving
        return self.customer(customer_id)

    def users_by_email(self) -> dict[str, str]:
        if self._users_by_email is None:
            self._users_by_email = {
                u["email"].strip().lower(): u["id"] for u in self.client.list_users() if isinstance(u.get("email"), str)
            }
        return self._users_by_email

    def on_behalf_of(self, item, count: bool = True) -> dict[str, Any]:
        if item["author_type"] == "agent" and item["author_id"]:
            agent = self.agent(item["author_id"])
            email = (agent["email"] or "").strip().lower() if agent else ""
            user_id = self.users_by_email().get(email)
            if user_id:
                return {"id": user_id}
            if count:
                self.counts.unmatched_agents.add(item["author_id"])
            if self.settings.placeholder_user_id:
                return {"id": self.settings.placeholder_user_id}
            return {"name": (agent and agent["name"]) or f"{system_name(item['source_system'])} agent {item['author_id']}"}
        customer = self.person(item["customer_id"])
        who: dict[str, Any] = {"name": (customer and customer["name"]) or f"{system_name(item['source_system'])} customer {item['customer_id']}"}
        email = customer and customer["primary_email"]
        if email and EMAIL_RE.match(email):
            who["email"] = email.lower()
        return who

    def unmatched_agent_details(self) -> list[dict[str, Any]]:
        """The Gladly agents with no Unthread user (by email), for the run's report."""
        out = []
        for agent_id in sorted(self.counts.unmatched_agents):
            agent = self.agent(agent_id)
            out.append({
                "id": agent_id,
                "name": agent["name"] if agent else None,
                "email": agent["email"] if agent else None,
                "stand_in": "placeholder user" if self.settings.placeholder_user_id else "name only",
            })
        return out

    # -- content -----------------------------------------------------------------------------
    def prepared(self, item) -> Converted:
        """The item's body as markdown plus files pulled out of it (cached for the ticket).

        A call's transcript is fetched only while its message is not yet loaded, so a re-run
        that sends nothing asks Gladly for nothing."""
        cached = self._prepared.get(item["source_id"])
        if cached is not None:
            return cached
        kind = item["kind"]
        trim = _is_email(item)
        if kind == "call":
            transcript = None
            done = self.ledger.get(ledger_keys.message(item["source_id"]))
            if self.fetch_transcript is not None and item["transcript_expected"] and not (done and done["state"] == "done"):
                transcript = self.fetch_transcript(item["source_id"])
            shown = notes.transcript_markdown(transcript)
            converted = Converted("\n\n".join(t for t in (item["text"] or "", shown) if t))
            converted.trimmed["transcript"] = 1 if shown else 0
        elif kind == "tag_change":
            _, added, removed = decode_change(item["split_change"])
            converted = Converted(notes.tag_change_note(added, removed, self.topic_name))
        elif kind == "status_change":
            converted = Converted(notes.status_change_note(decode_change(item["split_change"])[0], system_name(item["source_system"])))
        elif kind in ("activity", "other"):
            converted = Converted(item["text"] or "")  # the source's rendering (contract)
        elif item["html"]:
            converted = html_to_markdown(item["html"], self.rules, trim=trim)
        else:
            converted = text_to_markdown(item["text"] or "", self.rules, trim=trim)
        header = notes.envelope_header(item["envelope"])
        if header:
            converted.markdown = f"{header}\n\n{converted.markdown}"
        converted.markdown = neutralize_text(converted.markdown, converted.neutralized)  # notes, headers too
        self._prepared[item["source_id"]] = converted
        return converted

    def count_sent(self, item, index: int) -> None:
        """Fidelity counts for an item whose (first part of its) message was just sent."""
        converted = self.prepared(item)
        kind, source_kind = item["kind"], item["source_kind"]
        self.counts.content_types[source_kind] += 1
        if kind == "other":
            self.counts.unknown_types[source_kind] += 1
        if item["visibility"] == "private":
            self.counts.private_notes += 1
        self.counts.quotes_trimmed += converted.quote_trimmed and _is_email(item)
        self.counts.signatures_trimmed += converted.signature_trimmed
        self.counts.neutralized.update(converted.neutralized)
        shown = [item["subject"] if item["subject"] and kind != "activity" else "", *self.attachment_notes(item)]
        neutralize_text("\n".join(shown), self.counts.neutralized)  # what render() adds around the body
        self.counts.transcripts_included += converted.trimmed.get("transcript", 0)
        oversize = [f for f in self.files_of(item) if (f["size"] or 0) > self.settings.max_file_bytes]
        self.counts.attachments_oversize += len(oversize)
        self.record_transfers(item, oversize, None, state="oversize", detail="over the target's file limit: listed in the message, not uploaded")

    def files_of(self, item) -> list[dict[str, Any]]:
        """Every file the item carries: its Gladly attachments and the inline images of its body."""
        files = [
            {
                "attachment_id": a["source_id"],
                "filename": a.get("filename") or a["source_id"],
                "content_type": a.get("content_type") or "application/octet-stream",
                "size": a.get("size") or 0,
                "kind": "attachment",
            }
            for a in item["attachments"] or []
        ]
        for n, image in enumerate(self.prepared(item).images, start=1):
            files.append(
                {
                    "attachment_id": f"inline:{n}",
                    "filename": image.filename,
                    "content_type": image.content_type,
                    "size": len(image.data),
                    "kind": "inline_image",
                    "data": image.data,
                }
            )
        return files

    def attachment_groups(self, item) -> list[list[dict[str, Any]]]:
        """The item's uploadable files in groups of at most max_files_per_message."""
        fits = [
            f
            for f in self.files_of(item)
            if f["size"] <= self.settings.max_file_bytes and (f["kind"] == "inline_image" or self.fetch_attachment is not None)
        ]
        size = self.settings.max_files_per_message
        return [fits[i : i + size] for i in range(0, len(fits), size)]

    def send_with_files(
        self, item, group: list[dict[str, Any]] | None, message_key: str, markdown: str, send: Callable[[str, list[Upload] | None], dict[str, Any]]
    ) -> dict[str, Any]:
        """`send(markdown, files)` with the group's files downloaded just now and closed right
        after; the transfer counts are taken once the message went out."""
        with self.uploads(item, group or [], message_key) as upload:
            created = send(upload.text(markdown), upload.files or None)
        self.counts.attachments_uploaded += upload.attachments
        self.counts.attachment_bytes += upload.attachment_bytes
        self.counts.inline_images_uploaded += upload.inline_images
        self.counts.attachments_oversize += upload.oversize
        self.counts.neutralized.update(upload.neutralized)
        return created

    @contextmanager
    def uploads(self, item, group: list[dict[str, Any]], message_key: str | None = None) -> Iterator[Uploads]:
        """Download a group of source files (only when actually sending) to temp files that stay
        open while the message is sent, recording each one's sha256 in attachment_transfers first.

        A file that cannot be downloaded stops the message before anything is sent (see
        `fetch_file`); one over the target's limit once downloaded is left out and listed."""
        out, rows = Uploads(), []
        with ExitStack() as opened:
            for spec in group:
                if spec["kind"] == "inline_image":
                    content: Any = spec["data"]
                    size, digest = len(content), hashlib.sha256(content).hexdigest()
                    out.inline_images += 1
                else:
                    fetched = self.fetch_file(item, spec, message_key)
                    if fetched is None:
                        out.notes.append(neutralize_text(self.oversize_note(spec), out.neutralized))
                        out.oversize += 1
                        continue
                    opened.callback(fetched.close)
                    content, size, digest = fetched.file, fetched.bytes, fetched.sha256
                    out.attachments += 1
                    out.attachment_bytes += size
                out.files.append((spec["filename"], content, spec["content_type"]))
                rows.append({**spec, "bytes": size, "sha256_source": digest})
            self.record_transfers(item, rows, message_key, state="uploaded")
            yield out

    def fetch_file(self, item, spec: dict[str, Any], message_key: str | None) -> DownloadedFile | None:
        """One source attachment on disk, or None when more bytes arrived than the target takes
        (the export's fileSize was wrong): recorded `oversize`, left out of the message.

        Any other failure (404/403/410 from the file host, or still failing after the client's
        retries) is recorded `download_failed` and raised as a non-retryable FileDownloadError:
        `ensure` then marks the message `failed` with the reason, the ticket stops there so the
        order is kept, the other tickets go on, and the next run tries again. The message is
        never sent without its file. URLs in the reason have their query (signature) redacted."""
        assert self.fetch_attachment is not None
        limit = self.settings.max_file_bytes
        try:
            fetched = self.fetch_attachment(item["source_id"], spec["attachment_id"], max_bytes=limit)
        except FileTooLarge as exc:
            detail = f"over the target's file limit once downloaded ({exc.received}+ bytes; the export said {spec['size']}): listed in the message, not uploaded"
            self.record_transfers(item, [{**spec, "bytes": exc.received}], message_key, state="oversize", detail=detail)
            return None
        except VendorAPIError as exc:
            reason = redact_urls_in(str(exc))
            self.record_transfers(item, [spec], message_key, state="download_failed", detail=reason[:1000])
            what = f"attachment {spec['attachment_id']} of item {item['source_id']}"
            raise FileDownloadError(exc.vendor, "GET", what, exc.status, f"download failed, message not sent without it: {reason}") from None
        if isinstance(fetched, (bytes, bytearray)):
            fetched = DownloadedFile.from_bytes(bytes(fetched))
        if fetched.bytes > limit:  # a fetcher that does not stop at max_bytes itself
            fetched.close()
            detail = f"over the target's file limit once downloaded ({fetched.bytes} bytes): listed in the message, not uploaded"
            self.record_transfers(item, [{**spec, "bytes": fetched.bytes}], message_key, state="oversize", detail=detail)
            return None
        return fetched

    def oversize_note(self, spec: dict[str, Any]) -> str:
        """The message line for a file found over the limit only when it was downloaded."""
        limit = self.settings.max_file_bytes
        shown = f"{limit / (1024 * 1024):.0f} MB" if limit >= 1024 * 1024 else f"{limit} bytes"
        return (
            f"📎 {spec['filename'][:200]} is over Unthread's {shown} file limit (larger than the export said): "
            f"not uploaded (attachment {spec['attachment_id']})."
        )

    def record_transfers(self, item, specs: list[dict[str, Any]], message_key: str | None, *, state: str, detail: str | None = None) -> None:
        if not specs:
            return
        rows = [
            {
                "item_id": item["source_id"],
                "attachment_id": s["attachment_id"],
                "kind": s["kind"],
                "filename": s["filename"],
                "content_type": s["content_type"],
                "bytes": s.get("bytes", s.get("size")),
                "sha256_source": s.get("sha256_source"),
                "message_key": message_key,
                "target_message_id": None,
                "target_file_id": None,
                "sha256_target": None,
                "state": state,
                "detail": detail,
                "updated_at": now_text(),
            }
            for s in specs
        ]
        with self.db.begin() as conn:
            self.db.upsert(conn, attachment_transfers, rows)

    def verify_transfers(self, conversation_id: str, message_id: str, item, group, created: dict[str, Any] | None) -> None:
        """Read the files of a sent message back from Unthread and record their sha256 next to
        the source's. Never raises for a read-back failure: the row says `unverified` and why."""
        if not self.settings.verify_uploads:
            return
        ids = [s["attachment_id"] for s in group]
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                sa.select(attachment_transfers).where(
                    attachment_transfers.c.item_id == item["source_id"], attachment_transfers.c.attachment_id.in_(ids)
                )
            ).mappings().all()
        pending = [r for r in rows if r["state"] in ("uploaded", "unverified")]
        if not pending:
            return
        try:
            files = list((created or {}).get("files") or [])
            if created is None or not files:
                files = next((m.get("files") or [] for m in self.client.iter_messages(conversation_id) if m["id"] == message_id), [])
            order = {s["attachment_id"]: n for n, s in enumerate(group)}
            updates = []
            used: set[str] = set()
            for row in sorted(pending, key=lambda r: order[r["attachment_id"]]):
                target = _match_file(files, row["filename"], order[row["attachment_id"]], used)
                if target is None:
                    updates.append({**row, "state": "unverified", "detail": "no such file on the target message", "target_message_id": message_id})
                    continue
                used.add(target["id"])
                if not self.caps.supports(FILE_READ_BACK):
                    size = target.get("size")
                    differs = size is not None and size != row["bytes"]
                    updates.append({
                        **row, "target_message_id": message_id, "target_file_id": target["id"],
                        "state": "mismatch" if differs else "unverifiable",
                        "detail": f"listed on the message as {target.get('name')!r} ({size} bytes, source {row['bytes']}); "
                                  "this workspace offers no file read-back, so the bytes cannot be compared",
                    })
                    continue
                content = self.client.download_file(conversation_id, target["id"])
                digest = hashlib.sha256(content).hexdigest()
                same = digest == row["sha256_source"]
                updates.append({
                    **row, "target_message_id": message_id, "target_file_id": target["id"], "sha256_target": digest,
                    "state": "verified" if same else "mismatch",
                    "detail": None if same else f"target has {len(content)} bytes, source {row['bytes']}",
                })
        except VendorAPIError as exc:
            updates = [{**r, "state": "unverified", "detail": f"read-back failed: {exc}"[:500]} for r in pending]
        for row in updates:
            row["updated_at"] = now_text()
            self.counts.uploads_verified += row["state"] == "verified"
            self.counts.checksum_mismatches += row["state"] == "mismatch"
            self.counts.uploads_unverified += row["state"] == "unverified"
            self.counts.uploads_unverifiable += row["state"] == "unverifiable"
        with self.db.begin() as conn:
            self.db.upsert(conn, attachment_transfers, updates)

    def attachment_notes(self, item) -> list[str]:
        """Lines for files the target cannot take, so nothing is dropped silently."""
        lines = []
        limit_mb = self.settings.max_file_bytes / (1024 * 1024)
        for spec in self.files_of(item):
            size, name = spec["size"] or 0, spec["filename"]
            if size > self.settings.max_file_bytes:
                lines.append(
                    f"📎 {name} ({size / (1024 * 1024):.1f} MB) is over Unthread's {limit_mb:.0f} MB file limit: "
                    f"not uploaded; it stays in the {system_name(item['source_system'])} export archive (attachment {spec['attachment_id']})."
                )
            elif spec["kind"] == "attachment" and self.fetch_attachment is None:
                lines.append(f"📎 {name} ({size} bytes): not uploaded in this run (attachment {spec['attachment_id']}).")
        return lines

    def render(self, item) -> list[str]:
        """Markdown for one item, split into parts when over the target's limit (never truncated)."""
        author = {"customer": "Customer", "agent": "Agent", "system": "System", "external": "External"}[item["author_type"]]
        label = "Private note · " if item["visibility"] == "private" else ""
        header = f"**{author}** · {label}{item['source_kind']} · {item['ts'][:19].replace('T', ' ')} UTC"
        body = self.prepared(item).markdown or f"({item['source_kind']}, no text)"
        if item["subject"] and item["kind"] != "activity":
            body = f"*{item['subject']}*\n\n{body}"
        lines = self.attachment_notes(item)
        if lines:
            body = body + "\n\n" + "\n".join(lines)
        body = neutralize_text(body)  # the subject and file names too (counted in count_sent)
        room = self.settings.max_markdown_chars - len(header) - 120
        chunks = [body[i : i + room] for i in range(0, len(body), room)] or [""]
        total = len(chunks)
        return [
            f"{header}{f' (part {n + 1}/{total})' if total > 1 else ''}\n\n{chunk}\n\n{markers.stamp(item['source_id'], _part(n, total))}"
            for n, chunk in enumerate(chunks)
        ]


def _is_email(item) -> bool:
    """An email message: the kind whose quoted replies and signatures are trimmed."""
    return item["kind"] == "message" and item["channel"] == "email"


def _rewind(files: list[Upload] | None) -> None:
    """Back to the start of each open file part, so a write can be sent again."""
    for _, content, _ in files or []:
        if hasattr(content, "seek"):
            content.seek(0)


def _digest(tag_ids: list[str], metadata: dict[str, str]) -> str:
    """What ensure_tags last set, short enough for the ledger's target_id column."""
    raw = "\n".join(sorted(tag_ids)) + "\n--\n" + "\n".join(f"{k}={v}" for k, v in sorted(metadata.items()))
    return "sha1:" + hashlib.sha1(raw.encode("utf-8")).hexdigest()


def _match_file(files: list[dict[str, Any]], name: str, position: int, used: set[str]) -> dict[str, Any] | None:
    """The uploaded file for a source file: same name (first unused), else the same position."""
    for f in files:
        if f.get("name") == name and f.get("id") not in used:
            return f
    if position < len(files) and files[position].get("id") not in used:
        return files[position]
    return None


def ticket_topic_ids(db: StagingDatabase, ticket, ticket_item_ids: set[str]) -> list[str]:
    """The source tag ids a ticket carried, from its conversation's tag changes up to the ticket's
    last item (mappings.topics_of_ticket)."""
    query = (
        sa.select(conversation_items.c.source_id, conversation_items.c.split_change)
        .where(
            conversation_items.c.conversation_id == ticket["conversation_id"],
            conversation_items.c.kind == "tag_change",
            conversation_items.c.ts <= ticket["last_ts"],
        )
        .order_by(conversation_items.c.ts, conversation_items.c.source_id)
    )
    with db.engine.connect() as conn:
        rows = conn.execute(query).all()
    return topics_of_ticket(((r[0], *decode_change(r[1])[1:]) for r in rows), ticket_item_ids)


def _part(index: int, total: int) -> int | None:
    """The part (of its message key and marker) of text part `index` of an item rendered in `total`."""
    return None if total == 1 else index + 1


def tickets_touching(db: StagingDatabase, lo: str, hi: str) -> list[str]:
    """Tickets holding at least one item of [lo, hi), oldest first."""
    query = (
        sa.select(tickets.c.ticket_id)
        .where(sa.exists().where(ticket_items.c.ticket_id == tickets.c.ticket_id, ticket_items.c.ts >= lo, ticket_items.c.ts < hi))
        .order_by(tickets.c.first_ts, tickets.c.ticket_id)
    )
    with db.engine.connect() as conn:
        return [r[0] for r in conn.execute(query)]
