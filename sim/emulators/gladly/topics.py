"""Topics: the dataset's, plus those created with `POST /api/v1/topics` (in memory).

Rules (shared/vendor-apis/gladly-api.md §4.5): `{id?, name (required, unique), disabled? (false),
parentId?}`; 201 with `Location: /api/v1/topics/{id}`; 400 `id` invalid ("id contains unsupported
characters") or `name` blank; 409 `id` taken, or `name` taken with `meta.id` naming the topic
that has it.
"""

from __future__ import annotations

import threading
from typing import Any

from .store import GladlyStore
from .validation import Refusal, blank, id_refusal, new_id

# No length is documented for topic ids; the customer ids' "shorter than 50" (assumed).
MAX_TOPIC_ID = 49


class Topics:
    """Every topic the API lists. Thread-safe."""

    def __init__(self, store: GladlyStore):
        self.store = store
        self._created: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [*self.store.topics, *self._created]

    def get(self, topic_id: str) -> dict[str, Any] | None:
        return next((t for t in self.all() if t.get("id") == topic_id), None)

    @property
    def created(self) -> int:
        return len(self._created)

    def create(self, payload: dict[str, Any]) -> str | Refusal:
        """Create a topic; its id, or why Gladly refuses it (nothing changed).

        Names clash only when equal (assumed: case and spaces count); a `parentId` naming no
        topic is accepted (assumed: the facts name no such refusal)."""
        requested = payload.get("id")
        refusal = id_refusal(requested, max_length=MAX_TOPIC_ID)
        if refusal is not None:
            return refusal
        name = payload.get("name")
        if blank(name):
            return Refusal(400, "blank", "name cannot be blank", "name")
        disabled = payload.get("disabled", False)
        if not isinstance(disabled, bool):
            return Refusal(400, "invalid", "disabled must be a boolean", "disabled")
        parent = payload.get("parentId")
        if parent is not None and not isinstance(parent, str):
            return Refusal(400, "invalid", "parentId must be a string", "parentId")
        with self._lock:
            existing = [*self.store.topics, *self._created]
            ids = {t.get("id") for t in existing}
            if requested is not None and requested in ids:
                return Refusal(409, "taken", "the topic with specified id already exists", "id")
            holder = next((t for t in existing if t.get("name") == name), None)
            if holder is not None:
                return Refusal(409, "taken", "another topic already has this name", "name", {"id": holder.get("id")})
            topic_id = requested or new_id()
            topic: dict[str, Any] = {"id": topic_id, "name": name, "disabled": disabled}
            if parent is not None:
                topic["parentId"] = parent
            self._created.append(topic)
        return topic_id
