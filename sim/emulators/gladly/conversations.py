"""Writes to Gladly conversations in the emulator: status (close/reopen), assignee and topics.

The dataset store is read-only, so what the API changes lives here, in memory, over it: a
conversation's stored body with the changes applied is what GET answers from then on.

Rules enforced on `PATCH /api/v1/conversations/{id}` (shared/vendor-apis/gladly-api.md §4.2), the
strictest plausible reading where the facts stop:
- closing a conversation whose inbox or id is marked "topics required" while it has no topic is
  refused: 400 `invalid_state` "topics are required before closing of conversation";
- closing while the customer waits for an answer, i.e. the last customer-visible message of the
  conversation was sent by the CUSTOMER, is refused unless `status.force` is true: 400
  `invalid_state` "cannot close conversation, customer waiting for response, ...";
- a closed conversation cannot be reassigned; `assignee.inboxId` is required with an assignee.
Closing an already CLOSED conversation is a 204 that changes nothing (undocumented: a no-op is
the reading that never invents a second close).
Which conversations need topics is set with the emulator-only `PUT /_emulator/close-rules`
(`CloseRules`), so a test or a rehearsal can make one conversation refuse to close.
Not emulated: the CONVERSATION_STATUS_CHANGE / TOPIC_CHANGE timeline items Gladly would add.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .store import GladlyStore
from .validation import Refusal

# Items a customer sends and an agent answers; a note, a topic or status change, a customer
# activity card or a phone call (answered live) leaves nobody waiting.
CUSTOMER_MESSAGE_TYPES = (
    "CHAT_MESSAGE", "EMAIL", "SMS", "FACEBOOK_MESSAGE", "INSTAGRAM_DIRECT", "WHATSAPP", "TWITTER", "VOICEMAIL",
)
STATUS_VALUES = ("OPEN", "CLOSED")
TOPICS_REQUIRED = "topics are required before closing of conversation"
CUSTOMER_WAITING = "cannot close conversation, customer waiting for response, set 'status.force' to true to override"
CLOSED_NOT_REASSIGNED = "closed conversation cannot be reassigned"


class CloseRules(BaseModel):
    """Emulator-only: which conversations Gladly refuses to close without a topic."""

    model_config = ConfigDict(extra="forbid")

    topics_required_conversations: list[str] = Field(default_factory=list, description="conversation ids")
    topics_required_inboxes: list[str] = Field(default_factory=list, description="every conversation of these inboxes")


class ConversationWrites:
    """The conversations' current state: the stored body plus every change made through the API."""

    def __init__(self, store: GladlyStore):
        self.store = store
        self.rules = CloseRules()
        self._changed: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def set_rules(self, rules: CloseRules) -> None:
        with self._lock:
            self.rules = rules

    def body(self, conversation_id: str) -> str | None:
        """The conversation as GET returns it (JSON text), or None if it does not exist."""
        with self._lock:
            changed = self._changed.get(conversation_id)
        if changed is not None:
            return json.dumps(changed, separators=(",", ":"), ensure_ascii=False)
        return self.store.conversation(conversation_id)

    def bodies(self, stored: list[str]) -> list[str]:
        """Stored conversation bodies (a list endpoint's rows) with the changes applied."""
        with self._lock:
            if not self._changed:
                return stored
        out = []
        for text in stored:
            changed = self._changed.get(json.loads(text).get("id"))
            out.append(text if changed is None else json.dumps(changed, separators=(",", ":"), ensure_ascii=False))
        return out

    def _current(self, conversation_id: str) -> dict[str, Any] | None:
        """A private copy of the current body (the caller holds the lock)."""
        changed = self._changed.get(conversation_id)
        if changed is not None:
            return json.loads(json.dumps(changed))
        text = self.store.conversation(conversation_id)
        return json.loads(text) if text is not None else None

    def add_topics(self, conversation_id: str, topic_ids: list[str]) -> None:
        """Add topics (those already on the conversation are ignored). The caller checked the ids."""
        with self._lock:
            current = self._current(conversation_id)
            if current is None:
                return
            have = [t for t in current.get("topicIds") or [] if isinstance(t, str)]
            current["topicIds"] = have + [t for t in dict.fromkeys(topic_ids) if t not in have]
            self._changed[conversation_id] = current

    def patch(self, conversation_id: str, status: dict[str, Any] | None, assignee: dict[str, Any] | None, now: str) -> Refusal | None:
        """Apply a validated PATCH body; a Refusal when Gladly would refuse it (nothing changed)."""
        with self._lock:
            current = self._current(conversation_id)
            if current is None:
                return Refusal(404, "not_exist", "conversation does not exist")
            closed = current.get("status") == "CLOSED"
            value = status["value"] if status else None
            if assignee is not None and closed and value != "OPEN":
                return Refusal(400, "invalid_state", CLOSED_NOT_REASSIGNED)
            if value == "CLOSED" and not closed:
                refusal = self._close_refusal(current, bool(status.get("force")))  # type: ignore[union-attr]
                if refusal is not None:
                    return refusal
                current["status"], current["closedAt"] = "CLOSED", now
            elif value == "OPEN" and closed:
                current["status"] = "OPEN"
                current.pop("closedAt", None)
            if assignee is not None:
                current["inboxId"] = assignee["inboxId"]
                if assignee.get("agentId"):
                    current["agentId"] = assignee["agentId"]
                else:
                    current.pop("agentId", None)
            self._changed[conversation_id] = current
        return None

    def _close_refusal(self, current: dict[str, Any], force: bool) -> Refusal | None:
        rules = self.rules
        needs_topics = current["id"] in rules.topics_required_conversations or current.get("inboxId") in rules.topics_required_inboxes
        if needs_topics and not current.get("topicIds"):
            return Refusal(400, "invalid_state", TOPICS_REQUIRED)
        if not force and self.customer_waiting(current["id"]):
            return Refusal(400, "invalid_state", CUSTOMER_WAITING)
        return None

    def customer_waiting(self, conversation_id: str) -> bool:
        """The last customer-visible message of the conversation came from the customer."""
        last = self.store.last_item_of_types(conversation_id, CUSTOMER_MESSAGE_TYPES)
        if last is None:
            return False
        initiator = json.loads(last).get("initiator")
        return isinstance(initiator, dict) and initiator.get("type") == "CUSTOMER"
