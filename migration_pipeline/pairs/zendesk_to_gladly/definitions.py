"""The Zendesk -> Gladly pair as Dagster definitions, built by the pair factory (pairs/spec.py).
Asset keys `zendesk_to_gladly/<asset>`, group `zendesk_to_gladly`, staging namespace `zendesk_to_gladly`."""

import dagster as dg

from migration_pipeline.pairs.spec import PairSpec, build_pair
from migration_pipeline.pairs.zendesk_to_gladly.assets import PAIR_ASSETS
from migration_pipeline.pairs.zendesk_to_gladly.assets.external import gladly_organization, zendesk_account
from migration_pipeline.pairs.zendesk_to_gladly.checks import PAIR_CHECKS
from migration_pipeline.pairs.zendesk_to_gladly.jobs import dry_run
from migration_pipeline.pairs.zendesk_to_gladly.pair import NAME

SPEC = PairSpec(
    name=NAME,
    title="Zendesk -> Gladly",
    stages=PAIR_ASSETS,
    external=[zendesk_account, gladly_organization],
    checks=PAIR_CHECKS,
    jobs=[dry_run],
    migration_description="Every stage, Zendesk export to Gladly import files and reconciliation, for the selected days.",
)
defs: dg.Definitions = build_pair(SPEC)
