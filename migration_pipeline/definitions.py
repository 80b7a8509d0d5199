"""The Dagster code location: `dg dev -m migration_pipeline.definitions` (or `make ui`). Every
pair's definitions merged, each its own lineage graph, over one set of resources."""

import dagster as dg

# Modules, not their `defs`: Dagster refuses a code location module holding two Definitions objects.
from migration_pipeline.pairs.gladly_to_unthread import definitions as gladly_to_unthread
from migration_pipeline.pairs.zendesk_to_gladly import definitions as zendesk_to_gladly
from migration_pipeline.resources import build_resources

defs = dg.Definitions.merge(gladly_to_unthread.defs, zendesk_to_gladly.defs, dg.Definitions(resources=build_resources()))
