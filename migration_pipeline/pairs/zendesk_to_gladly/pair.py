"""The pair's name, as its asset keys, group and staging namespace use it, and its stage decorator."""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from migration_pipeline.partitions import daily_partitions

NAME = "zendesk_to_gladly"
GROUP = NAME  # one lineage graph per pair in the UI


def key(*path: str) -> dg.AssetKey:
    """`zendesk_to_gladly/<path>`."""
    return dg.AssetKey([NAME, *path])


def stage(name: str, *, deps: Sequence[str], kinds: set[str], pool: str | None = None, **more: Any):
    """A stage of the pair: key `zendesk_to_gladly/<name>`, the pair's group, daily partitions and
    single-run backfills (a full migration is one run over the range; a delta is one day)."""
    return dg.asset(
        key=key(name), deps=[key(d) for d in deps], group_name=GROUP, kinds=kinds, pool=pool,
        partitions_def=daily_partitions, backfill_policy=dg.BackfillPolicy.single_run(), **more,
    )
