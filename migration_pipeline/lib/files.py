"""Files that several runs may write at once: every write lands whole, by atomic rename."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

COPY_CHUNK = 1 << 20


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


@contextmanager
def scratch_dir(parent: Path) -> Iterator[Path]:
    """A private, empty folder under `parent` for work that must never be seen half done; it is
    removed with whatever is left in it when the block ends, by success or by any error. Work is
    built here and renamed into place, so `parent` must be on the same filesystem as the target."""
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_scratch(parent: Path, older_than_seconds: float) -> None:
    """Remove scratch folders a killed process left behind (untouched for `older_than_seconds`);
    a live run's folder is younger, as it writes into it."""
    if not parent.is_dir():
        return
    cutoff = time.time() - older_than_seconds
    for entry in parent.iterdir():
        try:
            if entry.lstat().st_mtime >= cutoff:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue  # another run removed it first, or it is not ours to remove


class NotARegularFile(OSError):
    """The source is a symbolic link, a folder, a pipe or a device, not a plain file."""


def copy_regular_file(source: Path, target: Path) -> None:
    """Copy a plain file without following a symbolic link at `source` (so a link cannot pull in a
    file from elsewhere) and without blocking on a pipe; `target` must not exist yet."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(source, flags)
    except OSError:
        if source.is_symlink():
            raise NotARegularFile(f"{source.name} is a symbolic link") from None
        raise
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile(f"{source.name} is not a regular file")
        with target.open("xb") as dst:
            shutil.copyfileobj(src, dst, COPY_CHUNK)


def move_into_place(folder: Path, target: Path, scratch: Path, already_there: Callable[[], bool]) -> None:
    """Rename a finished archive folder to `target`. An interrupted or damaged copy already there
    is moved aside into `scratch` (removed with it) first; when the rename fails because a
    concurrent run put the same content there first, `already_there()` (theirs is complete and
    verified) makes that a success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        try:
            target.rename(scratch / f"replaced-{uuid.uuid4().hex[:8]}")
        except FileNotFoundError:
            pass  # a concurrent run moved it first
    try:
        folder.rename(target)
    except OSError:
        if not already_there():
            raise
