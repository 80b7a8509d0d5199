"""Every list of a reconciliation in full, one Parquet file each. No Dagster import.

The JSON, markdown and HTML reports and the asset's metadata show at most a few hundred rows of
each list (`MAX_LISTED`, the HTML's `MAX_ROWS`); a migration can miss, refuse or misattribute
far more. Each list is written here whole, beside the JSON: `<report folder>/<list>.parquet`,
named after the reconciliation's attribute it holds (the pair's reconciliation object and its
lists' columns are passed in), and the reports say where ("500 listed here, all 1234 in ...").

Every file has a typed schema: the columns the reconciliation gives that list's rows (ids and
text as strings, counts as int64, flags as bool, id lists as list<string>), then any other key
a row carries, in name order, typed from its values (mixed values: strings). Rows are written in
batches, so a list of a million rows is never copied whole into Arrow, and to a temp file renamed
into place, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from migration_pipeline.lib.files import unique_sibling

BATCH_ROWS = 50_000
STRING, INT, FLOAT, BOOL, STRINGS = pa.string(), pa.int64(), pa.float64(), pa.bool_(), pa.list_(pa.string())
# A list's declared columns: (name, Arrow type) in order. Each pair declares its lists (the first
# pair's are `pairs/gladly_to_unthread/checks/reconciliation.FULL_LISTS`).
Columns = tuple[tuple[str, pa.DataType], ...]


@dataclass(frozen=True)
class FullList:
    """One list written whole: which, where, and how many rows."""

    name: str
    path: Path
    rows: int


def listed_note(shown: int, total: int, where: str | Path | None) -> str:
    """What a report says under a list it cut ("500 listed here, all 1234 in <file>", or without
    a file "500 of 1234 listed here"); "" when it shows every row."""
    if shown >= total:
        return ""
    return f"{shown} listed here, all {total} in {where}" if where else f"{shown} of {total} listed here"


def write_full_lists(rec: object, lists: Mapping[str, Columns], folder: Path) -> dict[str, FullList]:
    """Every list of `rec` (an object with a sequence of rows per name of `lists`), each to
    `folder/<list>.parquet`, an empty list as a file with no rows (so no file of an earlier run
    is left to contradict this one)."""
    folder.mkdir(parents=True, exist_ok=True)
    return {name: write_list(folder / f"{name}.parquet", name, getattr(rec, name), columns)
            for name, columns in lists.items()}


def copy_full_lists(lists: Mapping[str, FullList], folder: Path) -> dict[str, FullList]:
    """The written files copied into `folder` (a run's own copy), each by atomic rename."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = {}
    for name, written in lists.items():
        target = folder / written.path.name
        tmp = unique_sibling(target)
        try:
            shutil.copyfile(written.path, tmp)
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        copies[name] = FullList(name, target, written.rows)
    return copies


def write_list(path: Path, name: str, rows: Sequence[Any], columns: Columns, batch_rows: int = BATCH_ROWS) -> FullList:
    """`rows` (dicts, or plain values for a one-column list) with `columns` declared, as Parquet at `path`, `batch_rows`
    rows at a time into a temp file renamed over `path` once complete; on any error `path` keeps
    what it held and the temp file is removed."""
    schema = schema_for(columns, rows)
    tmp = unique_sibling(path)
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for start in range(0, len(rows), batch_rows):
                writer.write_batch(_batch(rows[start : start + batch_rows], schema))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return FullList(name, path, len(rows))


def schema_for(columns: Columns, rows: Iterable[Any]) -> pa.Schema:
    """A list's declared `columns`, then the union of every other key its rows carry, sorted by
    name, each typed from its values: the same rows always give the same schema."""
    declared = dict(columns)
    extra: dict[str, set[type]] = {}
    for row in rows:
        if isinstance(row, Mapping):
            for key, value in row.items():
                if key not in declared:
                    kinds = extra.setdefault(str(key), set())
                    if value is not None:
                        kinds.add(type(value))
    return pa.schema([*declared.items(), *((key, _inferred(kinds)) for key, kinds in sorted(extra.items()))])


def _inferred(kinds: set[type]) -> pa.DataType:
    if kinds and kinds <= {bool}:
        return BOOL
    if kinds and kinds <= {int}:
        return INT
    if kinds and kinds <= {int, float}:
        return FLOAT
    if kinds and kinds <= {list, tuple}:
        return STRINGS
    return STRING


def _batch(rows: Sequence[Any], schema: pa.Schema) -> pa.RecordBatch:
    first = schema.names[0]
    records = [row if isinstance(row, Mapping) else {first: row} for row in rows]
    return pa.RecordBatch.from_arrays(
        [pa.array([_cell(r.get(f.name), f.type) for r in records], type=f.type) for f in schema], schema=schema
    )


def _cell(value: Any, kind: pa.DataType) -> Any:
    if value is None:
        return None
    if kind == STRINGS:
        return [_text(v) for v in value] if isinstance(value, list | tuple) else [_text(value)]
    if kind == BOOL:
        return bool(value)
    if kind == INT:
        return int(value)
    if kind == FLOAT:
        return float(value)
    return _text(value)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)
