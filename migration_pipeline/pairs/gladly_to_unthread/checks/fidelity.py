"""Fidelity checks over what a load recorded and what Unthread holds. No Dagster import: each
function returns (passed, details) for the caller to wrap as an asset check.

- `attachment_checksum_mismatches`: every file put on an Unthread message (Gladly attachments and
  inline images) was read back with the same sha256 as the source bytes (`attachment_transfers`).
- `tag_coverage`: every loaded conversation carries exactly the flattened tag names of the Gladly
  topics of its ticket (as tags, or as `metadata.gladlyTags` on a workspace without tags).
"""

from __future__ import annotations

from typing import Any

import json

import sqlalchemy as sa

from migration_pipeline.lib import ledger_keys
from migration_pipeline.pairs.gladly_to_unthread.mappings import Mappings, load_mappings
from migration_pipeline.lib.staging.db import StagingDatabase, attachment_transfers, conversation_items, ledger, ticket_items, tickets, topics
from migration_pipeline.vendors.unthread.loader import ticket_topic_ids, tickets_touching

LISTED = 50  # rows shown in details; counts cover everything


def attachment_checksum_mismatches(
    db: StagingDatabase, lo: str | None = None, hi: str | None = None, *, allow_unverified: bool = False
) -> tuple[bool, dict[str, Any]]:
    """Files whose target sha256 differs from the source's, or that were never verified.

    Restricted to items with a timestamp in [lo, hi) when given. Oversize files (listed in the
    message, deliberately not uploaded) are reported but do not fail the check; unverified ones
    (read-back failed, or sent but not yet read back) fail unless `allow_unverified`; files on a
    workspace with no file read-back (`unverifiable`: listed on the message, bytes not readable)
    are counted apart and do not fail: the caller reports them as a limit of the workspace."""
    query = sa.select(attachment_transfers)
    if lo is not None and hi is not None:
        query = query.join(conversation_items, conversation_items.c.source_id == attachment_transfers.c.item_id).where(
            conversation_items.c.ts >= lo, conversation_items.c.ts < hi
        )
    with db.engine.connect() as conn:
        rows = conn.execute(query.order_by(attachment_transfers.c.item_id, attachment_transfers.c.attachment_id)).mappings().all()
    by_state: dict[str, int] = {}
    for r in rows:
        by_state[r["state"]] = by_state.get(r["state"], 0) + 1
    mismatched = [
        r for r in rows
        if r["state"] == "mismatch" or (r["state"] == "verified" and r["sha256_target"] != r["sha256_source"])
    ]
    unverified = [r for r in rows if r["state"] in ("uploaded", "unverified")]
    failing = mismatched + ([] if allow_unverified else unverified)
    unverifiable = [r for r in rows if r["state"] == "unverifiable"]

    def show(r) -> dict[str, Any]:
        return {k: r[k] for k in ("item_id", "attachment_id", "filename", "bytes", "sha256_source", "sha256_target", "state", "detail")}

    details = {
        "files": len(rows),
        "by_state": by_state,
        "mismatches": len(mismatched),
        "unverified": len(unverified),
        "unverifiable": len(unverifiable),
        "oversize_listed_not_uploaded": by_state.get("oversize", 0),
        "failing": [show(r) for r in failing[:LISTED]],
    }
    return not failing, details


def expected_tags(db: StagingDatabase, ticket_id: str, mappings: Mappings | None = None) -> tuple[list[str], list[str]]:
    """(Gladly topic ids, flattened tag names) a ticket should carry."""
    mappings = mappings or load_mappings()
    with db.engine.connect() as conn:
        ticket = conn.execute(sa.select(tickets).where(tickets.c.ticket_id == ticket_id)).mappings().one()
        item_ids = set(conn.execute(sa.select(ticket_items.c.item_id).where(ticket_items.c.ticket_id == ticket_id)).scalars())
        names = mappings.topic_names(conn.execute(sa.select(topics.c.source_id, topics.c.name, topics.c.parent_id)).mappings().all())
    topic_ids = ticket_topic_ids(db, ticket, item_ids)
    return topic_ids, [mappings.topic_name(t, names) for t in topic_ids]


def tag_coverage(
    db: StagingDatabase, client: Any, lo: str, hi: str, mappings: Mappings | None = None, *, in_metadata: bool = False
) -> tuple[bool, dict[str, Any]]:
    """Every loaded conversation of the tickets touching [lo, hi) has exactly its topics' tags:
    as Unthread tags, or with `in_metadata` (a workspace without a tag API) as the JSON list of
    names in `metadata.gladlyTags`.

    Reads each conversation back from Unthread (`GET /conversations/:id`); a ticket not loaded
    yet is skipped (the variance check reports it)."""
    mappings = mappings or load_mappings()
    checked, wrong, missing_conversations = 0, [], []
    for ticket_id in tickets_touching(db, lo, hi):
        with db.engine.connect() as conn:
            target = conn.execute(
                sa.select(ledger.c.target_id).where(ledger.c.source_key == ledger_keys.ticket(ticket_id), ledger.c.state == "done")
            ).scalar()
        if not target:
            continue
        topic_ids, names = expected_tags(db, ticket_id, mappings)
        conversation = client.get_conversation(target)
        if conversation is None:
            missing_conversations.append(ticket_id)
            continue
        checked += 1
        if in_metadata:
            actual = _names_in_metadata(conversation) if topic_ids else []
        else:
            actual = sorted(t.get("name") for t in conversation.get("tags") or [])
        kept = (conversation.get("metadata") or {}).get("gladlyTopicIds", "")
        kept_ids = sorted(x for x in kept.split(",") if x)
        if actual != sorted(names) or kept_ids != sorted(topic_ids):
            wrong.append({
                "ticket": ticket_id, "conversation": target, "expected": sorted(names), "actual": actual,
                "expected_topic_ids": sorted(topic_ids), "metadata_topic_ids": kept_ids,
            })
    details = {
        "conversations_checked": checked,
        "wrong": len(wrong),
        "missing_conversations": len(missing_conversations),
        "kept_as": "metadata.gladlyTags" if in_metadata else "tags",
        "examples": wrong[:LISTED],
    }
    return not wrong and not missing_conversations, details


def _names_in_metadata(conversation: dict[str, Any]) -> list[str]:
    raw = (conversation.get("metadata") or {}).get("gladlyTags") or "[]"
    try:
        names = json.loads(raw)
    except ValueError:
        return [f"<not JSON: {raw[:80]}>"]
    return sorted(str(n) for n in names) if isinstance(names, list) else [f"<not a list: {raw[:80]}>"]
