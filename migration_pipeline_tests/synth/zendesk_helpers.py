"""Readers of a generated Zendesk dataset for the tests: they read the files as a migration would
(the facts' rule: parse every line, skip lines that do not parse or lack `id`), never generator
internals."""

from __future__ import annotations

import gzip
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.synth.dataset import read_json
from sim.synth.zendesk_dataset import ZendeskLayout


@dataclass(frozen=True)
class ExportLine:
    number: int
    raw: bytes
    obj: dict[str, Any] | None  # None when the line does not parse or lacks `id`


def parse_export_line(number: int, raw: bytes) -> ExportLine:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ExportLine(number, raw, None)
    return ExportLine(number, raw, obj if isinstance(obj, dict) and "id" in obj else None)


def split_lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n")


class ZendeskDataset:
    """A generated Zendesk dataset folder, read back."""

    def __init__(self, root: Path):
        self.root = root
        self.layout = ZendeskLayout(root)
        self.manifest: dict[str, Any] = read_json(self.layout.manifest)
        self.account: dict[str, Any] = read_json(self.layout.account)

    def export_bytes(self, mode: str, kind: str, fmt: str = "plain") -> bytes:
        if fmt == "gz":
            return gzip.decompress(self.layout.gz_export(mode, kind).read_bytes())
        if fmt == "zip":
            with zipfile.ZipFile(self.layout.zip_export(mode)) as zf:
                return zf.read(f"{kind}.json")
        return self.layout.plain_export(mode, kind).read_bytes()

    def export_lines(self, mode: str, kind: str) -> list[ExportLine]:
        return [parse_export_line(n, raw) for n, raw in enumerate(split_lines(self.export_bytes(mode, kind)), 1)]

    def export_objects(self, mode: str, kind: str) -> dict[int, dict[str, Any]]:
        return {ln.obj["id"]: ln.obj for ln in self.export_lines(mode, kind) if ln.obj is not None}

    def api(self, path: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def api_versions(self) -> dict[int, list[dict[str, Any]]]:
        versions: dict[int, list[dict[str, Any]]] = {}
        for ticket in self.api(self.layout.api_tickets):
            versions.setdefault(ticket["id"], []).append(ticket)
        return versions

    def api_comments(self) -> dict[int, list[dict[str, Any]]]:
        by_ticket: dict[int, list[dict[str, Any]]] = {}
        for row in self.api(self.layout.api_comments):
            by_ticket.setdefault(row["ticket_id"], []).append(row["comment"])
        return by_ticket

    def mess(self, kind: str) -> list[dict[str, Any]]:
        return self.manifest["mess"][kind]["where"]

    def where_ids(self, kind: str, key: str) -> set[int]:
        return {entry[key] for entry in self.mess(kind)}

    def comments_of_export(self, mode: str = "embedded") -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(ticket, comment) for every comment embedded in the export's ticket lines."""
        for ticket in self.export_objects(mode, "tickets").values():
            for comment in ticket.get("comments", []):
                yield ticket, comment
