"""The files of a Zendesk dataset as they are written: NDJSON line files that count and hash as
they go, and the export deliveries (one plain file per comment mode and type, then .gz and .zip
copies with fixed header times), for the Zendesk writer."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from sim.synth.zendesk_dataset import EXPORT_TYPES, ZendeskLayout


class LineFile:
    """An NDJSON file written line by line, counting lines and hashing bytes as it goes."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fh: IO[bytes] = path.open("wb")
        self.lines = 0
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        """Append one line (no newline in `data`); return its 1-based number."""
        chunk = data + b"\n"
        self.fh.write(chunk)
        self.sha.update(chunk)
        self.lines += 1
        return self.lines

    def close(self) -> None:
        self.fh.close()


class ExportFiles:
    """The plain export files of every comment mode written; gz and zip variants made at the end."""

    def __init__(self, layout: ZendeskLayout, modes: tuple[str, ...]):
        self.layout = layout
        self.modes = modes
        self.files = {(mode, kind): LineFile(layout.plain_export(mode, kind)) for mode in modes for kind in EXPORT_TYPES}

    def write(self, kind: str, lines: dict[str, bytes] | bytes) -> int:
        """One line in every mode's `kind` file (a dict gives each mode its own bytes); its number."""
        numbers = {self.files[(mode, kind)].write(lines[mode] if isinstance(lines, dict) else lines)
                   for mode in self.modes}
        assert len(numbers) == 1, "export files of the two comment modes must stay line-aligned"
        return numbers.pop()

    def finish(self, exported_s: int) -> list[dict[str, Any]]:
        """Close the plain files, write the .gz and .zip variants; describe every file."""
        for f in self.files.values():
            f.close()
        stamp = datetime.fromtimestamp(exported_s, tz=timezone.utc)
        described = []
        for mode in self.modes:
            plain = [self.layout.plain_export(mode, kind) for kind in EXPORT_TYPES]
            lines = {kind: self.files[(mode, kind)].lines for kind in EXPORT_TYPES}
            for kind, path in zip(EXPORT_TYPES, plain):
                described.append(self._describe(mode, "plain", path, {kind: lines[kind]}))
            for kind, path in zip(EXPORT_TYPES, plain):
                target = self.layout.gz_export(mode, kind)
                target.parent.mkdir(parents=True, exist_ok=True)
                with path.open("rb") as src, target.open("wb") as raw, \
                        gzip.GzipFile(filename=path.name, mode="wb", fileobj=raw, mtime=exported_s, compresslevel=6) as gz:
                    shutil.copyfileobj(src, gz, 1 << 20)
                described.append(self._describe(mode, "gz", target, {kind: lines[kind]}))
            target = self.layout.zip_export(mode)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(target, "w") as zf:
                for path in plain:
                    info = zipfile.ZipInfo(path.name, date_time=stamp.timetuple()[:6])
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    with path.open("rb") as src, zf.open(info, "w") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
            described.append(self._describe(mode, "zip", target, lines))
        return described

    def _describe(self, mode: str, fmt: str, path: Path, lines: dict[str, int]) -> dict[str, Any]:
        sha = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                sha.update(block)
        return {"comments": mode, "format": fmt, "path": str(path.relative_to(self.layout.root)),
                "bytes": path.stat().st_size, "sha256": sha.hexdigest(), "lines": lines}
