"""Stage 3: one Gladly customer profile per person, before any history (Gladly anchors items on it)."""

import dagster as dg

from migration_pipeline.lib.staging.db import utc_text
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.pairs.day_figures import range_metadata
from migration_pipeline.pairs.zendesk_to_gladly.reconciliation import window_customers
from migration_pipeline.pairs.zendesk_to_gladly.pair import NAME, stage
from migration_pipeline.vendors.gladly.profile_load import ProfileLoader, people
from migration_pipeline.vendors.gladly.profiles import GladlyTarget
from migration_pipeline.vendors.gladly.resources import GladlyResource


@stage("gladly_customer_profiles", deps=["staged_customers", "gladly_preflight"], kinds={"gladly"}, pool="gladly_api")
def gladly_customer_profiles(
    context: dg.AssetExecutionContext, gladly: GladlyResource, staging: StagingResource
) -> dg.MaterializeResult:
    """The Gladly customer profile of every person whose comments fall in the range, created or
    completed through Gladly's API exactly once: two Zendesk users with one email are one person;
    a 409 (an email or mobile already on a profile) is resolved to that profile by a lookup and
    completed with a PATCH, never by a second create; the ledger (`profile:<email>`) and leases make
    a killed or racing run resume without a duplicate. Gladly's 10 req/s budget is shared by every
    process through the `gladly_api` pool and the org budget."""
    window = context.partition_time_window
    with staging.database(NAME) as db, gladly.client() as client:
        persons = people(db, window_customers(db, utc_text(window.start), utc_text(window.end)))
        with ProfileLoader(db, GladlyTarget(client), context.run.run_id) as loader:
            counts = loader.load(persons)
        calls = client.stats.as_dict()
    for failure in counts.failures:
        context.log.error(f"profile not written: {failure}")
    summary = counts.as_dict()
    context.log.info(f"{counts.people} people: {counts.created} created, {dict(counts.matched)} matched, {counts.failed} failed")
    return dg.MaterializeResult(metadata={
        **range_metadata(context.partition_keys, {}),
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
        "api_calls": dg.MetadataValue.int(calls["requests"]),
    })
