"""Gladly's export jobs as its scheduler makes them (`plan_jobs`) and the writer of their NDJSON
files (`JobFileWriter`), for the Gladly writer."""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any, Literal

from sim.synth.dataset import EXPORT_FILES, RETENTION_DAYS, DatasetLayout
from sim.synth.world.common import DAY_MS, HOUR_MS, MINUTE_MS, derive_seed, fmt_ms, fmt_nanos, make_id

MAX_OPEN_FILES = 128
Frequency = Literal["daily", "hourly"]

@dataclass
class Job:
    id: str
    kind: str  # scheduled | one_time | failed | in_progress
    start_ms: int
    end_ms: int
    updated_ms: int
    updated_at: str
    status: str
    schedule_id: str
    has_items: bool = False

    def files(self) -> list[str]:
        if self.status != "COMPLETED":
            return []
        if self.has_items:
            return list(EXPORT_FILES)
        return ["agents.jsonl", "topics.jsonl"]

    def api(self) -> dict[str, Any]:
        """The Export Job as `GET /export/jobs/{id}` returns it (§2.3)."""
        return {"id": self.id, "scheduleId": self.schedule_id, "status": self.status, "updatedAt": self.updated_at,
                "parameters": {"type": "CONVERSATIONS", "startAt": fmt_ms(self.start_ms), "endAt": fmt_ms(self.end_ms)},
                "files": self.files()}

    def expired(self, as_of_ms: int) -> bool:
        return self.updated_ms <= as_of_ms - RETENTION_DAYS * DAY_MS


@dataclass
class JobPlan:
    scheduled: list[Job]
    window_ms: int
    one_time: Job | None
    extras: list[Job]

    def all(self) -> list[Job]:
        jobs = [*self.scheduled, *([self.one_time] if self.one_time else []), *self.extras]
        return sorted(jobs, key=lambda j: (j.updated_ms, j.id))


def _stamp(rng: random.Random, ms: int, nanos: bool) -> tuple[int, str]:
    return ms, fmt_nanos(ms, rng.randrange(1_000_000)) if nanos else fmt_ms(ms)


def plan_jobs(seed: int, start_ms: int, end_ms: int, as_of_ms: int, frequency: Frequency,
              one_time_job: bool) -> JobPlan:
    """The jobs Gladly would have made: the schedule's, Support's one-time job, and the mishaps."""
    rng = random.Random(derive_seed(seed, "jobs"))
    window = DAY_MS if frequency == "daily" else HOUR_MS
    schedule_id = make_id(seed, "schedule")
    scheduled: list[Job] = []
    for k, ws in enumerate(range(start_ms, end_ms, window)):
        jitter = rng.randrange(55 * MINUTE_MS) if frequency == "daily" else rng.randrange(10 * MINUTE_MS)
        ms, stamp = _stamp(rng, ws + window + 2 * HOUR_MS + jitter, k % 3 == 0)
        scheduled.append(Job(make_id(seed, "job", "scheduled", ws), "scheduled", ws, ws + window, ms, stamp,
                             "COMPLETED", schedule_id))
    one_time = None
    if one_time_job and scheduled:
        first_visible = next((j for j in scheduled if not j.expired(as_of_ms)), scheduled[-1])
        ot_end = min(end_ms, first_visible.start_ms + DAY_MS)
        ms, stamp = _stamp(rng, end_ms - DAY_MS + 3 * HOUR_MS + rng.randrange(HOUR_MS), True)
        one_time = Job(make_id(seed, "job", "one_time", start_ms), "one_time", start_ms, ot_end, ms, stamp,
                       "COMPLETED", schedule_id)
    extras: list[Job] = []
    if scheduled:
        target = scheduled[-2] if len(scheduled) >= 2 else scheduled[-1]
        ms, stamp = _stamp(rng, target.updated_ms - 25 * MINUTE_MS, False)
        extras.append(Job(make_id(seed, "job", "failed", target.start_ms), "failed", target.start_ms, target.end_ms,
                          ms, stamp, "FAILED", schedule_id))
        last = scheduled[-1]
        ms, stamp = _stamp(rng, end_ms + 3 * HOUR_MS + rng.randrange(HOUR_MS), True)
        extras.append(Job(make_id(seed, "job", "in_progress", last.start_ms), "in_progress", last.start_ms,
                          last.end_ms, ms, stamp, "IN_PROGRESS", schedule_id))
    return JobPlan(scheduled, window, one_time, extras)


# =========================================================================== writing


class JobFileWriter:
    """Appends lines to per-job files through a small LRU of open handles, counting lines and
    hashing bytes as they go, so the manifest needs no second read of the files."""

    def __init__(self, layout: DatasetLayout, max_open: int = MAX_OPEN_FILES):
        self.layout = layout
        self.max_open = max_open
        self.handles: OrderedDict[tuple[str, str], IO[bytes]] = OrderedDict()
        self.lines: dict[tuple[str, str], int] = {}
        self.hashes: dict[tuple[str, str], Any] = {}
        self.bytes_written = 0

    def write(self, job_id: str, name: str, lines: Iterable[str]) -> int:
        """Append lines (no trailing newline in each); return the 1-based number of the first."""
        key = (job_id, name)
        fh = self.handles.get(key)
        if fh is None:
            path = self.layout.job_file(job_id, name)
            if key not in self.lines:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.lines[key] = 0
                self.hashes[key] = hashlib.sha256()
                fh = path.open("wb")
            else:
                fh = path.open("ab")
            self.handles[key] = fh
            if len(self.handles) > self.max_open:
                _, old = self.handles.popitem(last=False)
                old.close()
        else:
            self.handles.move_to_end(key)
        first = self.lines[key] + 1
        data_lines = list(lines)
        data = ("\n".join(data_lines) + "\n").encode("utf-8")
        fh.write(data)
        self.hashes[key].update(data)
        self.lines[key] += len(data_lines)
        self.bytes_written += len(data)
        return first

    def close(self) -> None:
        for fh in self.handles.values():
            fh.close()
        self.handles.clear()

