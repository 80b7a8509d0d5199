"""The pair's name, as its asset keys (`gladly_to_unthread/<asset>`), group (one lineage graph in
the UI), jobs and staging namespace use it.

Its staging tables lived in the default namespace before pairs had their own; the first open of
its namespace moves them there (`lib/staging/adoption.py`), so an upgraded deployment keeps its
staged history, ledger and leases."""

import dagster as dg

from migration_pipeline.lib.staging.adoption import register_default_heir

NAME = "gladly_to_unthread"
GROUP = NAME

register_default_heir(NAME)


def key(*path: str) -> dg.AssetKey:
    """`gladly_to_unthread/<path>`: the key of one of the pair's assets."""
    return dg.AssetKey([NAME, *path])
