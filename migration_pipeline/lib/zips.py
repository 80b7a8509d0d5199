"""ZIP members from outside (a landing folder): which member paths are safe to read or unpack.
No vendor: every source that takes a ZIP export checks its members here."""

from __future__ import annotations

import re
import stat
import zipfile
from pathlib import PurePosixPath

_DRIVE = re.compile(r"[A-Za-z]:")


class UnsafeZipMember(ValueError):
    """A member no reader may follow: a link, an encrypted member, or a path that leaves the folder."""


def safe_member_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The member's path components ('\\' read as a separator, as Windows tools write it);
    refuses links, encrypted members, absolute paths, drive letters, '..' and NUL."""
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeZipMember(f"member {name[:200]!r} is a symbolic link; a landing ZIP must hold plain files")
    if info.flag_bits & 0x1:
        raise UnsafeZipMember(f"member {name[:200]!r} is encrypted; unpack it and drop the files instead")
    path = PurePosixPath(name.replace("\\", "/"))
    parts = tuple(p for p in path.parts if p != ".")
    if path.is_absolute() or (parts and _DRIVE.match(parts[0])) or ".." in parts or not parts or "\0" in name:
        raise UnsafeZipMember(f"unsafe member path {name[:200]!r} (absolute, a drive, or with '..'); refused as a whole")
    return parts
