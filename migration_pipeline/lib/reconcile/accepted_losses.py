"""A reviewer's sign-off on losses: the accepted-losses file (YAML, in MIGRATION_DATA_DIR unless
configured), shared by every pair. A loss is named by a key (`line:<job or delivery>/<file>:<line>`
for a line of a source file, `item:<id>` for a record); a check that counts losses leaves the
accepted ones out and says so. No Dagster import."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

ACCEPTED_LOSSES_FILE = "accepted_losses.yaml"  # in MIGRATION_DATA_DIR unless configured


def line_key(job_id: str, file_name: str, line_no: int) -> str:
    """How a loss that is one line of an export file is named (and accepted)."""
    return f"line:{job_id}/{file_name}:{line_no}"


def load_accepted_losses(path: Path | str) -> dict[str, str]:
    """Loss key -> why it was accepted, from a reviewed YAML file; {} when there is none.

    The file is a reviewer's sign-off, so an entry without a key or without a reason is an
    error, not something to guess at:

        accepted:
          - key: "line:<job id>/conversation_items.jsonl:12"
            why: "truncated copy of line 13, which was loaded"
          - key: "item:<item id>"
            why: "test conversation, not to be migrated"
    """
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"accepted losses file {path}: not valid YAML: {exc}") from None
    entries = data.get("accepted") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"accepted losses file {path}: expected a mapping with an `accepted` list")
    accepted: dict[str, str] = {}
    for n, entry in enumerate(entries, start=1):
        key = entry.get("key") if isinstance(entry, dict) else None
        why = entry.get("why") if isinstance(entry, dict) else None
        if not isinstance(key, str) or not key.strip() or not isinstance(why, str) or not why.strip():
            raise ValueError(f"accepted losses file {path}: entry {n} needs a `key` and a non-empty `why`")
        accepted[key.strip()] = why.strip()
    return accepted


def write_accepted_losses(path: Path | str, accepted: Mapping[str, str], header: str = "") -> Path:
    """Write the accepted-losses file (the format `load_accepted_losses` reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    body = yaml.safe_dump({"accepted": [{"key": k, "why": v} for k, v in accepted.items()]}, sort_keys=False, allow_unicode=True)
    path.write_text(comment + body, encoding="utf-8")
    return path
