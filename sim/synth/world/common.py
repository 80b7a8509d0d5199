"""Helpers every part of the synthetic data generator shares: the clock units, deterministic seeds
and ids, compact JSON lines, timestamp formats, and `MessLog` (one kind of planted mess: an exact
count and where it is). Nothing here knows a vendor."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import date, datetime, timezone
from typing import Any

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
MESS_EXAMPLES_CAP = 200


def make_id(seed: int, *parts: object) -> str:
    """A 22-character URL-safe id, a hash of the seed and the parts."""
    key = "|".join([str(seed), *map(str, parts)]).encode("utf-8")
    return base64.urlsafe_b64encode(hashlib.blake2b(key, digest_size=16).digest()).decode("ascii")[:22]


def derive_seed(seed: int, *parts: object) -> int:
    """An integer seed for a purpose-specific `random.Random`, independent of other purposes."""
    key = "|".join([str(seed), *map(str, parts)]).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def dumps(value: Any) -> str:
    """One NDJSON line body: compact, UTF-8 kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def fmt_ms(ms: int) -> str:
    """RFC3339 UTC with milliseconds: 2019-07-01T11:46:45.010Z."""
    sec, milli = divmod(ms, 1000)
    t = time.gmtime(sec)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"
            f"{t.tm_sec:02d}.{milli:03d}Z")


def fmt_nanos(ms: int, extra_nanos: int) -> str:
    """RFC3339 with nanosecond digits, trailing zeros dropped, like '2019-02-21T07:15:19.07272933Z'."""
    sec, milli = divmod(ms, 1000)
    t = time.gmtime(sec)
    frac = f"{milli * 1_000_000 + extra_nanos:09d}".rstrip("0") or "0"
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{frac}Z"


def fmt_s(seconds: int) -> str:
    """UTC, whole seconds, `Z`: 2019-07-01T11:46:45Z."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_when(ms: int) -> str:
    """How mail clients print a date in a quote header."""
    return time.strftime("%a, %b %d, %Y at %I:%M %p", time.gmtime(ms // 1000))


def date_ms(d: date) -> int:
    """Midnight UTC of `d`, in epoch milliseconds."""
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()) * 1000


class MessLog:
    """One kind of mess: an exact count and up to `cap` concrete locations."""

    def __init__(self, cap: int = MESS_EXAMPLES_CAP):
        self.cap = cap
        self.count = 0
        self.where: list[Any] = []

    def add(self, entry: Any) -> None:
        self.count += 1
        if len(self.where) < self.cap:
            self.where.append(entry)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "complete": self.count == len(self.where), "where": self.where}
