"""Versioned, overridable mapping tables: source status → target status, channel → conversation
type, hierarchical topics → flat tag names. No Dagster import, no vendor client.

The tables live in `migration_pipeline/config/mappings.yaml` (with a `version:`); a copy of your
own is used when `MIGRATION_MAPPINGS_FILE` (or an explicit path) points at it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

MAPPINGS_ENV = "MIGRATION_MAPPINGS_FILE"
TARGET_STATUSES = ("open", "in_progress", "on_hold", "closed")
CONVERSATION_TYPES = ("email", "triage", "slack")


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
    def from_mapping(cls, data: dict[str, Any], source: str = "mapping") -> Mappings:
        if not isinstance(data, dict) or not data.get("version"):
            raise ValueError(f"mappings ({source}) need a `version:`")
        status = {str(k).upper(): str(v) for k, v in (data.get("status") or {}).items()}
        bad = {k: v for k, v in status.items() if v not in TARGET_STATUSES}
        if bad:
            raise ValueError(f"mappings ({source}): status targets must be one of {TARGET_STATUSES}, got {bad}")
        types = {str(k).lower(): str(v) for k, v in (data.get("channel_types") or {}).items()}
        default = str(data.get("default_type") or "triage")
        bad = {k: v for k, v in {**types, "default_type": default}.items() if v not in CONVERSATION_TYPES}
        if bad:
            raise ValueError(f"mappings ({source}): conversation types must be one of {CONVERSATION_TYPES}, got {bad}")
        topics = data.get("topics") or {}
        return cls(
            version=str(data["version"]),
            status=status,
            channel_types=types,
            default_type=default,
            topic_separator=str(topics.get("separator", " / ")),
            topic_prefix=str(topics.get("prefix") or ""),
            unknown_topic_name=str(topics.get("unknown_name") or "Gladly topic {id}"),
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
    """The tables from `path`, else from $MIGRATION_MAPPINGS_FILE, else the packaged file."""
    chosen = str(path) if path else os.environ.get(MAPPINGS_ENV) or None
    return _load_cached(chosen)


@lru_cache(maxsize=8)
def _load_cached(path: str | None) -> Mappings:
    if path:
        return Mappings.from_mapping(yaml.safe_load(Path(path).read_text(encoding="utf-8")), source=path)
    text = resources.files("migration_pipeline.config").joinpath("mappings.yaml").read_text(encoding="utf-8")
    return Mappings.from_mapping(yaml.safe_load(text), source="package")


def topics_of_ticket(changes: Iterable[tuple[str, Mapping[str, Any]]], ticket_item_ids: set[str]) -> list[str]:
    """The topics a ticket carried: those on its conversation when the ticket starts plus every
    topic added during it (a topic added then removed inside the ticket was still its topic).

    `changes` are (item id, content) of the conversation's TOPIC_CHANGE items up to the ticket's
    last item, in source order (ts, id); content has `addedTopicIds` / `removedTopicIds`."""
    current: list[str] = []
    tagged: list[str] = []
    started = False
    for item_id, content in changes:
        inside = item_id in ticket_item_ids
        if inside and not started:
            tagged.extend(t for t in current if t not in tagged)
            started = True
        added = [t for t in content.get("addedTopicIds") or () if isinstance(t, str)]
        removed = {t for t in content.get("removedTopicIds") or () if isinstance(t, str)}
        current = [t for t in current if t not in removed] + [t for t in added if t not in current]
        if inside:
            tagged.extend(t for t in added if t not in tagged)
    if not started:
        tagged.extend(t for t in current if t not in tagged)
    return tagged
