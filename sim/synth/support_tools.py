"""Gladly Support Tools Portal export layouts, written from item dicts (for tests and rehearsals).

The layouts, as `shared/vendor-apis/gladly-support-tools.md` lists them (column names exact):
- `write_get_file_export_zip`: the GET File Export ZIP, an export job's four JSONL files (and a
  job.json only when one is given: the portal's ZIP has none);
- `write_customer_conversations_zip`: `conversations.csv` + `conversation-items.csv`;
- `write_single_conversation_csv`: one CSV, a row per item, `ITEM_COLUMNS`;
- `write_topics_csv`: `Id`, `Disabled`, `Name` (Name with the parent hierarchy).

Item cells: a JSON path per column; absent, null and "" are an empty cell; lists are JSON arrays
(`list_style="comma"` writes string lists comma-separated instead, the other form the reader
accepts), booleans `true`/`false`, numbers as digits. Fields without a column (e.g.
`content.messageData`, `content.recordingStatus`) are not in these layouts; `csv_view` gives an
item as a CSV layout carries it, for comparing what the pipeline staged from each layout.

Deliberately independent of the reader (`vendors/gladly/support_tools.py`): it writes the layout
from the facts, so a test of the reader against it can fail.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ITEM_COLUMNS: tuple[str, ...] = (
    "id", "customerId", "conversationId", "sessionId", "timestamp", "initiator.id", "initiator.type",
    "responder.id", "responder.type", "content.type", "content.messageType", "content.sessionId",
    "content.content", "content.attachments", "content.status", "content.title", "content.body",
    "content.activityType", "content.sourceName", "content.link.url", "content.link.text",
    "content.expandByDefault", "content.occurredAt", "content.receivedAt", "content.from",
    "content.to", "content.cc", "content.bcc", "content.subject", "content.pageId",
    "content.userId", "content.startedAt", "content.answeredAt", "content.completedAt",
    "content.recordingUrl", "content.recordingDuration", "content.recordingSummary.status",
    "content.recordingSummary.summary", "content.recordingSummary.language",
    "content.addedTopicIds", "content.removedTopicIds",
)
CONVERSATION_COLUMNS: tuple[str, ...] = (
    "id", "topicIds", "customAttributes", "customerId", "createdAt", "agentId", "inboxId", "status",
)
TOPIC_COLUMNS: tuple[str, ...] = ("Id", "Disabled", "Name")
EXPORT_FILES = ("agents.jsonl", "conversation_items.jsonl", "customers.jsonl", "topics.jsonl")


def _at(obj: Mapping[str, Any], column: str) -> Any:
    node: Any = obj
    for part in column.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _cell(value: Any, list_style: str = "json") -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        if list_style == "comma" and all(isinstance(v, str) and "," not in v for v in value) and value:
            return ", ".join(value)
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def item_row(item: Mapping[str, Any], list_style: str = "json") -> list[str]:
    """The item's cells in `ITEM_COLUMNS` order."""
    return [_cell(_at(item, column), list_style) for column in ITEM_COLUMNS]


def csv_view(item: Mapping[str, Any]) -> dict[str, Any]:
    """The item as a Support Tools CSV carries it: only the fields with a column, none empty.
    A cell has no type, so a `recordingDuration` of digits reads back as the integer the export
    schema says it is."""
    view: dict[str, Any] = {}
    for column in ITEM_COLUMNS:
        value = _at(item, column)
        if value is None or value == "":
            continue
        if column == "content.recordingDuration" and isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        node = view
        parts = column.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return view


def _write_csv(out: io.TextIOBase, header: Iterable[str], rows: Iterable[list[str]], line_end: str) -> None:
    writer = csv.writer(out, lineterminator=line_end)  # RFC 4180: quotes only where needed
    writer.writerow(list(header))
    writer.writerows(rows)


def items_csv_text(items: Iterable[Mapping[str, Any]], *, line_end: str = "\r\n", list_style: str = "json") -> str:
    buffer = io.StringIO(newline="")
    _write_csv(buffer, ITEM_COLUMNS, (item_row(i, list_style) for i in items), line_end)
    return buffer.getvalue()


def write_single_conversation_csv(
    path: Path, items: Iterable[Mapping[str, Any]], *, bom: bool = False, line_end: str = "\r\n", list_style: str = "json"
) -> Path:
    """One conversation's items as the Single conversation export: one CSV, a row per item."""
    text = items_csv_text(items, line_end=line_end, list_style=list_style)
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


def conversation_row(conversation: Mapping[str, Any]) -> list[str]:
    """A REST Conversation as a conversations.csv row (topicIds comma-separated, custom attributes JSON)."""
    return [
        conversation.get("id") or "",
        ",".join(conversation.get("topicIds") or []),
        json.dumps(conversation.get("customAttributes") or [], ensure_ascii=False),
        conversation.get("customerId") or "",
        conversation.get("createdAt") or "",
        conversation.get("agentId") or "",
        conversation.get("inboxId") or "",
        conversation.get("status") or "",
    ]


def write_customer_conversations_zip(
    path: Path, conversations: Iterable[Mapping[str, Any]], items: Iterable[Mapping[str, Any]], *, folder: str = ""
) -> Path:
    """One customer's conversations as the Customer conversations export: a ZIP of
    conversations.csv (REST Conversation dicts) and conversation-items.csv."""
    buffer = io.StringIO(newline="")
    _write_csv(buffer, CONVERSATION_COLUMNS, (conversation_row(c) for c in conversations), "\r\n")
    prefix = f"{folder.strip('/')}/" if folder else ""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{prefix}conversations.csv", buffer.getvalue().encode("utf-8"))
        archive.writestr(f"{prefix}conversation-items.csv", items_csv_text(items).encode("utf-8"))
    return path


def _jsonl(rows: Iterable[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def write_get_file_export_zip(
    path: Path,
    items: Iterable[Mapping[str, Any]],
    *,
    customers: Iterable[Mapping[str, Any]] = (),
    agents: Iterable[Mapping[str, Any]] = (),
    topics: Iterable[Mapping[str, Any]] = (),
    job: Mapping[str, Any] | None = None,
) -> Path:
    """An export job as the portal's GET File Export downloads it: a ZIP of the four JSONL files at
    its root (job.json only if `job` is given)."""
    files = {"agents.jsonl": agents, "conversation_items.jsonl": items, "customers.jsonl": customers, "topics.jsonl": topics}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in EXPORT_FILES:
            archive.writestr(name, _jsonl(files[name]))
        if job is not None:
            archive.writestr("job.json", json.dumps(job))
    return path


def topic_path_names(topics: Iterable[Mapping[str, Any]], separator: str = " > ") -> dict[str, str]:
    """Topic id -> its Name in the Topics CSV: the parent hierarchy joined by `separator`."""
    by_id = {t["id"]: t for t in topics}
    names = {}
    for topic_id, topic in by_id.items():
        path, seen, current = [], set(), topic
        while current is not None and current["id"] not in seen:
            seen.add(current["id"])
            path.append(current["name"])
            current = by_id.get(current.get("parentId") or "")
        names[topic_id] = separator.join(reversed(path))
    return names


def write_topics_csv(path: Path, topics: Iterable[Mapping[str, Any]], *, separator: str = " > ", bom: bool = False) -> Path:
    """The Topics configuration export from API topic dicts {id, name, disabled, parentId?}."""
    topics = list(topics)
    names = topic_path_names(topics, separator)
    buffer = io.StringIO(newline="")
    rows = ([t["id"], "true" if t.get("disabled") else "false", names[t["id"]]] for t in topics)
    _write_csv(buffer, TOPIC_COLUMNS, rows, "\r\n")
    path.write_bytes(("\ufeff" if bom else "").encode() + buffer.getvalue().encode("utf-8"))
    return path
