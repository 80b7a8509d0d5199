"""The local archive of Gladly export jobs: files byte for byte, keyed by job id, with proof.

Gladly deletes export files after 14 days, so every job the pipeline sees is archived at once
and never downloaded again. Layout under `MIGRATION_DATA_DIR`:

    archive/gladly/jobs/<jobId>/job.json          the job as the API described it
    archive/gladly/jobs/<jobId>/<name>.jsonl      each file, byte for byte
    archive/gladly/jobs/<jobId>/archive.json      {files: {name: {bytes, sha256, lines}}, archivedAt}

`archive.json` is written last, so a job directory without it is an interrupted download and is
fetched again. No Dagster import.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from migration_pipeline.core.files import atomic_write_text, unique_sibling
from migration_pipeline.core.http import VendorAPIError
from migration_pipeline.sources.gladly.client import ExportJob, GladlyClient

ARCHIVE_MARKER = "archive.json"
EXPORT_FILE_NAMES = ("agents.jsonl", "conversation_items.jsonl", "customers.jsonl", "topics.jsonl")


@dataclass(frozen=True)
class ArchivedJob:
    job_id: str
    start_at: datetime
    end_at: datetime
    updated_at: datetime
    source: str  # "api" or "landing"
    directory: Path
    files: dict[str, dict[str, Any]]  # name -> {bytes, sha256, lines}

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


class ExportArchive:
    def __init__(self, data_dir: Path | str):
        self.root = Path(data_dir) / "archive" / "gladly" / "jobs"

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

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
        )

    def all_jobs(self) -> list[ArchivedJob]:
        if not self.root.is_dir():
            return []
        jobs = [self.load(p.name) for p in sorted(self.root.iterdir()) if p.is_dir()]
        return sorted((j for j in jobs if j), key=lambda j: (j.updated_at, j.job_id))

    def jobs_overlapping(self, start: datetime, end: datetime) -> list[ArchivedJob]:
        return [j for j in self.all_jobs() if j.overlaps(start, end)]

    def archive_from_api(self, client: GladlyClient, job: ExportJob) -> tuple[ArchivedJob, bool]:
        """Archive one job; returns (archived job, whether anything was downloaded now)."""
        existing = self.load(job.id)
        if existing is not None and self.verify(existing):
            return existing, False
        directory = self.job_dir(job.id)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / "job.json", job.model_dump_json(by_alias=True, indent=1))
        files: dict[str, dict[str, Any]] = {}
        for name in job.files:
            try:
                downloaded = client.download_export_file(job.id, name, directory / name)
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

    def archive_from_landing(self, landing_dir: Path) -> list[tuple[ArchivedJob, bool]]:
        """Archive every export dropped in the landing folder, as Gladly Support hands them over:
        a ZIP of the JSONL files, a folder of them, or the files loose in the landing folder.

        Each becomes a job with id `landing-<sha256 of its files>` (dropping the same export twice
        archives it once) and a window from a `job.json` beside the files if there is one, else
        from its items' timestamps (whole UTC days). An export without items or job.json has no
        knowable window and raises `LandingExportError`.
        """
        results = []
        for source in _landing_exports(landing_dir):
            with source.open_members() as members:
                digest = hashlib.sha256()
                for name in sorted(members):
                    digest.update(name.encode() + b"\0" + members[name]["sha256"].encode())
                job_id = f"landing-{digest.hexdigest()[:20]}"
                existing = self.load(job_id)
                if existing is not None and self.verify(existing):
                    results.append((existing, False))
                    continue
                directory = self.job_dir(job_id)
                directory.mkdir(parents=True, exist_ok=True)
                files = {}
                for name, meta in members.items():
                    staged_copy = unique_sibling(directory / name)
                    shutil.copyfile(meta["path"], staged_copy)
                    staged_copy.replace(directory / name)
                    files[name] = {k: meta[k] for k in ("bytes", "sha256", "lines")}
                start, end = source.window(directory)
            meta = {
                "jobId": job_id,
                "source": "landing",
                "landingPath": str(source.path),
                "startAt": start.isoformat(),
                "endAt": end.isoformat(),
                "updatedAt": datetime.fromtimestamp(source.path.stat().st_mtime, UTC).isoformat(),
                "archivedAt": datetime.now(UTC).isoformat(),
                "files": files,
            }
            atomic_write_text(directory / ARCHIVE_MARKER, json.dumps(meta, indent=1, sort_keys=True))
            archived = self.load(job_id)
            assert archived is not None
            results.append((archived, True))
        return results

    def verify(self, job: ArchivedJob) -> bool:
        """Every recorded file is present with the recorded size and sha256."""
        for name, meta in job.files.items():
            path = job.file_path(name)
            if not path.exists() or path.stat().st_size != meta["bytes"] or sha256_file(path) != meta["sha256"]:
                return False
        return True


class LandingExportError(Exception):
    """A landing-folder export the pipeline cannot use, with the path and the reason."""


@dataclass
class _LandingExport:
    path: Path  # the ZIP, the folder, or the landing folder itself (loose files)

    def open_members(self):
        return _Members(self)

    def window(self, directory: Path) -> tuple[datetime, datetime]:
        job_file = (self.path / "job.json") if self.path.is_dir() else None
        if job_file is not None and job_file.exists():
            params = json.loads(job_file.read_text(encoding="utf-8")).get("parameters", {})
            return datetime.fromisoformat(params["startAt"]), datetime.fromisoformat(params["endAt"])
        first = last = None
        items = directory / "conversation_items.jsonl"
        if items.exists():
            with items.open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        ts = datetime.fromisoformat(json.loads(line)["timestamp"]).astimezone(UTC)
                    except (ValueError, KeyError, TypeError, AttributeError):
                        continue
                    first = ts if first is None or ts < first else first
                    last = ts if last is None or ts > last else last
        if first is None or last is None:
            raise LandingExportError(
                f"{self.path}: no conversation item with a timestamp and no job.json, so the window it "
                f"covers is unknown; add a job.json with parameters.startAt/endAt next to the files"
            )
        start = first.replace(hour=0, minute=0, second=0, microsecond=0)
        end = last.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        return start, end


class _Members:
    """The export's JSONL files as local paths with size, sha256 and line counts (ZIPs unpacked
    to a temporary folder that is removed afterwards)."""

    def __init__(self, export: _LandingExport):
        self.export = export
        self.tmp: Path | None = None

    def __enter__(self) -> dict[str, dict[str, Any]]:
        path = self.export.path
        found: dict[str, Path] = {}
        if path.suffix.lower() == ".zip":
            self.tmp = unique_sibling(path, ".unpacked")
            self.tmp.mkdir()
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    name = Path(info.filename).name
                    if name in EXPORT_FILE_NAMES and not info.is_dir():
                        target = self.tmp / name
                        with archive.open(info) as src, target.open("wb") as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
                        found[name] = target
        else:
            found = {name: path / name for name in EXPORT_FILE_NAMES if (path / name).is_file()}
        return {name: {"path": p, **_file_facts(p)} for name, p in found.items()}

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _landing_exports(landing_dir: Path) -> list[_LandingExport]:
    if not landing_dir.is_dir():
        return []
    exports = [_LandingExport(p) for p in sorted(landing_dir.glob("*.zip"))]
    exports += [
        _LandingExport(p)
        for p in sorted(landing_dir.iterdir())
        if p.is_dir() and not p.name.startswith(".") and any((p / n).is_file() for n in EXPORT_FILE_NAMES)
    ]
    if any((landing_dir / n).is_file() for n in EXPORT_FILE_NAMES):
        exports.append(_LandingExport(landing_dir))
    return exports


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
