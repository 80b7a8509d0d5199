"""Gladly's historical conversation import files (target role): rows in, CSV batches out. No
Dagster import; the input is vendor-neutral (`ImportRow`), so any source pair can feed it.

Gladly cannot create historical email/chat items over its API; its Professional Services team
imports them from files (facts: `shared/vendor-apis/gladly-api.md` §4.4): text only, every row
needs a valid customer email or it is rejected, title ≤ 100 and body ≤ 25,000 characters, batches
of up to 500,000 rows. The template's column names are not public: they are configuration
(`ColumnNames`), defaulting to the labels of Gladly's import article.

One call of `write_import_files` writes one range (one folder per range) from a stream of rows,
never holding them all:

- `<prefix>-<first day>_<last day>-0001.csv`, `-0002.csv`, ...: at most `rows_per_file` rows each,
  the eight columns in `ColumnNames` order, written with pyarrow's CSV writer: UTF-8, every text
  value quoted (RFC 4180: `"` doubled; commas and CR/LF inside a quoted value are kept as they
  are), an empty unquoted field for an absent value, records ending in LF (pyarrow writes no
  other line end; RFC 4180 readers accept it). The rows of one split body stay in one file
  unless they alone exceed `rows_per_file`.
- `rejected.csv`: every row Gladly would refuse, with its source item id, the reason
  (`REJECT_REASONS`, first that applies) and the row as given. Nothing is dropped silently.
- `index.csv`: where each source item went (file, data row, part of parts), for reconciliation:
  the import files themselves carry no id.
- `manifest.json`: the files with rows and sha256, rows in / written / rejected (by reason),
  titles cut, bodies split, the range, the caller's source counts and the configuration.

Limits are counted in UTF-16 code units (an emoji counts 2), the stricter of the two ways a
"character" may be counted, so a row fits whichever Gladly uses. A title over the limit is cut
and ends in "…" (one unit, within the limit). A body over the limit becomes continuation rows in
order, each part within the limit and the parts concatenating back to the body exactly; a part
ends after the last line break (else space) in its final tenth, so words stay whole; every part's
title carries `continuation_marker` (" (part 2/3)"), the base title cut to leave room for it.
Timestamps are written in UTC, as RFC 3339 with milliseconds (`2024-03-01T09:30:00.123Z`, the form
of Gladly's API) unless `timestamp_format` says otherwise; one without a time zone is taken as UTC.

Re-running the same rows in the same order writes byte-identical files (no run time or random
name is written; the caller orders the rows). Every file is written to a temp file and renamed
into place; the previous manifest is removed first and the new one written last, so a folder
without `manifest.json` is incomplete, and batch files a previous run left beyond the new count
are removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.csv as pa_csv
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from migration_pipeline.lib.files import atomic_write_text, unique_sibling
from migration_pipeline.lib.rule_files import template

GLADLY_MAX_ROWS_PER_FILE = 500_000
GLADLY_MAX_TITLE = 100
GLADLY_MAX_BODY = 25_000
ELLIPSIS = "…"
REJECTED_FILE, INDEX_FILE, MANIFEST_FILE = "rejected.csv", "index.csv", "manifest.json"
MANIFEST_FORMAT = "gladly-conversation-import/1"

MISSING_TIMESTAMP, MISSING_EMAIL, INVALID_EMAIL = "missing timestamp", "missing email", "invalid email"
EMPTY_BODY, INVALID_TEXT = "empty body", "text is not valid Unicode (lone surrogate)"
REJECT_REASONS = (MISSING_TIMESTAMP, MISSING_EMAIL, INVALID_EMAIL, EMPTY_BODY, INVALID_TEXT)

# An address as mail systems accept it in practice: a dot-atom local part (no leading, trailing or
# doubled dots) and a host name of dotted labels ending in a letters-only or punycode top-level
# domain; ASCII only (Gladly's check is not public; a non-ASCII address is refused rather than risked).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_RE = re.compile(rf"(?P<local>{_ATOM}(?:\.{_ATOM})*)@(?:{_LABEL}\.)+(?:[A-Za-z]{{2,63}}|xn--[A-Za-z0-9-]{{1,59}})")
MAX_EMAIL, MAX_LOCAL_PART = 254, 64

# A record batch handed to pyarrow holds at most this many rows or body characters (measured: larger
# batches write no faster and hold more memory).
BATCH_ROWS, BATCH_BODY_CHARS = 1024, 8 << 20

ColumnName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\r\n\x00]+$")]


class ColumnNames(BaseModel):
    """The header of an import file, one name per field in file order. Defaults: the labels of
    Gladly's import article ("Conversation Item Timestamp", "Conversation Item Title" as printed
    there; the others by the same pattern); set them to the template Gladly sends."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timestamp: ColumnName = "Conversation Item Timestamp"
    title: ColumnName = "Conversation Item Title"
    body: ColumnName = "Conversation Item Body"
    source: ColumnName = "Conversation Item Source"
    customer_email: ColumnName = "Customer Email"
    customer_name: ColumnName = "Customer Name"
    customer_phone: ColumnName = "Customer Phone"
    tags: ColumnName = "Tags"

    @model_validator(mode="after")
    def _unique(self) -> ColumnNames:
        first_with: dict[str, str] = {}
        for name, column in self:
            other = first_with.setdefault(column.casefold(), name)
            if other != name:
                raise ValueError(f"column names must be unique (ignoring case): {other} and {name} are both {column!r}")
        return self

    def header(self) -> list[str]:
        return [column for _name, column in self]


class ImportFileConfig(BaseModel):
    """How import files are cut and written; Gladly's limits are the ceilings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    columns: ColumnNames = ColumnNames()
    rows_per_file: int = Field(GLADLY_MAX_ROWS_PER_FILE, ge=1, le=GLADLY_MAX_ROWS_PER_FILE)
    max_title_chars: int = Field(GLADLY_MAX_TITLE, ge=40, le=GLADLY_MAX_TITLE)
    max_body_chars: int = Field(GLADLY_MAX_BODY, ge=100, le=GLADLY_MAX_BODY)
    header: bool = Field(True, description="write the header row in every batch file")
    file_prefix: str = Field("gladly-import", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    continuation_marker: Annotated[str, template(part="1", parts="2")] = " (part {part}/{parts})"
    timestamp_format: str | None = Field(
        None, description="strftime pattern for the UTC timestamp; None: RFC 3339 with milliseconds (Gladly's API form)")

    @field_validator("continuation_marker")
    @classmethod
    def _names_the_part(cls, value: str) -> str:
        if "{part}" not in value or "{parts}" not in value:
            raise ValueError("must contain {part} and {parts}, so the parts of a body can be put back in order")
        return value

    @model_validator(mode="after")
    def _marker_fits(self) -> ImportFileConfig:
        if utf16_len(self.continuation_marker.format(part=9999, parts=9999)) > self.max_title_chars // 2:
            raise ValueError("continuation_marker must fit in half of max_title_chars")
        return self


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportRow:
    """One conversation item to import, vendor-neutral; `source_item_id` traces it back."""

    source_item_id: str
    timestamp: datetime | None
    title: str
    body: str
    source: str
    customer_email: str | None
    customer_name: str | None = None
    customer_phone: str | None = None
    tags: Sequence[str] = ()


@dataclass(frozen=True)
class ImportFile:
    """One written file: its name in the range folder, data rows (header excluded) and sha256."""

    name: str
    rows: int
    sha256: str


@dataclass
class ImportFiles:
    """What one range's writing produced and counted; `manifest()` is `manifest.json`."""

    first_day: date
    last_day: date
    config: ImportFileConfig
    source_counts: Mapping[str, int]
    files: list[ImportFile] = field(default_factory=list)
    rejected: ImportFile | None = None
    index: ImportFile | None = None
    rows_in: int = 0
    rows_written: int = 0
    continuation_rows: int = 0
    titles_cut: int = 0
    bodies_split: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    rejected_items: list[tuple[str, str]] = field(default_factory=list)  # (item id, reason), rejected.csv's order

    def manifest(self) -> dict[str, Any]:
        def described(f: ImportFile | None) -> dict[str, Any] | None:
            return f and {"name": f.name, "rows": f.rows, "sha256": f.sha256}

        return {
            "format": MANIFEST_FORMAT,
            "range": {"first_day": self.first_day.isoformat(), "last_day": self.last_day.isoformat()},
            "files": [described(f) for f in self.files],
            "rows": {"in": self.rows_in, "written": self.rows_written, "continuation": self.continuation_rows,
                     "rejected": sum(self.rejected_by_reason.values())},
            "rejected": {**described(self.rejected), "by_reason": dict(sorted(self.rejected_by_reason.items()))},
            "index": described(self.index),
            "titles_cut": self.titles_cut,
            "bodies_split": self.bodies_split,
            "source_counts": dict(sorted(self.source_counts.items())),
            "config": self.config.model_dump(mode="json"),
        }


# -- text limits (UTF-16 code units) -------------------------------------------------------------
def utf16_len(text: str) -> int:
    """Length of `text` in UTF-16 code units (a character outside the BMP counts 2)."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def fits(text: str, limit: int) -> bool:
    """Whether `text` is within `limit` UTF-16 units (measured only when the length leaves doubt)."""
    n = len(text)  # code points: at most the UTF-16 length, at least half of it
    return n <= limit // 2 or (n <= limit and utf16_len(text) <= limit)


def utf16_prefix(text: str, limit: int) -> str:
    """The start of `text` within `limit` UTF-16 units (whole characters)."""
    end = min(len(text), limit)
    while (excess := utf16_len(text[:end]) - limit) > 0:
        end -= (excess + 1) // 2  # a character is 1 or 2 units: this never drops below the longest fit
    return text[:end]


def cut_title(title: str, limit: int) -> tuple[str, bool]:
    """`title` within `limit` units, cut ones ending in an ellipsis; and whether it was cut."""
    if fits(title, limit):
        return title, False
    return utf16_prefix(title, limit - len(ELLIPSIS)).rstrip() + ELLIPSIS, True


def split_body(body: str, limit: int) -> list[str]:
    """`body` as parts within `limit` units each, in order, whose concatenation is `body`; a part
    ends after the last line break, else the last space, in its final tenth, else at the limit."""
    parts, start = [], 0
    while not fits(body[start:], limit):
        end = start + len(utf16_prefix(body[start:start + limit], limit))
        window = end - limit // 10
        cut = body.rfind("\n", window, end)
        if cut < 0:
            cut = body.rfind(" ", window, end)
        if cut > start:
            end = cut + 1
        parts.append(body[start:end])
        start = end
    parts.append(body[start:])
    return parts


# -- row checks ----------------------------------------------------------------------------------
def is_valid_email(email: str) -> bool:
    """`EMAIL_RE` and the length limits of RFC 5321 (254 in all, 64 before the @)."""
    match = EMAIL_RE.fullmatch(email)
    return bool(match) and len(email) <= MAX_EMAIL and len(match["local"]) <= MAX_LOCAL_PART


def _unicode_ok(*texts: str | None) -> bool:
    """No lone surrogate (a str Python holds but UTF-8 cannot encode) in any of `texts`."""
    for text in texts:
        if text and not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return False
    return True


def _printable(text: str | None) -> str | None:
    """`text` safe to write as UTF-8: lone surrogates shown as `\\udXXX` escapes."""
    if text is None or text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def reject_reason(row: ImportRow) -> str | None:
    """Why Gladly would refuse `row` (the first reason of `REJECT_REASONS` that applies), or None."""
    if row.timestamp is None:
        return MISSING_TIMESTAMP
    email = (row.customer_email or "").strip()
    if not email:
        return MISSING_EMAIL
    if not is_valid_email(email):
        return INVALID_EMAIL
    if not row.body or row.body.isspace():
        return EMPTY_BODY
    if not _unicode_ok(row.source_item_id, row.title, row.body, row.source, row.customer_name, row.customer_phone, *row.tags):
        return INVALID_TEXT
    return None


def join_tags(tags: Sequence[str]) -> str:
    """Tags comma-delimited (as Gladly maps Zendesk's), blanks dropped."""
    return ",".join(t for t in (tag.strip() for tag in tags) if t)


def timestamp_text(value: datetime, fmt: str | None) -> str:
    """`value` in UTC as `fmt` (strftime), or by default RFC 3339 with milliseconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # documented: naive means UTC (not the machine's zone)
    elif value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    if fmt:
        return value.strftime(fmt)
    text = value.isoformat()  # without timespec: faster, and microseconds are left out when 0
    return text[:23] + "Z" if value.microsecond else text[:19] + ".000Z"


# -- streamed CSV files --------------------------------------------------------------------------
class _HashingFile(io.RawIOBase):
    """A write-only file that hashes what passes through it (pyarrow writes into it)."""

    def __init__(self, fh: io.BufferedWriter):
        self.fh, self.sha256 = fh, hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha256.update(data)
        return self.fh.write(data)


class _CsvFile:
    """One CSV being written to a temp file beside `path`: rows buffered into record batches,
    renamed into place by `close`."""

    def __init__(self, path: Path, schema: pa.Schema, header: bool):
        self.path, self.schema, self.rows = path, schema, 0
        self.tmp = unique_sibling(path)
        self._fh = self.tmp.open("xb")
        self._sink = _HashingFile(self._fh)
        self._writer = pa_csv.CSVWriter(self._sink, schema, write_options=pa_csv.WriteOptions(include_header=header))
        self._buffer: list[tuple] = []
        self._buffered_chars = 0

    def add(self, row: tuple, chars: int = 0) -> None:
        self._buffer.append(row)
        self.rows += 1
        self._buffered_chars += chars
        if len(self._buffer) >= BATCH_ROWS or self._buffered_chars >= BATCH_BODY_CHARS:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            columns = zip(*self._buffer, strict=True)
            arrays = [pa.array(values, type=f.type) for f, values in zip(self.schema, columns, strict=True)]
            self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
            self._buffer, self._buffered_chars = [], 0

    def close(self) -> ImportFile:
        self._flush()
        self._writer.close()
        self._fh.close()
        self.tmp.replace(self.path)
        return ImportFile(self.path.name, self.rows, self._sink.sha256.hexdigest())

    def discard(self) -> None:
        self._fh.close()
        self.tmp.unlink(missing_ok=True)


def _strings(names: Iterable[str]) -> pa.Schema:
    return pa.schema([(name, pa.string()) for name in names])


INDEX_SCHEMA = pa.schema([("source_item_id", pa.string()), ("file", pa.string()), ("row", pa.int64()),
                          ("part", pa.int64()), ("parts", pa.int64())])


class _RangeWriter:
    """Writes one range's files as rows arrive; counts into `result`."""

    def __init__(self, folder: Path, label: str, result: ImportFiles):
        config = result.config
        self.folder, self.label, self.result, self.config = folder, label, result, config
        self.schema = _strings(config.columns.header())
        self.batch: _CsvFile | None = None
        self.rejected = _CsvFile(folder / REJECTED_FILE, _strings(["source_item_id", "reason", *config.columns.header()]), True)
        self.index = _CsvFile(folder / INDEX_FILE, INDEX_SCHEMA, True)

    def batch_name(self, number: int) -> str:
        return f"{self.config.file_prefix}-{self.label}-{number:04d}.csv"

    def add(self, row: ImportRow) -> None:
        result, config = self.result, self.config
        result.rows_in += 1
        reason = reject_reason(row)
        if reason:
            self._reject(row, reason)
            return
        ts = timestamp_text(row.timestamp, config.timestamp_format)
        rest = (row.source, row.customer_email.strip(), row.customer_name, row.customer_phone, join_tags(row.tags))
        if fits(row.body, config.max_body_chars):
            title, cut = cut_title(row.title or "", config.max_title_chars)
            result.titles_cut += cut
            self._room_for(1)
            self._write(row.source_item_id, (ts, title, row.body, *rest), 1, 1)
            return
        parts = split_body(row.body, config.max_body_chars)
        n = len(parts)
        marker_room = utf16_len(config.continuation_marker.format(part=n, parts=n))
        base, cut = cut_title(row.title or "", config.max_title_chars - marker_room)
        result.titles_cut += cut
        result.bodies_split += 1
        result.continuation_rows += n - 1
        self._room_for(n)
        for k, part in enumerate(parts, 1):
            title = (base + config.continuation_marker.format(part=k, parts=n)).lstrip()
            self._write(row.source_item_id, (ts, title, part, *rest), k, n)

    def _room_for(self, rows: int) -> None:
        """Start the next file when these rows (one item's) would overflow a non-empty one."""
        if self.batch and self.batch.rows and self.batch.rows + rows > self.config.rows_per_file:
            self._close_batch()

    def _write(self, item_id: str, values: tuple, part: int, parts: int) -> None:
        if self.batch is None or self.batch.rows >= self.config.rows_per_file:
            self._close_batch()
            name = self.batch_name(len(self.result.files) + 1)
            self.batch = _CsvFile(self.folder / name, self.schema, self.config.header)
        self.batch.add(values, len(values[2]))
        self.index.add((item_id, self.batch.path.name, self.batch.rows, part, parts))
        self.result.rows_written += 1

    def _close_batch(self) -> None:
        if self.batch is not None:
            self.result.files.append(self.batch.close())
            self.batch = None

    def _reject(self, row: ImportRow, reason: str) -> None:
        self.result.rejected_by_reason[reason] += 1
        self.result.rejected_items.append((row.source_item_id, reason))
        ts = row.timestamp and timestamp_text(row.timestamp, self.config.timestamp_format)
        values = (row.source_item_id, reason, ts, row.title, row.body, row.source, row.customer_email,
                  row.customer_name, row.customer_phone, ",".join(row.tags))
        self.rejected.add(tuple(map(_printable, values)), len(row.body or ""))

    def close(self) -> None:
        self._close_batch()
        self.result.rejected = self.rejected.close()
        self.result.index = self.index.close()

    def discard(self) -> None:
        for f in (self.batch, self.rejected, self.index):
            if f is not None:
                f.discard()


def write_import_files(
    rows: Iterable[ImportRow],
    folder: Path,
    first_day: date,
    last_day: date,
    *,
    source_counts: Mapping[str, int] | None = None,
    config: ImportFileConfig | None = None,
) -> ImportFiles:
    """Write the import files of the range `first_day`..`last_day` (inclusive) into `folder` (one
    folder per range) from `rows`, streamed in the caller's order; `source_counts` (e.g. comments
    read, skipped by rule) go into the manifest as given. Returns what was written and counted."""
    if first_day > last_day:
        raise ValueError(f"range ends ({last_day}) before it starts ({first_day})")
    result = ImportFiles(first_day, last_day, config or ImportFileConfig(), dict(source_counts or {}))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_FILE).unlink(missing_ok=True)  # no manifest: the folder is incomplete
    writer = _RangeWriter(folder, f"{first_day.isoformat()}_{last_day.isoformat()}", result)
    try:
        for row in rows:
            writer.add(row)
        writer.close()
    except BaseException:
        writer.discard()
        raise
    _remove_stale_batches(folder, result)
    atomic_write_text(folder / MANIFEST_FILE, json.dumps(result.manifest(), indent=1, ensure_ascii=False) + "\n")
    return result


def _remove_stale_batches(folder: Path, result: ImportFiles) -> None:
    """Batch files of an earlier run of this folder that this run did not write (it wrote fewer)."""
    written = {f.name for f in result.files}
    numbered = re.compile(rf"{re.escape(result.config.file_prefix)}-.+-\d{{4,}}\.csv")
    for path in folder.iterdir():
        if numbered.fullmatch(path.name) and path.name not in written:
            path.unlink(missing_ok=True)
