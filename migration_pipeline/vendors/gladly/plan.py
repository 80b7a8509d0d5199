"""A dry run into Gladly: every write a load would send, recorded instead of sent. No Dagster import.

`PlanningTarget` is a `GladlyTarget` whose writes (`_write`: POST, PATCH, PUT, DELETE) go to a
`WritePlan` and are answered as Gladly answers a write that is applied (201 without a body, 204),
so the loaders run their real code path: the same persons, bodies, ids and order. Its reads (a
profile by id, email or phone; an item by id) are sent through the real client: the same session,
pacing, organization budget and retries. Before a profile create it asks what a 409 would lead the
real run to (the profile holding an email, a mobile number or the id), so a profile Gladly already
holds is planned as matched and completed, never as a create.

`WritePlan` writes one JSONL file per kind under its folder (a run's `dry-run/<run id>/`):
`profiles.jsonl`, `activity_items.jsonl` (and `topics.jsonl`, `other_writes.jsonl` when any),
one line per write: `method`, `path` and `body`, the body exactly as a real run would send it.
Credentials are never part of a body.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from migration_pipeline.vendors.gladly.client import GladlyClient
from migration_pipeline.vendors.gladly.profiles import GladlyTarget, ProfileFields, ProfileOutcome, new_id

PROFILES, ACTIVITY_ITEMS = "profiles", "activity_items"
_KINDS = (
    (PROFILES, re.compile(r"^/customer-profiles(/[^/]+)?$")),
    (ACTIVITY_ITEMS, re.compile(r"^/customers/[^/]+/conversation-items$")),
    ("topics", re.compile(r"^/topics(/[^/]+)?$")),
)
OTHER = "other_writes"
# A planned write's answer is never sent anywhere: the URL only gives httpx.Response a request.
_NOWHERE = "https://dry-run.invalid/api/v1"


def kind_of(path: str) -> str:
    """The plan file a write to `path` goes to."""
    return next((kind for kind, pattern in _KINDS if pattern.match(path)), OTHER)


class WritePlan:
    """The writes of a dry run, one JSONL file per kind under `out_dir` (profiles.jsonl and
    activity_items.jsonl always exist, empty when nothing would be sent). Close it (or use `with`)."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.counts: Counter[str] = Counter()
        self._files = {kind: self.path(kind).open("a", encoding="utf-8") for kind in (PROFILES, ACTIVITY_ITEMS)}

    def path(self, kind: str) -> Path:
        return self.out_dir / f"{kind}.jsonl"

    def record(self, method: str, path: str, body: dict[str, Any]) -> None:
        kind = kind_of(path)
        if kind not in self._files:
            self._files[kind] = self.path(kind).open("a", encoding="utf-8")
        self._files[kind].write(json.dumps({"method": method, "path": path, "body": body}, ensure_ascii=False) + "\n")
        self._files[kind].flush()
        self.counts[kind] += 1

    def planned(self, kind: str) -> int:
        """How many writes of `kind` were recorded."""
        return self.counts[kind]

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()

    def __enter__(self) -> WritePlan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PlanningTarget(GladlyTarget):
    """Reads from Gladly, writes to a `WritePlan` (see the module doc)."""

    plans_only = True

    def __init__(self, client: GladlyClient, plan: WritePlan, *, create_attempts: int = 3):
        super().__init__(client, create_attempts=create_attempts)
        self.plan = plan

    def _write(self, method: str, path: str, body: dict[str, Any], *, ok: tuple[int, ...] = (),
               idempotent: bool = True) -> httpx.Response:
        self.plan.record(method, path, body)
        return httpx.Response(201 if method == "POST" else 204, request=httpx.Request(method, _NOWHERE + path))

    def create_profile(self, fields: ProfileFields, profile_id: str | None = None) -> ProfileOutcome:
        """The profile a 409 would resolve the create to (looked up as after one: emails, mobile
        numbers, then the id), else the create, recorded."""
        profile_id = profile_id or new_id()
        found = self._existing_profile(profile_id, fields, lost=False, id_first=False)
        return found if found is not None else super().create_profile(fields, profile_id)
