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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from migration_pipeline.core.http import VendorAPIError
from migration_pipeline.sources.gladly.client import ExportJob, GladlyClient

ARCHIVE_MARKER = "archive.json"


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
        (directory / "job.json").write_text(job.model_dump_json(by_alias=True, indent=1), encoding="utf-8")
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
        tmp = directory / (ARCHIVE_MARKER + ".tmp")
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(directory / ARCHIVE_MARKER)
        archived = self.load(job.id)
        assert archived is not None
        return archived, True

    def verify(self, job: ArchivedJob) -> bool:
        """Every recorded file is present with the recorded size and sha256."""
        for name, meta in job.files.items():
            path = job.file_path(name)
            if not path.exists() or path.stat().st_size != meta["bytes"] or sha256_file(path) != meta["sha256"]:
                return False
        return True


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
