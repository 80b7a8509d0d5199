"""Readers the synth tests share: they look at the dataset files themselves, never at generator
internals, so the tests check what the emulator and the pipeline will actually see."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sim.synth.dataset import DatasetLayout, iter_jsonl, read_json
from sim.synth.generator import REQUIRED_ITEM_FIELDS


def parse_ts(value: str) -> datetime:
    """RFC3339 'Z' with any number of fractional digits (Python wants at most 6)."""
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00" if frac else f"{head}+00:00")


@dataclass(frozen=True)
class Line:
    job: str
    file: str
    lineno: int
    obj: dict[str, Any] | None
    raw: str

    @property
    def is_valid_item(self) -> bool:
        return self.obj is not None and all(k in self.obj for k in REQUIRED_ITEM_FIELDS)


class Dataset:
    """A generated dataset folder, read back."""

    def __init__(self, root: Path):
        self.root = root
        self.layout = DatasetLayout(root)
        self.manifest: dict[str, Any] = read_json(self.layout.manifest)

    def jobs(self) -> list[dict[str, Any]]:
        return [read_json(self.layout.job_dir(j) / "job.json") for j in self.layout.job_ids()]

    def lines(self, name: str) -> Iterator[Line]:
        for job in self.layout.job_ids():
            for lineno, obj, raw in iter_jsonl(self.layout.job_file(job, name)):
                yield Line(job, name, lineno, obj, raw)

    def items(self) -> dict[str, dict[str, Any]]:
        """Distinct valid items across all jobs, by id."""
        return {ln.obj["id"]: ln.obj for ln in self.lines("conversation_items.jsonl") if ln.is_valid_item}

    def export_customers(self) -> dict[str, dict[str, Any]]:
        return {ln.obj["id"]: ln.obj for ln in self.lines("customers.jsonl") if ln.obj is not None and "id" in ln.obj}

    def rest(self, path: Path) -> list[dict[str, Any]]:
        return [obj for _, obj, _ in iter_jsonl(path) if obj is not None]

    def mess(self, kind: str) -> list[Any]:
        return self.manifest["mess"][kind]["where"]


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def item_text(item: dict[str, Any]) -> str:
    c = item["content"]
    value = c.get("content") if "content" in c else c.get("body")
    return value if isinstance(value, str) else ""


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
