"""The pair's name, as its asset keys (`gladly_to_unthread/<asset>`), group (one lineage graph in
the UI) and jobs use it. Its staging tables stay in the default namespace."""

import dagster as dg

NAME = "gladly_to_unthread"
GROUP = NAME


def key(*path: str) -> dg.AssetKey:
    """`gladly_to_unthread/<path>`: the key of one of the pair's assets."""
    return dg.AssetKey([NAME, *path])
