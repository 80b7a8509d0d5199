"""CUSTOMER_ACTIVITY items created with `POST /api/v1/customers/{id}/conversation-items` (in memory).

Rules (shared/vendor-apis/gladly-api.md §4.4): body `{id? (≤ 50, URL-safe), content}`; `content`
is `CUSTOMER_ACTIVITY` with `activityType` EMAIL / ISSUE / SMS / SURVEY (required), `title` ≤ 100,
`body` ≤ 25,000, `sourceName` ≤ 50, `link{url, text ≤ 50}`, `expandByDefault`, and `occurredAt`
no older than one year; `receivedAt` is read-only. 200 with the created item; 409
`newConversationItems` `taken` for an item id already used. The items sit outside any
conversation and are read back with GET /conversation-items/{id}.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

from .store import GladlyStore
from sim.emulators.timeutil import NS_PER_SECOND, datetime_to_ns, format_ns, parse_rfc3339_ns
from .validation import Refusal, blank, id_refusal, new_id, text_refusal

MAX_ITEM_ID = 50
ACTIVITY_TYPES = ("EMAIL", "ISSUE", "SMS", "SURVEY")
TEXT_LIMITS = {"title": 100, "body": 25_000, "sourceName": 50}
MAX_LINK_TEXT = 50
ITEM_TAKEN = "conversation item already exists"
TOO_OLD = "occurredAt cannot be older than 1 year"


def one_year_before(now_ns: int) -> int:
    """The oldest `occurredAt` accepted: the same instant one calendar year earlier (29 February
    counts back to 28 February). Assumed: "1 year" is not defined further, and a calendar year
    is never shorter than 365 days, so nothing Gladly takes is refused here."""
    seconds, rest = divmod(now_ns, NS_PER_SECOND)
    now = datetime.fromtimestamp(seconds, tz=UTC)
    day = 28 if (now.month, now.day) == (2, 29) else now.day
    return datetime_to_ns(now.replace(year=now.year - 1, day=day)) + rest


def _content_refusal(content: Any, now_ns: int) -> Refusal | None:
    if not isinstance(content, dict):
        return Refusal(400, "blank", "content cannot be blank", "content")
    kind = content.get("type")
    if blank(kind):
        return Refusal(400, "blank", "content.type cannot be blank", "content.type")
    if kind != "CUSTOMER_ACTIVITY":
        # TASK (deprecated in favour of the Tasks API) is not emulated.
        return Refusal(400, "invalid", f"content.type [{kind}] is not supported", "content.type")
    activity = content.get("activityType")
    if blank(activity):
        return Refusal(400, "blank", "content.activityType cannot be blank", "content.activityType")
    if activity not in ACTIVITY_TYPES:
        detail = f"content.activityType must be one of {', '.join(ACTIVITY_TYPES)}"
        return Refusal(400, "invalid", detail, "content.activityType")
    for name, limit in TEXT_LIMITS.items():
        refusal = text_refusal(content.get(name), f"content.{name}", limit)
        if refusal is not None:
            return refusal
    link = content.get("link")
    if link is not None:
        if not isinstance(link, dict) or blank(link.get("url")):
            return Refusal(400, "blank", "content.link.url cannot be blank", "content.link.url")
        refusal = text_refusal(link.get("text"), "content.link.text", MAX_LINK_TEXT)
        if refusal is not None:
            return refusal
    if not isinstance(content.get("expandByDefault", False), bool):
        return Refusal(400, "invalid", "content.expandByDefault must be a boolean", "content.expandByDefault")
    occurred = content.get("occurredAt")
    if occurred is not None:
        occurred_ns = parse_rfc3339_ns(occurred)
        if occurred_ns is None:
            return Refusal(400, "invalid", "content.occurredAt must be an RFC3339 timestamp", "content.occurredAt")
        # assumed: the code and wording of this refusal are undocumented; a future time is accepted.
        if occurred_ns < one_year_before(now_ns):
            return Refusal(400, "invalid", TOO_OLD, "content.occurredAt")
    return None


class ActivityItems:
    """Items created through the API, by id. Thread-safe; the id check and the insert are atomic."""

    def __init__(self, store: GladlyStore):
        self.store = store
        self._items: dict[str, str] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def body(self, item_id: str) -> str | None:
        """A created item as GET returns it (JSON text), or None."""
        with self._lock:
            return self._items.get(item_id)

    def create(self, customer_id: str, payload: dict[str, Any], now_ns: int) -> dict[str, Any] | Refusal:
        """Create an item on an existing customer's timeline; the item, or why Gladly refuses it."""
        requested = payload.get("id")
        refusal = id_refusal(requested, max_length=MAX_ITEM_ID)
        if refusal is not None:
            return refusal
        content = payload.get("content")
        refusal = _content_refusal(content, now_ns)
        if refusal is not None:
            return refusal
        received = format_ns(now_ns)
        stored = {k: v for k, v in content.items() if k != "receivedAt"}
        stored.setdefault("expandByDefault", False)
        if "occurredAt" in stored:
            stored["occurredAt"] = format_ns(parse_rfc3339_ns(stored["occurredAt"]))  # type: ignore[arg-type]
        stored["receivedAt"] = received
        with self._lock:
            if requested is not None and (requested in self._items or self.store.item(requested) is not None):
                return Refusal(409, "taken", ITEM_TAKEN, "newConversationItems")
            item = {
                "id": requested or new_id(),
                "customerId": customer_id,
                # assumed: the timeline position is occurredAt when given, else receivedAt; the
                # customer is the initiator of their own activity.
                "timestamp": stored.get("occurredAt", received),
                "initiator": {"id": customer_id, "type": "CUSTOMER"},
                "content": stored,
            }
            self._items[item["id"]] = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
        return item
