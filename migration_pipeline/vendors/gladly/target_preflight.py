"""Into Gladly: the migration checklist before the first write (target role). No Dagster import.

Blocking: the API token works (an authenticated read of the organization's agents). Informative:
the agents the history names (by email) who have no Gladly agent - the import files carry no
agent column, so their replies still import, under the customer's history with their name in
the text - and the reminder to keep routing rules and automations paused while history lands.
Topics: every tag the window's tickets carry (the import file's tags column) exists in Gladly or
is created, under a stable id derived from the tag, so a crashed create is found again, never
doubled (Gladly refuses a taken id or name with 409, resolved by `GladlyTarget.create_topic`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from migration_pipeline.lib.http import VendorAPIError
from migration_pipeline.lib.staging.db import StagingDatabase, agents, conversation_items, conversations
from migration_pipeline.vendors.gladly.profiles import GladlyTarget, stable_id

REMINDERS = (
    "Keep Gladly's routing rules, auto-replies and automations paused (or scoped away from migrated customers) "
    "until the history import is done: a created profile or imported item must not wake them.",
    "Gladly's historical import is a Professional Services step: hand the files over about two weeks before "
    "launch, and the delta files about two days after.",
)


@dataclass
class TargetPreflight:
    blocking: list[str] = field(default_factory=list)
    agents_named: int = 0
    agents_missing: list[dict[str, str | None]] = field(default_factory=list)
    topics_existing: list[str] = field(default_factory=list)
    topics_created: list[str] = field(default_factory=list)
    topics_failed: list[str] = field(default_factory=list)
    reminders: tuple[str, ...] = REMINDERS

    @property
    def ok(self) -> bool:
        return not self.blocking


def history_agents(db: StagingDatabase, lo: str, hi: str) -> list[dict[str, str | None]]:
    """The staged agents who wrote items in [lo, hi): id, name, email."""
    query = (
        sa.select(agents.c.source_id, agents.c.name, agents.c.email)
        .where(agents.c.source_id.in_(
            sa.select(conversation_items.c.author_id).where(
                conversation_items.c.ts >= lo, conversation_items.c.ts < hi, conversation_items.c.author_type == "agent")
        ))
        .order_by(agents.c.source_id)
    )
    with db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def window_tags(db: StagingDatabase, lo: str, hi: str) -> list[str]:
    """The tags of the tickets holding items of [lo, hi), sorted."""
    query = sa.select(conversations.c.tags).where(conversations.c.source_id.in_(
        sa.select(conversation_items.c.conversation_id).where(conversation_items.c.ts >= lo, conversation_items.c.ts < hi)
    ))
    with db.engine.connect() as conn:
        rows = conn.execute(query).scalars().all()
    return sorted({str(t) for tags in rows for t in (tags or []) if str(t).strip()})


def run_target_preflight(
    target: GladlyTarget, db: StagingDatabase, lo: str, hi: str, *, excluded_tags: Iterable[str] = (), create_topics: bool = True
) -> TargetPreflight:
    report = TargetPreflight()
    try:
        gladly_agents = target.client.list_agents()
    except VendorAPIError as exc:
        report.blocking.append(f"the Gladly API refused the token or is unreachable: {exc}")
        return report
    known = {(a.email_address or "").strip().lower() for a in gladly_agents}
    named = history_agents(db, lo, hi)
    report.agents_named = len(named)
    report.agents_missing = [a for a in named if (a["email"] or "").strip().lower() not in known]
    excluded = {t.lower() for t in excluded_tags}
    existing = {t.name: t.id for t in target.list_topics()}
    for tag in window_tags(db, lo, hi):
        if tag.lower() in excluded:
            continue
        if tag in existing:
            report.topics_existing.append(tag)
        elif not create_topics:
            report.topics_failed.append(f"{tag}: missing (topic creation is off)")
        else:
            try:
                outcome = target.create_topic(tag, topic_id=stable_id(f"topic:{tag}"))
                (report.topics_created if outcome.created else report.topics_existing).append(tag)
            except VendorAPIError as exc:
                report.topics_failed.append(f"{tag}: {exc}")
    return report
