"""Versioned, overridable mapping tables: source status → target status, channel → conversation
type, hierarchical topics → flat tag names. No Dagster import, no vendor client.

The tables live in `migration_pipeline/config/mappings.yaml` (with a `version:`); a copy of your
own is used when given its path (the settings' MIGRATION_MAPPINGS_FILE).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

from pydantic import AfterValidator

from migration_pipeline.lib.rule_files import NonEmpty, RulesDocument, load_rules_file, packaged_file, template, validate_rules

TARGET_STATUSES = ("open", "in_progress", "on_hold", "closed")
CONVERSATION_TYPES = ("email", "triage", "slack")


def _one_of(allowed: tuple[str, ...], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
        return value

    return AfterValidator(check)


TargetStatus = Annotated[str, _one_of(TARGET_STATUSES, "status targets")]
ConversationType = Annotated[str, _one_of(CONVERSATION_TYPES, "conversation types")]


class TopicNaming(RulesDocument):
    """How a topic path becomes one tag name."""

    separator: str = " / "
    prefix: str | None = None
    unknown_name: Annotated[str | None, template(id="t")] = None


class MappingsFile(RulesDocument):
    """What mappings.yaml may hold, checked when it is loaded."""

    version: NonEmpty
    status: dict[str, TargetStatus] | None = None
    channel_types: dict[str, ConversationType] | None = None
    default_type: ConversationType | None = None
    topics: TopicNaming | None = None


@dataclass(frozen=True)
class TypeChoice:
    """The conversation type to create and, when it is not the mapped one, why."""

    type: str
    wanted: str
    reason: str | None = None


@dataclass(frozen=True)
class Mappings:
    version: str
    status: dict[str, str]
    channel_types: dict[str, str]
    default_type: str = "triage"
    topic_separator: str = " / "
    topic_prefix: str = ""
    unknown_topic_name: str = "Gladly topic {id}"
    source: str = "package"

    @classmethod
    def from_mapping(cls, data: Any, source: str = "mapping") -> Mappings:
        """The tables of a parsed document; a bad one raises `RulesFileError` naming the field."""
        return cls.from_document(validate_rules(MappingsFile, data, "mappings", source), source)

    @classmethod
    def from_document(cls, document: MappingsFile, source: str) -> Mappings:
        topics = document.topics or TopicNaming()
        return cls(
            version=document.version,
            status={k.upper(): v for k, v in (document.status or {}).items()},
            channel_types={k.lower(): v for k, v in (document.channel_types or {}).items()},
            default_type=document.default_type or "triage",
            topic_separator=topics.separator,
            topic_prefix=topics.prefix or "",
            unknown_topic_name=topics.unknown_name or "Gladly topic {id}",
            source=source,
        )

    # -- status ------------------------------------------------------------------------------
    def target_status(self, source_status: str) -> str | None:
        """The target status for a source status, or None when the table has no row for it."""
        return self.status.get(str(source_status).upper())

    # -- conversation type -------------------------------------------------------------------
    def conversation_type(self, channel: str | None, configured: Mapping[str, bool], has_email_author: bool) -> TypeChoice:
        """The type for a ticket whose first item came on `channel`.

        `configured` says which types have their required settings (e.g. {"email": inbox id set,
        "slack": channel id set, "triage": True}); an email conversation also needs an author with
        an email address. Anything not satisfiable falls back to the default type (triage when the
        default itself is not configured), with the reason."""
        wanted = self.channel_types.get((channel or "").lower(), self.default_type)
        missing = None
        if not configured.get(wanted, wanted == "triage"):
            missing = {"email": "no email inbox id is configured", "slack": "no Slack channel id is configured"}.get(
                wanted, f"{wanted} is not configured"
            )
        elif wanted == "email" and not has_email_author:
            missing = "the first message's author has no valid email address"
        if missing is None:
            return TypeChoice(wanted, wanted)
        fallback = self.default_type if self.default_type != wanted and configured.get(self.default_type, self.default_type == "triage") else "triage"
        return TypeChoice(fallback, wanted, f"{wanted} → {fallback}: {missing}")

    # -- topics ------------------------------------------------------------------------------
    def topic_names(self, topics: Iterable[Mapping[str, Any]]) -> dict[str, str]:
        """Topic id -> flattened tag name (`Parent / Child`) for every topic given.

        Rows need `source_id`, `name`, `parent_id`; a parent missing from the rows is left out of
        the path; a parent cycle is cut where it repeats."""
        by_id = {str(t["source_id"]): t for t in topics}
        names: dict[str, str] = {}
        for topic_id in by_id:
            path, seen, current = [], set(), by_id.get(topic_id)
            while current is not None and current["source_id"] not in seen:
                seen.add(current["source_id"])
                path.append(str(current["name"]).strip())
                parent = current.get("parent_id")
                current = by_id.get(parent) if parent else None
            names[topic_id] = self.topic_prefix + self.topic_separator.join(reversed(path))
        return names

    def topic_name(self, topic_id: str, names: Mapping[str, str]) -> str:
        return names.get(topic_id) or self.topic_prefix + self.unknown_topic_name.format(id=topic_id)


def load_mappings(path: str | os.PathLike[str] | None = None) -> Mappings:
    """The tables from `path` (the settings pass MIGRATION_MAPPINGS_FILE), else the packaged file."""
    chosen = str(path) if path else None
    return _load_cached(chosen)


@lru_cache(maxsize=8)
def _load_cached(path: str | None) -> Mappings:
    document = load_rules_file(MappingsFile, path or packaged_file("mappings.yaml"), "mappings")
    return Mappings.from_document(document, source=path or "package")


def topics_of_ticket(changes: Iterable[tuple[str, Iterable[str], Iterable[str]]], ticket_item_ids: set[str]) -> list[str]:
    """The topics a ticket carried: those on its conversation when the ticket starts plus every
    topic added during it (a topic added then removed inside the ticket was still its topic).

    `changes` are (item id, added topic ids, removed topic ids) of the conversation's tag-change
    items up to the ticket's last item, in source order (ts, id)."""
    current: list[str] = []
    tagged: list[str] = []
    started = False
    for item_id, added_ids, removed_ids in changes:
        inside = item_id in ticket_item_ids
        if inside and not started:
            tagged.extend(t for t in current if t not in tagged)
            started = True
        added = [t for t in added_ids if isinstance(t, str)]
        removed = {t for t in removed_ids if isinstance(t, str)}
        current = [t for t in current if t not in removed] + [t for t in added if t not in current]
        if inside:
            tagged.extend(t for t in added if t not in tagged)
    if not started:
        tagged.extend(t for t in current if t not in tagged)
    return tagged
