"""The pair's name, as its group (one lineage graph in the UI) and its jobs use it. Its asset keys
predate the `<pair>/<asset>` convention and stay unprefixed (their materialization history)."""

NAME = "gladly_to_unthread"
GROUP = NAME
