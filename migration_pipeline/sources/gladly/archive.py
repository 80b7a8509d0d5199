"""The local archive of Gladly export jobs: files byte for byte, keyed by job id, with proof.

Gladly deletes export files after 14 days, so every job the pipeline sees is archived at once
and never downloaded again. Layout under `MIGRATION_DATA_DIR`:

    archive/gladly/jobs/<jobId>/job.json          the job as the API (or Support's job.json) described it
    archive/gladly/jobs/<jobId>/<name>.jsonl      each file, byte for byte
    archive/gladly/jobs/<jobId>/archive.json      {files: {name: {bytes, sha256, lines}}, archivedAt}
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
- every export is built in the scratch folder and renamed into `jobs/` whole, so a refused or failed
  export leaves nothing behind, and one bad export never stops the others: `archive_from_landing`
  returns the archived ones and the refused ones with their reason.
No Dagster import.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from migration_pipeline.core.files import (
    atomic_write_text,
    copy_regular_file,
    remove_stale_scratch,
    scratch_dir,
)
from migration_pipeline.core.http import VendorAPIError
from migration_pipeline.sources.gladly.client import ExportJob, GladlyClient
from migration_pipeline.sources.gladly.parse import parse_timestamp

ARCHIVE_MARKER = "archive.json"
JOB_FILE = "job.json"
EXPORT_FILE_NAMES = ("agents.jsonl", "conversation_items.jsonl", "customers.jsonl", "topics.jsonl")
LANDING_NAMES = (*EXPORT_FILE_NAMES, JOB_FILE)
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

    def file_path(self, name: str) -> Path:
        return self.directory / name

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start_at < end and start < self.end_at


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


MAX_UNZIPPED_BYTES_ENV = "MIGRATION_LANDING_MAX_UNZIPPED_BYTES"
MAX_ZIP_RATIO_ENV = "MIGRATION_LANDING_MAX_ZIP_RATIO"


@dataclass(frozen=True)
class ZipLimits:
    """How far a landing ZIP may inflate before it is refused as a possible ZIP bomb. The bytes
    actually written count, not the sizes the ZIP's headers claim."""

    max_unzipped_bytes: int = 50 * GiB
    max_ratio: float = 200.0  # per member, uncompressed : compressed; real JSONL stays far below
    ratio_floor_bytes: int = 1 << 20  # small members may compress better than that
    max_members: int = 10_000

    @classmethod
    def from_env(cls) -> ZipLimits:
        return cls(
            max_unzipped_bytes=_env_number(MAX_UNZIPPED_BYTES_ENV, cls.max_unzipped_bytes, int),
            max_ratio=_env_number(MAX_ZIP_RATIO_ENV, cls.max_ratio, float),
        )


def _env_number(name: str, default: Any, kind: type) -> Any:
    raw = os.getenv(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a positive number, got {raw[:40]!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be a positive number, got {raw[:40]!r}")
    return value


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
        return [j for j in self.all_jobs() if j.overlaps(start, end)]

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
        limits = self.zip_limits or ZipLimits.from_env()
        scan = LandingScan()
        remove_stale_scratch(self.scratch_root, STALE_SCRATCH_SECONDS)
        sources, scan.rejected = _find_landing_exports(landing_dir)
        for source in sources:
            try:
                with scratch_dir(self.scratch_root) as scratch:
                    for export in source.unpack(scratch, limits):
                        try:
                            scan.archived.append(self._archive_landed(export, scratch))
                        except Exception as exc:  # noqa: BLE001 - one bad folder of a ZIP never stops the others
                            scan.rejected.append(RejectedExport(export.origin, _reason(exc)))
            except Exception as exc:  # noqa: BLE001 - one bad export never stops the scan
                scan.rejected.append(RejectedExport(str(source.path), _reason(exc)))
        return scan

    def _archive_landed(self, export: _UnpackedExport, scratch: Path) -> tuple[ArchivedJob, bool]:
        """Archive one unpacked export: its scratch folder gets archive.json and is renamed into
        `jobs/` whole."""
        files = {n: _file_facts(export.folder / n) for n in EXPORT_FILE_NAMES if (export.folder / n).is_file()}
        if not files:
            raise LandingExportError(f"no export file ({', '.join(EXPORT_FILE_NAMES)}) in it")
        digest = hashlib.sha256()
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + files[name]["sha256"].encode())
        job_id = f"landing-{digest.hexdigest()[:20]}"
        existing = self.load(job_id)
        if existing is not None and self.verify(existing):
            return existing, False
        start, end = _landing_window(export.folder)
        meta = {
            "jobId": job_id,
            "source": "landing",
            "landingPath": str(export.landing_path),
            "origin": export.origin,
            "startAt": start.isoformat(),
            "endAt": end.isoformat(),
            "updatedAt": datetime.fromtimestamp(export.landing_path.lstat().st_mtime, UTC).isoformat(),
            "archivedAt": datetime.now(UTC).isoformat(),
            "files": files,
        }
        atomic_write_text(export.folder / ARCHIVE_MARKER, json.dumps(meta, indent=1, sort_keys=True))
        self._move_into_place(export.folder, job_id, scratch)
        archived = self.load(job_id)
        assert archived is not None
        return archived, True

    def _move_into_place(self, folder: Path, job_id: str, scratch: Path) -> None:
        """Rename a finished job folder into `jobs/`; an interrupted or damaged copy already there
        is moved aside into the scratch folder (removed with it) first."""
        target = self.job_dir(job_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            try:
                target.rename(scratch / f"replaced-{uuid.uuid4().hex[:8]}")
            except FileNotFoundError:
                pass  # a concurrent run moved it first
        try:
            folder.rename(target)
        except OSError:
            # A concurrent run archived the same export first: theirs is as good as ours.
            existing = self.load(job_id)
            if existing is None or not self.verify(existing):
                raise

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
    landing_path: Path  # the ZIP or folder in the landing folder
    folder: Path  # scratch folder holding the export's files under their export names


@dataclass(frozen=True)
class _LandingSource:
    path: Path  # the ZIP, the folder, or the landing folder itself (loose files)
    kind: str  # "zip", "folder" or "loose"

    def unpack(self, scratch: Path, limits: ZipLimits) -> list[_UnpackedExport]:
        if self.kind == "zip":
            return _unpack_zip(self.path, scratch, limits)
        folder = scratch / "export"
        folder.mkdir()
        _copy_landing_files(self.path, folder)
        return [_UnpackedExport(str(self.path), self.path, folder)]


_LINK_REASON = (
    "is a symbolic link; links in the landing folder are not followed (copy the export itself here)"
)


def _find_landing_exports(landing_dir: Path) -> tuple[list[_LandingSource], list[RejectedExport]]:
    """ZIPs, then folders, then loose files; links are refused here, never followed."""
    if not landing_dir.is_dir():
        return [], []
    zips, folders, rejected = [], [], []
    for entry in sorted(landing_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        is_zip = entry.suffix.lower() == ".zip"
        if entry.is_symlink():
            if is_zip or entry.is_dir():
                rejected.append(RejectedExport(str(entry), _LINK_REASON))
            continue  # a linked loose file is refused with the loose export
        if is_zip and entry.is_file():
            zips.append(_LandingSource(entry, "zip"))
        elif entry.is_dir() and any(os.path.lexists(entry / n) for n in EXPORT_FILE_NAMES):
            folders.append(_LandingSource(entry, "folder"))
    loose = [_LandingSource(landing_dir, "loose")] if any(
        os.path.lexists(landing_dir / n) for n in EXPORT_FILE_NAMES
    ) else []
    return zips + folders + loose, rejected


def _copy_landing_files(source: Path, folder: Path) -> None:
    """Copy an export's files (and its job.json) into `folder`, refusing links and anything but
    plain files, so the archive holds what was in the landing folder at one moment."""
    for name in LANDING_NAMES:
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
            if info.is_dir() or parts[-1] not in LANDING_NAMES:
                continue
            folder = "/".join(parts[:-1])
            if parts[-1] in groups.setdefault(folder, {}):
                raise LandingExportError(f"member {info.filename!r} appears twice in the ZIP; which one is the export?")
            groups[folder][parts[-1]] = info
        if not any(n in members for members in groups.values() for n in EXPORT_FILE_NAMES):
            raise LandingExportError(f"no export file ({', '.join(EXPORT_FILE_NAMES)}) in it")
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


_DRIVE = re.compile(r"[A-Za-z]:")


def _safe_member_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The member's path components ('\\' read as a separator, as Windows tools write it);
    refuses links, encrypted members, absolute paths, drive letters and '..'."""
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        raise LandingExportError(f"member {name!r} is a symbolic link; a landing ZIP must hold plain files")
    if info.flag_bits & 0x1:
        raise LandingExportError(f"member {name!r} is encrypted; unpack it and drop the files instead")
    path = PurePosixPath(name.replace("\\", "/"))
    parts = tuple(p for p in path.parts if p != ".")
    if path.is_absolute() or (parts and _DRIVE.match(parts[0])) or ".." in parts or not parts or "\0" in name:
        raise LandingExportError(f"unsafe member path {name[:200]!r} (absolute or with '..'); refused as a whole")
    return parts


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


def _landing_window(folder: Path) -> tuple[datetime, datetime]:
    """From the export's job.json if it has one, else the whole UTC days of its items."""
    if (folder / JOB_FILE).is_file():
        return _job_json_window(folder / JOB_FILE)
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
    return start, end


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
        if w_end <= cursor:
            continue
        if w_start > cursor:
            gaps.append((cursor, min(w_start, end)))
        cursor = max(cursor, w_end)
        if cursor >= end:
            break
    if cursor < end:
        gaps.append((cursor, end))
    return [(a, b) for a, b in gaps if a < b]
