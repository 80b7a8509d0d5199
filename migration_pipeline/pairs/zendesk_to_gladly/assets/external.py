"""The systems at both ends, as external assets, so the lineage graph reads source -> stages -> target."""

import dagster as dg

from migration_pipeline.pairs.zendesk_to_gladly.pair import GROUP, key

zendesk_account = dg.AssetSpec(
    key("zendesk_account"),
    group_name=GROUP,
    kinds={"zendesk"},
    description="The source Zendesk account: its full JSON export (dropped in the landing folder) and its API "
    "(comments the export lacks, incremental ticket export for deltas). Not materialized here.",
)

gladly_organization = dg.AssetSpec(
    key("gladly_organization"),
    deps=[key("gladly_customer_profiles"), key("gladly_activity_items"), key("gladly_import_files")],
    group_name=GROUP,
    kinds={"gladly"},
    description="The target Gladly organization: customer profiles created through its API, history through its "
    "historical conversation import (the files handed to Gladly). reconciliation_report reads profiles back.",
)
