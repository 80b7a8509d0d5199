"""The one partitioning every asset shares: UTC days from MIGRATION_HISTORY_START."""

from __future__ import annotations

import dagster as dg

from migration_pipeline.settings import history_start

# Built at import (every asset module names it), so the start is read here, through the settings.
daily_partitions = dg.DailyPartitionsDefinition(start_date=history_start().isoformat(), timezone="UTC")
