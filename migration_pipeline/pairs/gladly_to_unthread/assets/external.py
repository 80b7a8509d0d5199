"""The systems at both ends, as external assets, so the lineage graph reads source → stages → target."""

import dagster as dg

from migration_pipeline.pairs.gladly_to_unthread.pair import GROUP, key

gladly_export = dg.AssetSpec(
    key("gladly_export"),
    group_name=GROUP,
    kinds={"gladly"},
    description="Gladly's export jobs (daily or hourly schedule, one-time jobs from Support), kept by "
    "Gladly for 14 days. Not materialized here: gladly_export_jobs archives them.",
)

unthread_workspace = dg.AssetSpec(
    key("unthread_workspace"),
    deps=[key("unthread_loaded_records")],
    group_name=GROUP,
    kinds={"unthread"},
    description="The target Unthread workspace: customers, conversations and messages the load created "
    "(each stamped with its Gladly source ids). reconciliation_report reads it back.",
)
