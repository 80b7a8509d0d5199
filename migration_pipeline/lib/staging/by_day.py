"""Staging rows counted by UTC day, for each partition's own figures in a run over several days."""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa

from migration_pipeline.lib.staging.db import StagingDatabase, ticket_items


def _day(ts: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    # Timestamps are fixed-width UTC text, YYYY-MM-DD first. Literal bounds: with bound ones,
    # PostgreSQL would not see the GROUP BY expression as the selected one.
    return sa.func.substr(ts, sa.literal_column("1"), sa.literal_column("10"))


def rows_by_day(db: StagingDatabase, ts: sa.Column, lo: str, hi: str) -> Counter[str]:
    """Rows of the table of `ts` whose timestamp falls in [lo, hi), by UTC day (YYYY-MM-DD)."""
    query = sa.select(_day(ts), sa.func.count()).where(ts >= lo, ts < hi).group_by(_day(ts))
    with db.engine.connect() as conn:
        return Counter(dict(conn.execute(query).all()))


def ticket_first_days(db: StagingDatabase, lo: str, hi: str) -> dict[str, str]:
    """Each ticket holding items of [lo, hi) -> the UTC day of its earliest item there."""
    earliest = sa.func.min(ticket_items.c.ts)
    query = (
        sa.select(ticket_items.c.ticket_id, _day(earliest))
        .where(ticket_items.c.ts >= lo, ticket_items.c.ts < hi)
        .group_by(ticket_items.c.ticket_id)
    )
    with db.engine.connect() as conn:
        return dict(conn.execute(query).all())
