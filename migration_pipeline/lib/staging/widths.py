"""Column widths every source is held to when staging: PostgreSQL refuses a value longer than its
column (failing the whole batch), SQLite would keep it, so both engines are held to the width
before a row is written and stage the same rows. No Dagster import."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

Widths = tuple[tuple[str, int], ...]


@functools.cache
def column_widths(table: sa.Table) -> Widths:
    """(column, max characters) of the table's bounded text columns (computed once per table: it
    is asked for every staged row)."""
    return tuple((c.name, c.type.length) for c in table.columns if isinstance(c.type, sa.String) and c.type.length)


def too_wide(row: Mapping[str, Any], widths: Widths, fields: Mapping[str, str] | None = None) -> str | None:
    """Why `row` cannot be staged for its widths ("<field> is N characters, longer than the W its
    staging column <column> holds"), or None. `fields` names the source field behind a column, for
    a reason a reader of the source understands."""
    for name, length in widths:
        value = row.get(name)
        if isinstance(value, str) and len(value) > length:
            field = (fields or {}).get(name, name)
            return f"{field} is {len(value)} characters, longer than the {length} its staging column {name} holds"
    return None
