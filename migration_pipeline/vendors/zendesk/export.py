"""Zendesk's full JSON export as handed over, read line by line into typed records (facts:
`shared/vendor-apis/zendesk-freshdesk-gmail-exports.md` §1.1-1.2). No Dagster import.

A landing folder holds the export's files flat, in any mix of:
- plain NDJSON (`*.json`, `*.jsonl`, `*.ndjson`; Zendesk's own file names are UNCONFIRMED);
- the same gzipped (`*.json.gz`, ...);
- ZIPs of them (members in folders are read too).
One API-shaped object per line; its type comes from its own `url` (`.../api/v2/tickets/123.json`,
`/users/`, `/organizations/`), never from the file name. Files are read in name order, ZIP members
in name order, each line streamed (`lib/jsonl.py`: never a file whole, an over-long line reported
by its head, strict UTF-8 and JSON); a header line is not assumed (UNCONFIRMED): every line is
parsed.

`read_export` yields, in file and line order:
- `ExportRecord`: a ticket (with its `comments` when the line embeds them, else None), user or
  organization, with its file and line;
- `QuarantinedLine`: a line that cannot be used (not UTF-8, not strict JSON, not an object, no
  `id`, a type the url does not name, a field of the wrong type), with its reason and raw text
  capped at `RAW_TEXT_LIMIT`; the file goes on with its next line;
- `RefusedFile`: a file that is not read, or not to its end (not an export file, a link or a
  folder, an unsafe or bomb-like ZIP, a .gz that breaks off or inflates too far). A ZIP is checked
  whole before any line of it is yielded: a member that is a link, encrypted, or has an absolute
  or `..` path, the same member twice, or sizes beyond `InflateLimits` refuse it (zipfile never
  inflates a member past the size its header declares, so the check binds). A .gz declares no
  reliable size: it is counted while read and refused where it passes the limits, after the lines
  before that point; a consumer treats a refused file as not read.
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migration_pipeline.lib.jsonl import RAW_TEXT_LIMIT, JsonLine, read_jsonl
from migration_pipeline.lib.zips import UnsafeZipMember, safe_member_parts
from migration_pipeline.vendors.zendesk.records import (
    RecordError,
    RecordKind,
    ZendeskRecord,
    export_record,
    kind_of,
)

PLAIN_SUFFIXES = (".json", ".jsonl", ".ndjson")
# A quarantined line keeps this much of its raw text, as Gladly's staging does (the export file
# keeps all of it, and file and line say where).
READ_BUFFER = 1 << 20
GiB = 1 << 30
_NOT_EXPORT = f"is not an export file ({', '.join(PLAIN_SUFFIXES)}, the same gzipped, or a .zip of them)"


@dataclass(frozen=True)
class InflateLimits:
    """How far a .zip or .gz may inflate before it is refused as a possible bomb; the pipeline
    passes MIGRATION_LANDING_MAX_UNZIPPED_BYTES and MIGRATION_LANDING_MAX_ZIP_RATIO."""

    max_bytes: int = 50 * GiB  # a ZIP's members together, or one .gz
    max_ratio: float = 200.0  # uncompressed : compressed, per member; real NDJSON stays far below
    ratio_floor_bytes: int = 1 << 20  # small members may compress better than that
    max_members: int = 10_000

    def allowed(self, compressed: int) -> int:
        return min(self.max_bytes, max(self.ratio_floor_bytes, int(self.max_ratio * max(1, compressed))))


@dataclass(frozen=True)
class ExportRecord:
    file: str  # the file's name in the landing folder; "<zip>:<member>" for a ZIP member
    line_no: int
    record: ZendeskRecord
    obj: dict[str, Any] | None = field(default=None, compare=False, repr=False)  # the line as parsed JSON


@dataclass(frozen=True)
class ExportObject:
    """A line's JSON object and the type its `url` names, not yet checked (`read_export_objects`)."""

    file: str
    line_no: int
    kind: RecordKind
    obj: dict[str, Any]


@dataclass(frozen=True)
class QuarantinedLine:
    file: str
    line_no: int
    reason: str
    raw_text: str


@dataclass(frozen=True)
class RefusedFile:
    file: str
    reason: str


ExportEntry = ExportRecord | QuarantinedLine | RefusedFile


class _Refused(Exception):
    """A file (or ZIP) that is not read further; the message is the reason."""


def read_export(landing: Path, limits: InflateLimits | None = None) -> Iterator[ExportEntry]:
    """Every entry of every export file in the `landing` folder (names starting with `.` are
    ignored: uploads in progress, system files); nothing when there is no such folder."""
    if not landing.is_dir():
        return
    for path in sorted(landing.iterdir()):
        if not path.name.startswith("."):
            yield from read_export_file(path, limits)


def read_export_file(path: Path, limits: InflateLimits | None = None) -> Iterator[ExportEntry]:
    """Every entry of one export file: plain, .gz or .zip."""
    return _read_file(path, limits or InflateLimits(), _entry)


def read_export_objects(path: Path, limits: InflateLimits | None = None) -> Iterator[ExportObject]:
    """The JSON objects of one export file that name their type, untyped: a cheap look at every
    line (roles, requesters) before the typed read. Lines that are not such objects and refused
    files are left out here; `read_export_file` reports them."""
    for entry in _read_file(path, limits or InflateLimits(), _object):
        if entry is not None and not isinstance(entry, RefusedFile):
            yield entry


def _read_file(path: Path, limits: InflateLimits, entry: Callable[[str, JsonLine], Any]) -> Iterator[Any]:
    name, lower = path.name, path.name.lower()
    if path.is_symlink():
        yield RefusedFile(name, "is a symbolic link; links in the landing folder are not followed (copy the file here)")
    elif not path.is_file():
        yield RefusedFile(name, "is not a plain file (folders are not read: drop the export's files flat)")
    elif lower.endswith(".zip"):
        yield from _read_zip(path, limits, entry)
    elif lower.endswith(".gz") and lower[:-3].endswith(PLAIN_SUFFIXES):
        allowed = limits.allowed(path.stat().st_size)
        refusal = (f"inflates beyond {allowed} bytes (a ratio of {limits.max_ratio:g}:1, at most {limits.max_bytes} "
                   f"bytes); refused as a possible gzip bomb")
        yield from _read_lines(name, _Inflated(lambda: gzip.open(path, "rb"), allowed, refusal), entry)
    elif lower.endswith(PLAIN_SUFFIXES):
        yield from _read_lines(name, path, entry)
    else:
        yield RefusedFile(name, _NOT_EXPORT)


def _read_zip(path: Path, limits: InflateLimits, entry: Callable[[str, JsonLine], Any]) -> Iterator[Any]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        yield RefusedFile(path.name, f"is not a readable ZIP ({exc})")
        return
    with archive:
        try:
            members = _checked_members(archive, limits, path.stat().st_size)
        except _Refused as exc:
            yield RefusedFile(path.name, f"{exc}; refused as a whole")
            return
        for info, member in members:
            where = f"{path.name}:{member}"
            if member.lower().endswith(PLAIN_SUFFIXES):
                # zipfile stops a member at its declared size, checked above: no count needed.
                yield from _read_lines(where, _Inflated(lambda info=info: archive.open(info), None, ""), entry)
            else:
                yield RefusedFile(where, _NOT_EXPORT)


def _checked_members(archive: zipfile.ZipFile, limits: InflateLimits, zip_bytes: int) -> list[tuple[zipfile.ZipInfo, str]]:
    """The ZIP's file members (with their '/'-separated paths) in name order, or `_Refused` for a
    link, an encrypted member, an unsafe path, a name twice, or sizes beyond `limits`."""
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise _Refused(f"{len(infos)} members, more than the {limits.max_members} an export has")
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        member = _safe_member_path(info)
        if info.is_dir():
            continue
        if member in members:
            raise _Refused(f"member {member[:200]!r} appears twice; which one is the export?")
        compressed = min(info.compress_size, zip_bytes)
        total += info.file_size
        if info.file_size > limits.allowed(compressed) or total > limits.max_bytes:
            raise _Refused(f"member {member[:200]!r} inflates to {info.file_size} bytes from {compressed} (beyond a ratio "
                           f"of {limits.max_ratio:g}:1 or {limits.max_bytes} bytes in all); a possible ZIP bomb")
        members[member] = info
    return [(members[m], m) for m in sorted(members)]


def _safe_member_path(info: zipfile.ZipInfo) -> str:
    """The member's path with '/' separators, or `_Refused` (lib/zips.py says which members are unsafe)."""
    try:
        return "/".join(safe_member_parts(info))
    except UnsafeZipMember as exc:
        raise _Refused(str(exc)) from None


def _read_lines(where: str, source: Path | _Inflated, entry: Callable[[str, JsonLine], Any]) -> Iterator[Any]:
    try:
        for line in read_jsonl(source):  # type: ignore[arg-type]  # _Inflated stands in for a Path
            yield entry(where, line)
    except _Refused as exc:
        yield RefusedFile(where, f"{exc}; read no further")
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        yield RefusedFile(where, f"cannot be read to its end ({type(exc).__name__}: {exc}); read no further")


def _object(where: str, line: JsonLine) -> ExportObject | None:
    kind = kind_of(line.obj) if line.obj is not None else None
    return ExportObject(where, line.line_no, kind, line.obj) if kind is not None else None


def _entry(where: str, line: JsonLine) -> ExportEntry:
    reason = line.error
    if line.obj is not None:
        try:
            return ExportRecord(where, line.line_no, export_record(line.obj), line.obj)
        except RecordError as exc:
            reason = str(exc)
    raw = line.raw
    if len(raw) > RAW_TEXT_LIMIT:
        raw = raw[:RAW_TEXT_LIMIT] + f" … [truncated: {len(raw) - RAW_TEXT_LIMIT} more characters not kept; the export file has the whole line]"
    return QuarantinedLine(where, line.line_no, str(reason), raw)


class _Inflated:
    """A decompressed stream offered as the two things `read_jsonl` asks of a path (`exists`,
    `open`), so gzipped and zipped files go through the very same strict, streamed line reader as
    plain ones. `allowed` bytes at most (None: no count), else `_Refused(refusal)`."""

    def __init__(self, opener: Callable[[], io.BufferedIOBase], allowed: int | None, refusal: str):
        self.opener, self.allowed, self.refusal = opener, allowed, refusal

    def exists(self) -> bool:
        return True

    def open(self, mode: str = "rb") -> io.BufferedReader:
        return io.BufferedReader(_Counted(self.opener(), self.allowed, self.refusal), READ_BUFFER)


class _Counted(io.RawIOBase):
    """`source` read through, refusing past `allowed` bytes."""

    def __init__(self, source: io.BufferedIOBase, allowed: int | None, refusal: str):
        self.source, self.left, self.refusal = source, allowed, refusal

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        # read1: what is decompressed so far, so the lines before a break in the file are read
        data = self.source.read1(len(buffer))
        if self.left is not None:
            self.left -= len(data)
            if self.left < 0:
                raise _Refused(self.refusal)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.source.close()
        super().close()
