"""Stage 3: one Gladly customer profile per person, before any history (Gladly anchors items on it).
Written (or, in a dry run, planned) by the step `gladly_api_writes` (gladly_api_writes.py)."""

from datetime import datetime
from typing import Any

import dagster as dg

from migration_pipeline.lib.staging.db import StagingDatabase, utc_text
from migration_pipeline.pairs.zendesk_to_gladly.pair import GROUP, key
from migration_pipeline.pairs.zendesk_to_gladly.reconciliation import window_customers
from migration_pipeline.vendors.gladly.profile_load import ProfileLoader, people
from migration_pipeline.vendors.gladly.profiles import GladlyTarget

PROFILES = key("gladly_customer_profiles")
PROFILES_SPEC = dg.AssetSpec(
    PROFILES, deps=[key("staged_customers"), key("gladly_preflight")], group_name=GROUP, kinds={"gladly"},
    skippable=True,  # a dry run records observations, no materialization
    description="The Gladly customer profile of every person whose comments fall in the range, created or "
    "completed through Gladly's API exactly once: two Zendesk users with one email are one person; a 409 (an "
    "email or mobile already on a profile) is resolved to that profile by a lookup and completed with a PATCH, "
    "never by a second create; the ledger (`profile:<email>`) and leases make a killed or racing run resume "
    "without a duplicate. Gladly's 10 req/s budget is shared by every process through the `gladly_api` pool "
    "and the org budget.",
)


def write_profiles(
    context: dg.AssetExecutionContext, db: StagingDatabase, target: GladlyTarget, window: tuple[datetime, datetime]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Load (or plan, over a planning target) the profiles of the window's persons: the figures,
    and source customer id -> profile id for each person this run resolved."""
    before = target.client.stats.requests
    persons = people(db, window_customers(db, utc_text(window[0]), utc_text(window[1])))
    with ProfileLoader(db, target, context.run.run_id) as loader:
        counts = loader.load(persons)
        resolved = loader.resolved()
    for failure in counts.failures:
        context.log.error(f"profile not written: {failure}")
    verb = "planned" if target.plans_only else "done"
    context.log.info(f"{counts.people} people {verb}: {counts.created} created, {dict(counts.matched)} matched, "
                     f"{counts.updated} completed, {counts.failed} failed")
    summary = counts.as_dict()
    figures = {
        "people": dg.MetadataValue.int(counts.people),
        "created": dg.MetadataValue.int(counts.created),
        "matched_existing": dg.MetadataValue.json(dict(counts.matched)),
        "updated": dg.MetadataValue.int(counts.updated),
        "already_loaded": dg.MetadataValue.int(counts.already_loaded),
        "recovered": dg.MetadataValue.int(counts.recovered),
        "failed": dg.MetadataValue.int(counts.failed),
        "failures": dg.MetadataValue.json(summary["failures"][:100]),
        "skipped": dg.MetadataValue.json(summary["skipped"]),
        "invalid_emails_not_sent": dg.MetadataValue.int(counts.invalid_emails),
        "api_calls": dg.MetadataValue.int(target.client.stats.requests - before),
    }
    return figures, resolved
