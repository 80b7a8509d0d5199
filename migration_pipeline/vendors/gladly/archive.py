"""The local archive of Gladly export jobs: files byte for byte, keyed by job id, with proof.

Gladly deletes export files after 14 days, so every job the pipeline sees is archived at once
and never downloaded again. Layout under `MIGRATION_DATA_DIR`:

    archive/gladly/jobs/<jobId>/job.json          the job as the API (or Support's job.json) described it
    archive/gladly/jobs/<jobId>/<name>.jsonl      each file, byte for byte
    archive/gladly/jobs/<jobId>/archive.json      {files: {name: {bytes, sha256, lines}}, archivedAt, layout,
                                                   windowFrom, converted: {derived name: {from, rows, ...}}}
    archive/gladly/.scratch/                      work in progress; removed when done or failed

`archive.json` is written last, so a job directory without it is an interrupted download and is
fetched again. Job ids and file names come from Gladly's API and become paths: only plain names
(`SAFE_NAME`: letters, digits, `.`, `_`, `-`, not starting with `.`, at most 128 characters, not
`job.json`/`archive.json`) are accepted; anything else raises `UnsafeExportName` before a byte is
written.

Landing folder (`MIGRATION_DATA_DIR/landing/gladly/`), as Gladly Support hands exports over:
- each `*.zip`, each folder holding export files, and the export files loose in the landing
  folder are exports; names starting with `.` are ignored (uploads in progress, system files);
- inside a ZIP, **each folder is its own export**, exactly as a folder in the landing folder is:
  `day1/conversation_items.jsonl` and `day2/conversation_items.jsonl` are two exports (origin
  `<zip>:day1/` and `<zip>:day2/`), each with its own window and `job.json`, so no member is ever
  dropped and no window claims days that only another folder covers. The same member path twice
  in one ZIP is refused;
- a `job.json` beside the files (in the folder, the ZIP folder, or the landing folder for loose
  files) gives the window (`parameters.startAt`/`endAt`, with a UTC offset); without one, the
  window is the whole UTC days of the items' timestamps;
- ZIPs are unpacked into the scratch folder, never into the landing folder, and refused as a
  whole when a member is a symbolic link, is encrypted, has an absolute or `..` path, or inflates
  beyond `ZipLimits` (total bytes actually written, and a per-member ratio once past a small
  floor): `MIGRATION_LANDING_MAX_UNZIPPED_BYTES` (default 50 GiB), `MIGRATION_LANDING_MAX_ZIP_RATIO`
  (default 200);
- symbolic links in the landing folder are never followed (a linked ZIP, folder or file is refused);
- Gladly's Support Tools Portal exports are landing exports too, recognised by their layout:
  the **GET File Export** ZIP is the export job's four JSONL files (read as above); the **Customer
  conversations** ZIP (`conversations.csv` + `conversation-items.csv`, also as a folder or loose in
  the landing folder); a **Single conversation** CSV (any `*.csv` loose in the landing folder whose
  header has the item columns); the **Topics** configuration CSV (loose, header `Id`, `Disabled`,
  `Name`). A CSV is archived byte for byte (under its layout's name, `conversation-items.csv` or
  `topics.csv`; the name it landed as is in archive.json) next to the JSONL file made from it
  (`support_tools.py`: `conversation_items.jsonl`, `topics.jsonl`, one line per CSV row, line N =
  row N), so staging and reconciliation read it as any export. Only the landed files make the job
  id; the derived ones are listed in archive.json `converted`. The Topics CSV covers no window (a
  configuration snapshot: its window is empty, so it never claims coverage) and is returned by
  `jobs_overlapping` for every window;
- every export is built in the scratch folder and renamed into `jobs/` whole, so a refused or failed
  export leaves nothing behind, and one bad export never stops the others: `archive_from_landing`
  returns the archived ones and the refused ones with their reason.
No Dagster import.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from migration_pipeline.lib.files import (
    atomic_write_text,
    copy_regular_file,
    move_into_place,
    remove_stale_scratch,
    scratch_dir,
)
from migration_pipeline.lib.http import VendorAPIError
from migration_pipeline.lib.zips import UnsafeZipMember, safe_member_parts
from migration_pipeline.vendors.gladly import support_tools
from migration_pipeline.vendors.gladly.client import ExportJob, GladlyClient
from migration_pipeline.vendors.gladly.parse import parse_timestamp

_log = logging.getLogger(__name__)

ARCHIVE_MARKER = "archive.json"
JOB_FILE = "job.json"
EXPORT_FILE_NAMES = ("agents.jsonl", "conversation_items.jsonl", "customers.jsonl", "topics.jsonl")
LANDING_NAMES = (*EXPORT_FILE_NAMES, JOB_FILE)
# Support Tools Portal CSVs, under the names they are archived as. Inside a ZIP or a folder the
# Customer conversations export is recognised by its two names; loose CSVs by their header.
ITEMS_CSV, CONVERSATIONS_CSV, TOPICS_CSV = "conversation-items.csv", "conversations.csv", "topics.csv"
GROUP_NAMES = (*LANDING_NAMES, ITEMS_CSV, CONVERSATIONS_CSV)  # what a folder (or ZIP folder) export may hold
ARCHIVED_ORIGINALS = (*EXPORT_FILE_NAMES, ITEMS_CSV, CONVERSATIONS_CSV, TOPICS_CSV)
# Files that make an export on their own (conversations.csv does not: it has no items).
EXPORT_MAKERS = (*EXPORT_FILE_NAMES, ITEMS_CSV, TOPICS_CSV)
# archive.json `layout`
JSONL_LAYOUT, CUSTOMER_CONVERSATIONS_LAYOUT = "export-jsonl", "customer-conversations-csv"
ITEMS_CSV_LAYOUT, TOPICS_CSV_LAYOUT = "conversation-items-csv", "topics-csv"
ROW_NUMBERS_NOTE = "line N of this file is data row N of the CSV (header and blank lines not counted)"
# Gladly ids are URL-safe base64 (22 characters, may start with "-" or "_"); file names are like
# "conversation_items.jsonl". A leading "." is refused: it would make ".", ".." or a hidden file.
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
RESERVED_NAMES = (ARCHIVE_MARKER, JOB_FILE)
STALE_SCRATCH_SECONDS = 24 * 3600
GiB = 1 << 30


@dataclass(frozen=True)
class ArchivedJob:
    job_id: str
    start_at: datetime
    end_at: datetime
    updated_at: datetime
    source: str  # "api" or "landing"
    directory: Path
    files: dict[str, dict[str, Any]]  # name -> {bytes, sha256, lines}
    origin: str = ""  # for a landing export: the ZIP (and folder in it) or folder it came from
    layout: str = JSONL_LAYOUT  # which landing layout it was (JSONL_LAYOUT, ..._CSV_LAYOUT)
    window_from: str = ""  # where its window came from: the API job, job.json, the items' timestamps
    # derived file -> {from: the CSV it was made from, rows, badRows, ...}
    converted: dict[str, dict[str, Any]] = field(default_factory=dict)
    configuration: bool = False  # a configuration snapshot (Topics CSV): no window, staged with every one

    def file_path(self, name: str) -> Path:
        return self.directory / name

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start_at < end and start < self.end_at

    def describe(self) -> str:
        """One line for a log: the job, its layout, where it came from and where its window came from."""
        if self.configuration:
            window = "no window (a configuration snapshot, staged with every window)"
        else:
            window = (f"window {self.start_at:%Y-%m-%d %H:%M} .. {self.end_at:%Y-%m-%d %H:%M} UTC "
                      f"from {self.window_from or 'the job'}")
        bad = sum(int(c.get("badRows", 0)) for c in self.converted.values())
        rows = f"; {bad} CSV rows unreadable (quarantined when staged)" if bad else ""
        return f"{self.job_id} ({self.layout}) from {self.origin or self.source}: {window}{rows}"


class MissingExportWindow(Exception):
    """No archived or listed export job covers part of a partition window."""


class ExportFilesGone(Exception):
    """Gladly lists the job but its files are already deleted (they live 14 days)."""

    def __init__(self, job_id: str, name: str):
        self.job_id, self.name = job_id, name
        super().__init__(
            f"export job {job_id}: file {name} is gone on Gladly's side (404). Export files are deleted "
            f"14 days after the job; ask Gladly Support to regenerate job {job_id}, or drop its files in "
            f"the landing folder."
        )


class UnsafeExportName(ValueError):
    """A job id or file name (from Gladly's API) that cannot safely be a path in the archive."""

    def __init__(self, job_id: str, what: str, name: str, reason: str):
        self.job_id, self.what, self.name, self.reason = job_id, what, name, reason
        super().__init__(
            f"export job {job_id[:140]!r}: {what} {name[:140]!r} {reason}; nothing of this job is archived "
            f"(a plain name of letters, digits, '.', '_' and '-' is expected)"
        )


class LandingExportError(Exception):
    """A landing-folder export the pipeline cannot use; the message is the reason."""


@dataclass(frozen=True)
class RejectedExport:
    """A landing export that was not archived: where it is and why."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class LandingScan:
    """What one scan of the landing folder did: every good export archived (with whether it was
    new), every bad one named with its reason."""

    archived: list[tuple[ArchivedJob, bool]] = field(default_factory=list)
    rejected: list[RejectedExport] = field(default_factory=list)


@dataclass(frozen=True)
class ZipLimits:
    """How far a landing ZIP may inflate before it is refused as a possible ZIP bomb. The bytes
    actually written count, not the sizes the ZIP's headers claim. The landing asset passes the
    settings' (MIGRATION_LANDING_MAX_UNZIPPED_BYTES and _MAX_ZIP_RATIO, `MigrationStorage.zip_limits`);
    these defaults are theirs."""

    max_unzipped_bytes: int = 50 * GiB
    max_ratio: float = 200.0  # per member, uncompressed : compressed; real JSONL stays far below
    ratio_floor_bytes: int = 1 << 20  # small members may compress better than that
    max_members: int = 10_000


def check_safe_name(job_id: str, what: str, name: str) -> str:
    """`name` if it can be one path component in the archive, else `UnsafeExportName`."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise UnsafeExportName(job_id, what, str(name), "is not a plain name (a separator, '..', a leading "
                               "'.', a control character, or longer than 128 characters)")
    if what == "file name" and name in RESERVED_NAMES:
        raise UnsafeExportName(job_id, what, name, "would overwrite the archive's own bookkeeping file")
    return name


def _check_inside(path: Path, root: Path, job_id: str, what: str, name: str) -> Path:
    """Second guard: the resolved path (links followed) stays strictly inside `root`."""
    resolved, resolved_root = path.resolve(), root.resolve()
    if resolved == resolved_root or not resolved.is_relative_to(resolved_root):
        raise UnsafeExportName(job_id, what, name, f"resolves outside {root}")
    return path


class ExportArchive:
    def __init__(self, data_dir: Path | str, zip_limits: ZipLimits | None = None):
        self.root = Path(data_dir) / "archive" / "gladly" / "jobs"
        # Beside jobs/ so a finished export is renamed into place on the same filesystem.
        self.scratch_root = self.root.parent / ".scratch"
        self.zip_limits = zip_limits

    def job_dir(self, job_id: str) -> Path:
        """The job's folder; raises `UnsafeExportName` for an id that is not a plain name."""
        check_safe_name(job_id, "job id", job_id)
        return _check_inside(self.root / job_id, self.root, job_id, "job id", job_id)

    def _job_file(self, job_id: str, name: str) -> Path:
        check_safe_name(job_id, "file name", name)
        directory = self.job_dir(job_id)
        return _check_inside(directory / name, directory, job_id, "file name", name)

    def load(self, job_id: str) -> ArchivedJob | None:
        marker = self.job_dir(job_id) / ARCHIVE_MARKER
        if not marker.exists():
            return None
        meta = json.loads(marker.read_text(encoding="utf-8"))
        return ArchivedJob(
            job_id=job_id,
            start_at=datetime.fromisoformat(meta["startAt"]),
            end_at=datetime.fromisoformat(meta["endAt"]),
            updated_at=datetime.fromisoformat(meta["updatedAt"]),
            source=meta.get("source", "api"),
            directory=self.job_dir(job_id),
            files=meta["files"],
            origin=meta.get("origin") or meta.get("landingPath") or "",
            layout=meta.get("layout") or JSONL_LAYOUT,
            window_from=meta.get("windowFrom") or ("the API job's parameters" if meta.get("source", "api") == "api" else ""),
            converted=meta.get("converted") or {},
            configuration=bool(meta.get("configuration")),
        )

    def all_jobs(self) -> list[ArchivedJob]:
        if not self.root.is_dir():
            return []
        jobs = [
            self.load(p.name)
            for p in sorted(self.root.iterdir())
            if SAFE_NAME.fullmatch(p.name) and p.is_dir() and not p.is_symlink()
        ]
        return sorted((j for j in jobs if j), key=lambda j: (j.updated_at, j.job_id))

    def jobs_overlapping(self, start: datetime, end: datetime) -> list[ArchivedJob]:
        """Jobs whose window overlaps [start, end), plus every configuration snapshot (its empty
        window never counts as coverage: `coverage_gaps` skips it)."""
        return [j for j in self.all_jobs() if j.overlaps(start, end) or j.configuration]

    def archive_from_api(self, client: GladlyClient, job: ExportJob) -> tuple[ArchivedJob, bool]:
        """Archive one job; returns (archived job, whether anything was downloaded now). The job id
        and every file name are checked before anything is written (`UnsafeExportName`)."""
        directory = self.job_dir(job.id)
        targets = {name: self._job_file(job.id, name) for name in job.files}
        existing = self.load(job.id)
        if existing is not None and self.verify(existing):
            return existing, False
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / JOB_FILE, job.model_dump_json(by_alias=True, indent=1))
        files: dict[str, dict[str, Any]] = {}
        for name, target in targets.items():
            try:
                downloaded = client.download_export_file(job.id, name, target)
            except VendorAPIError as exc:
                if exc.status == 404:
                    raise ExportFilesGone(job.id, name) from None
                raise
            files[name] = {"bytes": downloaded.bytes, "sha256": downloaded.sha256, "lines": downloaded.lines}
        meta = {
            "jobId": job.id,
            "source": "api",
            "layout": JSONL_LAYOUT,
            "windowFrom": "the API job's parameters",
            "startAt": job.parameters.start_at.isoformat(),
            "endAt": job.parameters.end_at.isoformat(),
            "updatedAt": job.updated_at.isoformat(),
            "archivedAt": datetime.now(UTC).isoformat(),
            "files": files,
        }
        atomic_write_text(directory / ARCHIVE_MARKER, json.dumps(meta, indent=1, sort_keys=True))
        archived = self.load(job.id)
        assert archived is not None
        return archived, True

    def archive_from_landing(self, landing_dir: Path) -> LandingScan:
        """Archive every export dropped in the landing folder (see the module docstring for what
        counts as one) and name every one that cannot be used, with its reason.

        Each becomes a job with id `landing-<sha256 of its files>` (dropping the same export twice
        archives it once). An export is refused, and the scan goes on with the next, when it has no
        knowable window (no items with a timestamp and no job.json), a bad job.json, a link, an
        unsafe or bomb-like ZIP, or when copying it fails; nothing of a refused export is left.
        """
        limits = self.zip_limits or ZipLimits()
        scan = LandingScan()
        remove_stale_scratch(self.scratch_root, STALE_SCRATCH_SECONDS)
        sources, scan.rejected = _find_landing_exports(landing_dir)
        for source in sources:
            try:
                with scratch_dir(self.scratch_root) as scratch:
                    for export in source.unpack(scratch, limits):
                        try:
                            archived, fresh = self._archive_landed(export, scratch)
                        except Exception as exc:  # noqa: BLE001 - one bad folder of a ZIP never stops the others
                            scan.rejected.append(RejectedExport(export.origin, _reason(exc)))
                            continue
                        scan.archived.append((archived, fresh))
                        _log.info("landing export %s: %s", "archived" if fresh else "already archived", archived.describe())
            except Exception as exc:  # noqa: BLE001 - one bad export never stops the scan
                scan.rejected.append(RejectedExport(str(source.path), _reason(exc)))
        return scan

    def _archive_landed(self, export: _UnpackedExport, scratch: Path) -> tuple[ArchivedJob, bool]:
        """Archive one unpacked export: CSVs get their JSONL made beside them, the scratch folder
        gets archive.json and is renamed into `jobs/` whole."""
        folder = export.folder
        files = {n: _file_facts(folder / n) for n in ARCHIVED_ORIGINALS if (folder / n).is_file()}
        if not any(n in files for n in EXPORT_MAKERS):
            if CONVERSATIONS_CSV in files:
                raise LandingExportError(f"{CONVERSATIONS_CSV} without {ITEMS_CSV}: the conversations have no items; "
                                         f"drop the Customer conversations ZIP whole")
            raise LandingExportError(f"no export file ({', '.join(EXPORT_MAKERS)}) in it")
        digest = hashlib.sha256()  # over the landed files only, so a new converter never re-archives
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + files[name]["sha256"].encode())
        job_id = f"landing-{digest.hexdigest()[:20]}"
        existing = self.load(job_id)
        if existing is not None and self.verify(existing):
            return existing, False
        extra = _convert_csvs(folder, files)
        landed_at = datetime.fromtimestamp(export.landing_path.lstat().st_mtime, UTC)
        if extra["configuration"]:
            start = end = landed_at  # an empty window: it claims no coverage
            extra["windowFrom"] = "none: a configuration snapshot covers no window"
        else:
            start, end, extra["windowFrom"] = _landing_window(folder)
        if export.landed_as:
            extra["landedAs"] = export.landed_as
        meta = {
            "jobId": job_id,
            "source": "landing",
            "landingPath": str(export.landing_path),
            "origin": export.origin,
            "startAt": start.isoformat(),
            "endAt": end.isoformat(),
            "updatedAt": landed_at.isoformat(),
            "archivedAt": datetime.now(UTC).isoformat(),
            "files": files,
            **extra,
        }
        atomic_write_text(export.folder / ARCHIVE_MARKER, json.dumps(meta, indent=1, sort_keys=True))
        self._move_into_place(export.folder, job_id, scratch)
        archived = self.load(job_id)
        assert archived is not None
        return archived, True

    def _move_into_place(self, folder: Path, job_id: str, scratch: Path) -> None:
        """Rename a finished job folder into `jobs/`; an interrupted or damaged copy already there
        is moved aside into the scratch folder (removed with it) first."""
        def theirs_is_good() -> bool:  # a concurrent run archived the same export first
            existing = self.load(job_id)
            return existing is not None and self.verify(existing)

        move_into_place(folder, self.job_dir(job_id), scratch, theirs_is_good)

    def verify(self, job: ArchivedJob) -> bool:
        """Every recorded file is present with the recorded size and sha256."""
        for name, meta in job.files.items():
            path = job.file_path(name)
            if not path.exists() or path.stat().st_size != meta["bytes"] or sha256_file(path) != meta["sha256"]:
                return False
        return True


def _reason(exc: Exception) -> str:
    """The refusal reason for a report: our own errors as written, others with their kind."""
    if isinstance(exc, LandingExportError):
        return str(exc)
    if isinstance(exc, zipfile.BadZipFile):
        return f"not a readable ZIP ({exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: [Errno {exc.errno}] {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


# -- landing exports ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _UnpackedExport:
    origin: str  # what the report names: the ZIP, "<zip>:<folder>/", the folder, or the landing folder
    landing_path: Path  # the ZIP, folder or CSV in the landing folder
    folder: Path  # scratch folder holding the export's files under their export names
    landed_as: dict[str, str] = field(default_factory=dict)  # archived name -> the name it landed as


@dataclass(frozen=True)
class _LandingSource:
    path: Path  # the ZIP, the folder, the CSV, or the landing folder itself (loose files)
    kind: str  # "zip", "folder", "csv" or "loose"
    companions: tuple[Path, ...] = ()  # for a loose conversation-items.csv: its conversations.csv

    def unpack(self, scratch: Path, limits: ZipLimits) -> list[_UnpackedExport]:
        if self.kind == "zip":
            return _unpack_zip(self.path, scratch, limits)
        folder = scratch / "export"
        folder.mkdir()
        if self.kind == "csv":
            return [_unpack_loose_csv(self, scratch, folder)]
        _copy_landing_files(self.path, folder, GROUP_NAMES if self.kind == "folder" else LANDING_NAMES)
        return [_UnpackedExport(str(self.path), self.path, folder)]


_LINK_REASON = (
    "is a symbolic link; links in the landing folder are not followed (copy the export itself here)"
)


def _find_landing_exports(landing_dir: Path) -> tuple[list[_LandingSource], list[RejectedExport]]:
    """ZIPs, then folders, then loose CSVs, then loose files; links are refused here, never followed."""
    if not landing_dir.is_dir():
        return [], []
    zips, folders, csvs, rejected = [], [], [], []
    entries = [e for e in sorted(landing_dir.iterdir()) if not e.name.startswith(".")]
    names = {e.name for e in entries}
    for entry in entries:
        is_zip, is_csv = entry.suffix.lower() == ".zip", entry.suffix.lower() == ".csv"
        if entry.is_symlink():
            if is_zip or is_csv or entry.is_dir():
                rejected.append(RejectedExport(str(entry), _LINK_REASON))
            continue  # a linked loose file is refused with the loose export
        if is_zip and entry.is_file():
            zips.append(_LandingSource(entry, "zip"))
        elif is_csv and entry.is_file():
            if entry.name == CONVERSATIONS_CSV and ITEMS_CSV in names:
                continue  # goes with the loose conversation-items.csv (an unzipped Customer conversations export)
            companions = (landing_dir / CONVERSATIONS_CSV,) if entry.name == ITEMS_CSV and CONVERSATIONS_CSV in names else ()
            csvs.append(_LandingSource(entry, "csv", companions))
        elif entry.is_dir() and any(os.path.lexists(entry / n) for n in (*EXPORT_FILE_NAMES, ITEMS_CSV, CONVERSATIONS_CSV)):
            folders.append(_LandingSource(entry, "folder"))
    loose = [_LandingSource(landing_dir, "loose")] if any(
        os.path.lexists(landing_dir / n) for n in EXPORT_FILE_NAMES
    ) else []
    return zips + folders + csvs + loose, rejected


def _unpack_loose_csv(source: _LandingSource, scratch: Path, folder: Path) -> _UnpackedExport:
    """A CSV loose in the landing folder, recognised by its header: a Single conversation (or an
    unzipped Customer conversations) export or the Topics configuration. It is copied first and the
    copy is read, so what is classified is what is archived."""
    incoming = scratch / "incoming.csv"
    copy_regular_file(source.path, incoming)
    try:
        kind = support_tools.csv_kind(incoming)
    except support_tools.CsvLayoutError as exc:
        raise LandingExportError(f"{source.path.name}: {exc}") from None
    if kind == support_tools.CONVERSATIONS:
        raise LandingExportError(
            f"{source.path.name} lists conversations (id, topicIds, status, ...) but holds no items; drop the "
            f"Customer conversations ZIP whole ({CONVERSATIONS_CSV} with {ITEMS_CSV})"
        )
    if kind is None or (source.companions and kind != support_tools.ITEMS):
        raise LandingExportError(
            f"{source.path.name} is not a Support Tools export this pipeline reads: expected the item columns "
            f"({', '.join(support_tools.REQUIRED_COLUMNS[support_tools.ITEMS])}, ...) of a conversation export, or "
            f"the Topics CSV ({', '.join(support_tools.REQUIRED_COLUMNS[support_tools.TOPICS])})"
        )
    name = ITEMS_CSV if kind == support_tools.ITEMS else TOPICS_CSV
    incoming.rename(folder / name)
    for companion in source.companions:
        copy_regular_file(companion, folder / CONVERSATIONS_CSV)
    landed_as = {name: source.path.name} if source.path.name != name else {}
    return _UnpackedExport(str(source.path), source.path, folder, landed_as)


def _copy_landing_files(source: Path, folder: Path, names: tuple[str, ...]) -> None:
    """Copy an export's files (and its job.json) into `folder`, refusing links and anything but
    plain files, so the archive holds what was in the landing folder at one moment."""
    for name in names:
        path = source / name
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(mode):
            raise LandingExportError(f"{name} {_LINK_REASON}")
        if not stat.S_ISREG(mode):
            raise LandingExportError(f"{name} is not a regular file")
        copy_regular_file(path, folder / name)


def _unpack_zip(path: Path, scratch: Path, limits: ZipLimits) -> list[_UnpackedExport]:
    """Each folder of the ZIP holding export files becomes one export in `scratch`. The whole ZIP
    is refused for any unsafe member, even one the pipeline would not use."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            raise LandingExportError(f"{len(infos)} members, more than the {limits.max_members} an export has")
        groups: dict[str, dict[str, zipfile.ZipInfo]] = {}
        for info in infos:
            parts = _safe_member_parts(info)
            if info.is_dir() or parts[-1] not in GROUP_NAMES:
                continue
            folder = "/".join(parts[:-1])
            if parts[-1] in groups.setdefault(folder, {}):
                raise LandingExportError(f"member {info.filename!r} appears twice in the ZIP; which one is the export?")
            groups[folder][parts[-1]] = info
        if not any(n in members for members in groups.values() for n in (*EXPORT_FILE_NAMES, ITEMS_CSV)):
            raise LandingExportError(f"no export file ({', '.join((*EXPORT_FILE_NAMES, ITEMS_CSV))}) in it")
        inflater = _Inflater(limits, path.stat().st_size)
        exports = []
        for index, folder in enumerate(sorted(groups)):
            target = scratch / f"export-{index}"
            target.mkdir()
            for name, info in sorted(groups[folder].items()):
                inflater.extract(archive, info, target / name)
            origin = f"{path}:{folder}/" if folder else str(path)
            exports.append(_UnpackedExport(origin, path, target))
        return exports


def _safe_member_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    try:
        return safe_member_parts(info)
    except UnsafeZipMember as exc:
        raise LandingExportError(str(exc)) from None


class _Inflater:
    """Extracts members while counting the bytes actually written against `ZipLimits` (headers
    can lie about sizes)."""

    def __init__(self, limits: ZipLimits, zip_bytes: int):
        self.limits, self.zip_bytes, self.total = limits, zip_bytes, 0

    def extract(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
        limits = self.limits
        compressed = max(1, min(info.compress_size, self.zip_bytes))
        allowed = max(limits.ratio_floor_bytes, limits.max_ratio * compressed)
        written = 0
        with archive.open(info) as src, target.open("xb") as out:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                self.total += len(chunk)
                if self.total > limits.max_unzipped_bytes:
                    raise LandingExportError(
                        f"expands to more than {limits.max_unzipped_bytes} bytes uncompressed "
                        f"(MIGRATION_LANDING_MAX_UNZIPPED_BYTES); refused as a possible ZIP bomb"
                    )
                if written > allowed:
                    raise LandingExportError(
                        f"member {info.filename!r} inflates beyond a ratio of {limits.max_ratio:g}:1 "
                        f"({compressed} bytes compressed; MIGRATION_LANDING_MAX_ZIP_RATIO); refused as a "
                        f"possible ZIP bomb"
                    )
                out.write(chunk)


def _convert_csvs(folder: Path, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Make the JSONL files of an export's Support Tools CSVs beside them (adding their facts to
    `files`); returns archive.json's `layout`, `converted`, `configuration` (and `conversations`)."""
    extra: dict[str, Any] = {"layout": JSONL_LAYOUT, "converted": {}, "configuration": False}
    plans = ((ITEMS_CSV, "conversation_items.jsonl", support_tools.convert_items_csv),
             (TOPICS_CSV, "topics.jsonl", support_tools.convert_topics_csv))
    for csv_name, jsonl_name, convert in plans:
        if csv_name not in files:
            continue
        if jsonl_name in files:
            raise LandingExportError(f"holds both {jsonl_name} and {csv_name}; which one is the export?")
        try:
            facts = convert(folder / csv_name, folder / jsonl_name, csv_name)
        except support_tools.CsvLayoutError as exc:
            raise LandingExportError(f"{csv_name}: {exc}") from None
        files[jsonl_name] = _file_facts(folder / jsonl_name)
        extra["converted"][jsonl_name] = {"from": csv_name, **facts, "lineNumbers": ROW_NUMBERS_NOTE}
    if CONVERSATIONS_CSV in files:
        try:
            extra["conversations"] = support_tools.check_conversations_csv(folder / CONVERSATIONS_CSV)
        except support_tools.CsvLayoutError as exc:
            raise LandingExportError(f"{CONVERSATIONS_CSV}: {exc}") from None
    if TOPICS_CSV in files:
        extra["layout"], extra["configuration"] = TOPICS_CSV_LAYOUT, ITEMS_CSV not in files
    elif ITEMS_CSV in files:
        extra["layout"] = CUSTOMER_CONVERSATIONS_LAYOUT if CONVERSATIONS_CSV in files else ITEMS_CSV_LAYOUT
    return extra


WINDOW_FROM_JOB_JSON = "job.json"
WINDOW_FROM_ITEMS = "the items' timestamps (whole UTC days, first to last; no job.json)"


def _landing_window(folder: Path) -> tuple[datetime, datetime, str]:
    """(start, end, where it came from): the export's job.json if it has one, else the whole UTC
    days of its items."""
    if (folder / JOB_FILE).is_file():
        return (*_job_json_window(folder / JOB_FILE), WINDOW_FROM_JOB_JSON)
    first = last = None
    items = folder / "conversation_items.jsonl"
    if items.exists():
        with items.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    ts = parse_timestamp(json.loads(line).get("timestamp"))
                except (ValueError, TypeError, AttributeError, OverflowError, RecursionError):
                    continue  # staging quarantines the line with its reason
                first = ts if first is None or ts < first else first
                last = ts if last is None or ts > last else last
    if first is None or last is None:
        raise LandingExportError(
            "no conversation item with a timestamp and no job.json, so the window it covers is "
            "unknown; add a job.json with parameters.startAt/endAt next to the files"
        )
    start = first.replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        end = last.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    except OverflowError:
        raise LandingExportError(f"an item timestamp ({last.isoformat()}) is at the end of the calendar") from None
    return start, end, WINDOW_FROM_ITEMS


def _job_json_window(path: Path) -> tuple[datetime, datetime]:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise LandingExportError(f"job.json is not JSON ({str(exc)[:120]})") from None
    params = body.get("parameters") if isinstance(body, dict) else None
    if not isinstance(params, dict):
        raise LandingExportError("job.json has no parameters object with startAt/endAt")
    try:
        start = parse_timestamp(params.get("startAt"), "job.json parameters.startAt")
        end = parse_timestamp(params.get("endAt"), "job.json parameters.endAt")
    except (ValueError, OverflowError) as exc:
        raise LandingExportError(str(exc)) from None
    if not start < end:
        raise LandingExportError(f"job.json parameters.endAt ({end.isoformat()}) is not after startAt ({start.isoformat()}): "
                                 f"its window is empty or ends before it starts")
    return start, end


def _file_facts(path: Path) -> dict[str, Any]:
    digest, size, lines, last = hashlib.sha256(), 0, 0, b"\n"
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if size and last != b"\n":
        lines += 1
    return {"bytes": size, "sha256": digest.hexdigest(), "lines": lines}


def sha256_file(path: Path) -> str:
    return _file_facts(path)["sha256"]


def coverage_gaps(
    windows: list[tuple[datetime, datetime]], start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """Parts of [start, end) that no window covers, merged and in order."""
    gaps: list[tuple[datetime, datetime]] = []
    cursor = start
    for w_start, w_end in sorted(windows):
        if w_end <= cursor or w_start >= w_end:  # an empty window (a configuration snapshot) covers nothing
            continue
        if w_start > cursor:
            gaps.append((cursor, min(w_start, end)))
        cursor = max(cursor, w_end)
        if cursor >= end:
            break
    if cursor < end:
        gaps.append((cursor, end))
    return [(a, b) for a, b in gaps if a < b]
