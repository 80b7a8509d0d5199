"""Files that several runs may write at once: every write lands whole, by atomic rename."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def unique_sibling(path: Path, suffix: str = ".tmp") -> Path:
    """A temp path beside `path` that no concurrent process or thread shares."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def atomic_write_text(path: Path, text: str) -> Path:
    """Write `text` to `path` so a reader (or a racing writer) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = unique_sibling(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
