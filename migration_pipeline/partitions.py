"""The one partitioning every asset shares: UTC days from MIGRATION_HISTORY_START."""

from __future__ import annotations

import os

import dagster as dg

DEFAULT_HISTORY_START = "2026-01-01"


def history_start() -> str:
    """First day of history to migrate (YYYY-MM-DD). A load-time setting, not a secret."""
    return os.getenv("MIGRATION_HISTORY_START", DEFAULT_HISTORY_START)


daily_partitions = dg.DailyPartitionsDefinition(start_date=history_start(), timezone="UTC")
