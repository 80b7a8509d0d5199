"""Gladly Support Tools Portal CSV exports → the JSONL lines of an API export job. No Dagster import.

Layouts (facts: `shared/vendor-apis/gladly-support-tools.md`, column names exact):
- **conversation items CSV** (the Single conversation export, and `conversation-items.csv` in the
  Customer conversations ZIP): a row per item; each column is the item's JSON path (`id`,
  `customerId`, `initiator.id`, `content.type`, `content.link.url`, ...). A row becomes the item
  JSON of `conversation_items.jsonl` (nested `initiator{id,type}`, `content{...}`), exactly what
  `parse.parse_item` reads. A column not in the facts' list is carried the same way, as text.
- **conversations.csv** (`id`, `topicIds`, `customAttributes`, `customerId`, `createdAt`,
  `agentId`, `inboxId`, `status`): checked and counted only. Staging has no conversation table,
  and what it says is also in the items: status in CONVERSATION_STATUS_CHANGE items, topics in
  TOPIC_CHANGE items, the customer in every item's `customerId` (looked up over REST as usual).
- **Topics CSV** (`Id`, `Disabled`, `Name`, Name holding the parent hierarchy) → `topics.jsonl`
  lines `{id, name, disabled, parentId?}` (the leaf name, the parent's id), so tags come out named
  as for the API's topics.

Reading: the stdlib csv module, RFC 4180 (quoted cells may hold commas, quotes and line breaks;
lines end in CRLF or LF), `strict` quoting; strict UTF-8 per physical line (a UTF-8 byte order
mark opening the file is dropped). A record that is not UTF-8, not well-formed CSV, or has another
number of cells than the header is a bad row, never fatal: it becomes a marker line (below). A
header that cannot be read or lacks the layout's columns refuses the file (`CsvLayoutError`).

**Row numbers**: row N is the Nth non-blank record after the header; `line` is the physical line it
starts on (they differ after a cell with a line break). The converted JSONL has exactly one line
per row, in order, so **line N of the converted file is CSV row N**: the quarantine's line numbers
for a converted file are CSV row numbers, and its reasons say "<csv> row N".

A bad row's line is `{"id"?, "timestamp"?, ROW_ERROR_KEY: {reason, file, row, line}, "cells": {...}}`
(id and timestamp kept when readable, so reconciliation still places the lost item in its day);
staging quarantines it with that reason (`row_error`).

Assumptions (the facts file does not say; change here if a real export shows otherwise):
- empty cells mean absent (an empty string, null and a missing field look the same in a CSV);
- `content.attachments`, `content.addedTopicIds`, `content.removedTopicIds`, `content.cc`,
  `content.bcc`, and `content.to` of an EMAIL, hold a JSON array (a cell starting with `[`) or
  comma-separated values; a comma-separated attachment is taken as the attachment's id;
  `content.to` of other types (SMS, PHONE_CALL) is one phone number, as in the API;
- `content.expandByDefault` is `true`/`false` (any case); `content.recordingDuration` made of digits
  is an integer (the export schema's type), anything else is kept as text;
- Topics `Disabled` is true/false/yes/no/1/0 (any case), empty meaning false; `Name`'s levels are
  separated by `>` or `/` (spaces around allowed: "Billing > Refunds", "Billing/Refunds"). A level is
  split off only where the part before it is another row's Name, so a slash inside a topic's own
  name ("Returns/Exchanges" with no "Returns" topic) stays in the name; a topic whose parent is not
  in the file keeps its whole Name and no parent.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ITEMS, CONVERSATIONS, TOPICS = "conversation items", "conversations", "topics"
REQUIRED_COLUMNS = {
    ITEMS: ("id", "customerId", "timestamp", "content.type"),
    CONVERSATIONS: ("id", "customerId", "status", "topicIds"),
    TOPICS: ("Id", "Disabled", "Name"),
}
ROW_ERROR_KEY = "supportToolsRowError"

LIST_COLUMNS = frozenset({"content.attachments", "content.addedTopicIds", "content.removedTopicIds", "content.cc", "content.bcc"})
EMAIL_LIST_COLUMNS = frozenset({"content.to"})  # a list for EMAIL only; SMS and PHONE_CALL have one number
BOOL_COLUMNS = frozenset({"content.expandByDefault"})
INT_COLUMNS = frozenset({"content.recordingDuration"})
TOPIC_SEPARATORS = ">/"

# A cell may be as long as an export line may be (core.jsonl); the csv module's default is 128 KiB,
# below an HTML email with an inline image.
MAX_CELL_CHARS = 64 * 1024 * 1024
MAX_LINE_BYTES = 64 * 1024 * 1024 + 1
MAX_TOPIC_ROWS = 100_000  # a topics configuration is read whole (its hierarchy needs every row)
_BOM = "\ufeff"
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_TRUE, _FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0"})


class CsvLayoutError(ValueError):
    """The file as a whole is not a layout this module reads; the message (a phrase to follow the
    file's name) says why."""


class CsvRowError(ValueError):
    """One row cannot become a record; the message is the quarantine reason."""


@dataclass(frozen=True)
class CsvRecord:
    row: int  # 1-based, the header and blank records not counted
    line: int  # physical line (1-based) the record starts on
    cells: list[str]
    error: str | None  # why the record is unusable as it stands


class CsvReader:
    """Header and records of one CSV file, read in a single streaming pass (flat memory)."""

    def __init__(self, path: Path):
        self.path = path
        self._fh: IO[bytes] | None = None
        self._bad_lines: dict[int, str] = {}
        self.header: list[str] = []

    def __enter__(self) -> CsvReader:
        if csv.field_size_limit() < MAX_CELL_CHARS:
            csv.field_size_limit(MAX_CELL_CHARS)  # process-wide; only ever raised, never lowered
        self._fh = self.path.open("rb")
        try:
            self._read_header()
        except BaseException:
            self._fh.close()
            raise
        return self

    def _read_header(self) -> None:
        self._reader = csv.reader(self._decoded_lines(), strict=True)
        self._consumed = 0
        first = self._next_record()
        while first is not None and not first[2] and first[3] is None:
            first = self._next_record()  # blank lines before the header
        if first is None:
            raise CsvLayoutError("empty (no header row)")
        _, line, cells, error = first
        if error is not None:
            raise CsvLayoutError(f"header row (line {line}) cannot be read: {error}")
        self.header = [c.strip() for c in cells]
        duplicates = sorted({c for c in self.header if self.header.count(c) > 1})
        if duplicates:
            raise CsvLayoutError(f"header names a column twice: {', '.join(duplicates)[:200]}")

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()

    def __iter__(self) -> Iterator[CsvRecord]:
        row = 0
        while (record := self._next_record()) is not None:
            _, line, cells, error = record
            if not cells and error is None:
                continue  # a blank line
            row += 1
            if error is None and len(cells) != len(self.header):
                error = f"has {len(cells)} cells where the header has {len(self.header)} columns"
            yield CsvRecord(row, line, cells, error)

    def _decoded_lines(self) -> Iterator[str]:
        """Physical lines (with their line break, as csv wants), each decoded as strict UTF-8; a line
        that is not UTF-8 is passed on shown with \\xNN escapes and remembered as bad."""
        assert self._fh is not None
        line_no = 0
        while data := self._fh.readline(MAX_LINE_BYTES):
            line_no += 1
            if len(data) == MAX_LINE_BYTES and not data.endswith(b"\n"):
                while (rest := self._fh.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass  # the rest of an over-long line is dropped; its record is a bad row
                self._bad_lines[line_no] = f"line {line_no} is longer than {MAX_LINE_BYTES - 1} bytes"
                yield data[:1024].decode("utf-8", "backslashreplace") + "\n"
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._bad_lines[line_no] = (
                    f"not valid UTF-8: byte 0x{data[exc.start]:02x} at byte offset {exc.start} of line {line_no}"
                )
                text = data.decode("utf-8", "backslashreplace")
            if line_no == 1 and text.startswith(_BOM):
                text = text[len(_BOM):]
            yield text

    def _next_record(self) -> tuple[int, int, list[str], str | None] | None:
        """(lines consumed, first line, cells, error) of the next record, None at the end."""
        start = self._consumed + 1
        try:
            cells, error = next(self._reader), None
        except StopIteration:
            return None
        except csv.Error as exc:
            cells, error = [], f"not well-formed CSV: {exc}"
        self._consumed = self._reader.line_num
        bad = [self._bad_lines.pop(n) for n in range(start, self._consumed + 1) if n in self._bad_lines]
        if bad:
            error = "; ".join(bad)
        return self._consumed, start, cells, error


def classify_header(header: list[str]) -> str | None:
    """Which layout a header belongs to (ITEMS, CONVERSATIONS, TOPICS), or None."""
    names = set(header)
    for kind in (ITEMS, TOPICS, CONVERSATIONS):
        if all(c in names for c in REQUIRED_COLUMNS[kind]):
            return kind
    return None


def csv_kind(path: Path) -> str | None:
    """The layout of the CSV at `path` by its header; `CsvLayoutError` when the header is unreadable."""
    with CsvReader(path) as reader:
        return classify_header(reader.header)


def _require(header: list[str], kind: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in header]
    if missing:
        raise CsvLayoutError(
            f"not a {kind} CSV: no column {', '.join(missing)} (header starts {', '.join(header[:6])[:200]!r})"
        )


# -- conversation items ---------------------------------------------------------------------------
def item_from_cells(header: list[str], cells: list[str]) -> dict[str, Any]:
    """The export item JSON for one CSV row (empty cells absent, dotted columns nested, list,
    boolean and integer columns typed as the module docstring says); `CsvRowError` if a cell
    cannot be read."""
    content_type = cells[header.index("content.type")].strip() if "content.type" in header else ""
    item: dict[str, Any] = {}
    for column, cell in zip(header, cells):
        if cell == "":
            continue
        if column in LIST_COLUMNS or (column in EMAIL_LIST_COLUMNS and content_type == "EMAIL"):
            value: Any = _list_cell(column, cell)
        elif column in BOOL_COLUMNS:
            value = _bool_cell(column, cell)
        elif column in INT_COLUMNS and _INTEGER.fullmatch(cell.strip()):
            value = int(cell.strip())
        else:
            value = cell
        _put(item, column, value)
    return item


def _list_cell(column: str, cell: str) -> list[Any]:
    text = cell.strip()
    if "[object Object]" in text:  # what JavaScript writes for an object turned into text
        raise CsvRowError(f"{column} holds {text[:40]!r}: the export lost the objects it had")
    if text.startswith("["):
        try:
            value = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise CsvRowError(f"{column} starts like a JSON array but is not JSON ({str(exc)[:120]})") from None
        if not isinstance(value, list):
            raise CsvRowError(f"{column} is not a JSON array")
    else:
        value = [v.strip() for v in text.split(",") if v.strip()]
    if column == "content.attachments":
        value = [{"id": v} if isinstance(v, str) else v for v in value]
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _bool_cell(column: str, cell: str) -> bool:
    text = cell.strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise CsvRowError(f"{column} is {cell[:40]!r}, not true or false")


def _put(item: dict[str, Any], column: str, value: Any) -> None:
    parts = column.split(".")
    node = item
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise CsvRowError(f"column {column} and column {part} both have a value; which one is the field?")
    if isinstance(node.get(parts[-1]), dict):
        raise CsvRowError(f"column {column} has a value and so do columns below it ({column}.…)")
    node[parts[-1]] = value


def convert_items_csv(source: Path, target: Path, csv_name: str) -> dict[str, Any]:
    """Write `conversation_items.jsonl` at `target` from the items CSV at `source`: one line per
    row (line N = row N), a marker line for a bad row. Returns {rows, badRows, columns}."""
    with CsvReader(source) as reader, target.open("x", encoding="utf-8", newline="\n") as out:
        header = reader.header
        _require(header, ITEMS)
        rows = bad = 0
        for record in reader:
            rows += 1
            try:
                if record.error is not None:
                    raise CsvRowError(record.error)
                line = item_from_cells(header, record.cells)
            except CsvRowError as exc:
                bad += 1
                line = _marker(csv_name, record, header, str(exc), ("id", "id"), ("timestamp", "timestamp"))
            out.write(_dumps(line) + "\n")
    return {"rows": rows, "badRows": bad, "columns": len(header)}


def _marker(csv_name: str, record: CsvRecord, header: list[str], reason: str, *keep: tuple[str, str]) -> dict[str, Any]:
    """The line standing for a bad row: its reason and cells, plus the readable id and timestamp."""
    line: dict[str, Any] = {}
    aligned = len(record.cells) == len(header) and record.error is None
    cells = dict(zip(header, record.cells)) if aligned else None
    for column, key in keep:
        if cells and cells.get(column):
            line[key] = cells[column]
    line[ROW_ERROR_KEY] = {"reason": reason, "file": csv_name, "row": record.row, "line": record.line}
    line["cells"] = cells if cells is not None else record.cells  # by column when they line up
    return line


def row_error(obj: dict[str, Any]) -> str | None:
    """The reason recorded for a bad CSV row's marker line (with the line it starts on), or None."""
    marker = obj.get(ROW_ERROR_KEY)
    if not isinstance(marker, dict):
        return None
    return f"{marker.get('reason')} (CSV line {marker.get('line')})"


def _dumps(value: Any) -> str:
    # ensure_ascii=False keeps the text as it was; a lone surrogate cannot occur (strict UTF-8).
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# -- conversations --------------------------------------------------------------------------------
def check_conversations_csv(source: Path) -> dict[str, Any]:
    """Count the rows of conversations.csv (and the bad ones); nothing of it is staged (module docstring)."""
    with CsvReader(source) as reader:
        _require(reader.header, CONVERSATIONS)
        rows = bad = 0
        for record in reader:
            rows += 1
            bad += record.error is not None
    return {"rows": rows, "badRows": bad}


# -- topics ---------------------------------------------------------------------------------------
def convert_topics_csv(source: Path, target: Path, csv_name: str) -> dict[str, Any]:
    """Write `topics.jsonl` at `target` from the Topics CSV at `source`: one line per row (line N =
    row N), each `{id, name, disabled, parentId?}` with the hierarchy resolved (module docstring),
    a marker line for a bad row. Returns {rows, badRows, nested}."""
    with CsvReader(source) as reader:
        header = reader.header
        _require(header, TOPICS)
        records = []
        for record in reader:
            if len(records) >= MAX_TOPIC_ROWS:
                raise CsvLayoutError(f"more than {MAX_TOPIC_ROWS} rows; not a topics configuration")
            records.append(record)
    column = {name: header.index(name) for name in REQUIRED_COLUMNS[TOPICS]}
    ids_by_name: dict[str, str] = {}
    for record in records:
        if record.error is None:
            topic_id, name = record.cells[column["Id"]].strip(), record.cells[column["Name"]].strip()
            if topic_id and name:
                ids_by_name.setdefault(name, topic_id)
    nested = bad = 0
    with target.open("x", encoding="utf-8", newline="\n") as out:
        for record in records:
            try:
                if record.error is not None:
                    raise CsvRowError(record.error)
                line = _topic_line(record.cells, column, ids_by_name)
            except CsvRowError as exc:
                bad += 1
                line = _marker(csv_name, record, header, str(exc), ("Id", "id"))
            nested += "parentId" in line
            out.write(_dumps(line) + "\n")
    return {"rows": len(records), "badRows": bad, "nested": nested}


def _topic_line(cells: list[str], column: dict[str, int], ids_by_name: dict[str, str]) -> dict[str, Any]:
    topic_id, name = cells[column["Id"]].strip(), cells[column["Name"]].strip()
    line: dict[str, Any] = {}
    if topic_id:
        line["id"] = topic_id
    disabled = cells[column["Disabled"]].strip().lower()
    if disabled and disabled not in _TRUE | _FALSE:
        raise CsvRowError(f"Disabled is {cells[column['Disabled']][:40]!r}, not true or false")
    parent_id, leaf = split_topic_name(name, ids_by_name)
    if leaf:
        line["name"] = leaf  # no name: parse_topic quarantines the row with that reason
    line["disabled"] = disabled in _TRUE
    if parent_id is not None and parent_id != topic_id:
        line["parentId"] = parent_id
    return line


def split_topic_name(name: str, ids_by_name: dict[str, str]) -> tuple[str | None, str]:
    """(parent id, leaf name) of a hierarchical Name: split at the last `>` or `/` whose left part
    is another topic's whole Name; (None, name) when there is none."""
    for index in range(len(name) - 1, 0, -1):
        if name[index] not in TOPIC_SEPARATORS:
            continue
        parent, leaf = name[:index].strip(), name[index + 1:].strip()
        if parent and leaf and parent in ids_by_name:
            return ids_by_name[parent], leaf
    return None, name

