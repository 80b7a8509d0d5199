"""The Dagster code location: `dg dev -m migration_pipeline.definitions` (or `make ui`). Every
pair's definitions merged, each its own lineage graph, over one set of resources."""

import dagster as dg

from migration_pipeline.pairs.gladly_to_unthread.definitions import defs as gladly_to_unthread
from migration_pipeline.resources import build_resources

defs = dg.Definitions.merge(gladly_to_unthread, dg.Definitions(resources=build_resources()))
