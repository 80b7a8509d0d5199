"""Metadata of a run over several daily partitions (a single-run backfill): a figure the asset
can tell per day is recorded on each day's own materialization, its value over the whole range as
range_<name>, and a `figures` note says which numbers are the day's, so no day shows the range's
figures as its own (as reconciliation_report does)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from migration_pipeline.partitions import daily_partitions


def run_window(context: dg.AssetCheckExecutionContext) -> tuple[datetime, datetime]:
    """The run's partition window, or every complete day so far for a run without partitions.
    Read from the run's partition keys: a run of checks only has no partitions definition to ask."""
    # A range run (single-run backfill) carries range tags; a one-day run (the schedule, the sensor,
    # a partition launched from the UI) only the partition tag.
    if context.has_partition_key_range or context.has_partition_key:
        keys = context.partition_key_range
        first, last = (daily_partitions.time_window_for_partition_key(k) for k in (keys.start, keys.end))
        return first.start, last.end
    return daily_partitions.start.astimezone(UTC), midnight(datetime.now(UTC))


def midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def day_windows(context: dg.AssetExecutionContext) -> dict[str, tuple[datetime, datetime]]:
    """Each day of the run, oldest first, with its UTC window [start, end)."""
    windows = (daily_partitions.time_window_for_partition_key(key) for key in context.partition_keys)
    return {key: (w.start, w.end) for key, w in zip(context.partition_keys, windows)}


def range_metadata(days: Sequence[str], whole_range: Mapping[str, Any]) -> dict[str, Any]:
    """The `figures` note and, as range_<name>, the whole range's value of each day figure."""
    span = f"the run's whole range {days[0]} .. {days[-1]} ({len(days)} day{'s' if len(days) > 1 else ''})"
    note = (
        f"{', '.join(whole_range)}: this partition's own day; range_*: the same over {span}; every other number: that whole range"
        if whole_range else f"every number: {span}"
    )
    return {"figures": dg.MetadataValue.text(note), **{f"range_{name}": value for name, value in whole_range.items()}}


def record_by_day(
    context: dg.AssetExecutionContext,
    per_day: Mapping[str, Mapping[str, Any]],
    whole_range: Mapping[str, Any],
    asset_key: dg.AssetKey | str | None = None,
) -> dict[str, Any]:
    """Each day's own figures on that day's materialization (they override the result's
    metadata); returns the metadata for the result: `range_metadata`."""
    for day, figures in per_day.items():
        context.add_asset_metadata(dict(figures), asset_key=asset_key, partition_key=day)
    return range_metadata(context.partition_keys, whole_range)


def record_counts_by_day(
    context: dg.AssetExecutionContext, counters: Mapping[str, Counter[str]], asset_key: dg.AssetKey | str | None = None
) -> dict[str, Any]:
    """`record_by_day` for figures counted by day (name -> day -> count); the range's are their sums."""
    per_day = {day: {name: counted[day] for name, counted in counters.items()} for day in context.partition_keys}
    return record_by_day(context, per_day, {name: counted.total() for name, counted in counters.items()}, asset_key)
