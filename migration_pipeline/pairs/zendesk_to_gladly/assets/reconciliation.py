"""Stage 5: the reconciliation of Zendesk -> Gladly, with the blocking checks that prove it."""

import json
from datetime import UTC, datetime

import dagster as dg

from migration_pipeline.lib.files import atomic_write_text
from migration_pipeline.lib.reconcile.report_html import CheckOutcome, checks_section, document, section, stages_chart, table
from migration_pipeline.lib.staging.db import utc_text
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.pairs.day_figures import record_by_day
from migration_pipeline.pairs.zendesk_to_gladly.pair import NAME, key, stage
from migration_pipeline.pairs.zendesk_to_gladly.reconciliation import Reconciliation, as_json, reconcile, window_emails
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.gladly.profiles import GladlyTarget
from migration_pipeline.vendors.gladly.resources import GladlyResource
from migration_pipeline.vendors.zendesk.archive import ZendeskArchive

CHECKS = {
    "every_comment_accounted_for": "Every Zendesk comment of the window (recounted from the archive) is staged or "
    "quarantined with its reason, and every staged comment is in exactly one import row, one reject (with its reason) "
    "or one skip (with its rule).",
    "one_gladly_profile_per_customer": "Every customer with a valid email has exactly one Gladly profile, read back by email.",
}
STAGES = ("source", "staged", "row", "rejected", "skipped", "quarantined", "missing", "no_outcome")


class ReconciliationConfig(dg.Config):
    read_back_profiles: bool = True  # one GET per person at Gladly's 10 req/s; off only for a quick look


def outcomes(rec: Reconciliation) -> list[CheckOutcome]:
    accounted = CheckOutcome(
        "every_comment_accounted_for", rec.every_comment_accounted_for,
        f"{rec.source_comments} source comments: {rec.staged} staged, {rec.quarantined_comments} quarantined, "
        f"{len(rec.not_staged)} missing; outcomes {dict(rec.outcomes)}, {len(rec.no_outcome)} staged without one",
    )
    profiles = CheckOutcome(
        "one_gladly_profile_per_customer", rec.profiles_checked and rec.one_profile_per_person,
        f"{rec.persons_with_email} customers with a valid email: {len(rec.profiles_missing)} without a profile, "
        f"{len(rec.profiles_duplicated)} with more than one" if rec.profiles_checked else "not read back (read_back_profiles off)",
    )
    return [accounted, profiles]


@stage(
    "reconciliation_report",
    deps=["gladly_import_files", "gladly_customer_profiles"],
    kinds={"html"},
    pool="gladly_api",
    check_specs=[dg.AssetCheckSpec(name, asset=key("reconciliation_report"), blocking=True, description=d) for name, d in CHECKS.items()],
)
def zendesk_gladly_reconciliation(
    context: dg.AssetExecutionContext, config: ReconciliationConfig, storage: MigrationStorage,
    staging: StagingResource, gladly: GladlyResource,
):
    """The window's reconciliation (MIGRATION_DATA_DIR/reports/zendesk_to_gladly/<range>.html and .json):
    Zendesk comments recounted from the archive against staging and the import files' outcomes,
    customers against Gladly profiles read back by email, per UTC day."""
    window = context.partition_time_window
    lo, hi = utc_text(window.start), utc_text(window.end)
    deliveries = ZendeskArchive(storage.root).deliveries()
    with staging.database(NAME) as db, gladly.client() as client:
        target = GladlyTarget(client)
        emails = window_emails(db, lo, hi)
        read_back = (lambda email: len(target.find_profiles_by_email(email))) if config.read_back_profiles else None
        rec = reconcile(db, deliveries, window.start, window.end, read_back, emails)
    checks = outcomes(rec)
    label = f"{lo[:10]}_{utc_text(window.end)[:10]}"
    folder = storage.root / "reports" / NAME
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{label}.json", json.dumps(as_json(rec), indent=1))
    html_path = atomic_write_text(folder / f"{label}.html", _html(rec, checks, context.run.run_id))
    per_day = {day: {s: rec.per_day.get(day, {}).get(s, 0) for s in ("source", "staged", "row", "rejected", "skipped")}
               for day in context.partition_keys}
    totals = {s: sum(d[s] for d in per_day.values()) for s in ("source", "staged", "row", "rejected", "skipped")}
    day_metadata = record_by_day(context, per_day, totals)
    yield dg.MaterializeResult(metadata={
        **day_metadata,
        "report": dg.MetadataValue.path(str(html_path)),
        "persons_with_email": dg.MetadataValue.int(rec.persons_with_email),
        "quarantined_comments": dg.MetadataValue.int(rec.quarantined_comments),
        "not_staged": dg.MetadataValue.json(rec.not_staged[:100]),
        "no_outcome": dg.MetadataValue.json(rec.no_outcome[:100]),
        "profiles_missing": dg.MetadataValue.json(rec.profiles_missing[:100]),
        "profiles_duplicated": dg.MetadataValue.json(rec.profiles_duplicated[:100]),
    })
    for check in checks:
        yield dg.AssetCheckResult(check_name=check.name, asset_key=key("reconciliation_report"), passed=check.passed,
                                  metadata={"detail": dg.MetadataValue.text(check.detail)})


def _html(rec: Reconciliation, checks: list[CheckOutcome], run_id: str) -> str:
    title = f"Zendesk -> Gladly reconciliation {rec.lo[:10]} .. {rec.hi[:10]}"
    meta = f"window {rec.lo} .. {rec.hi} (UTC, end exclusive) · run {run_id} · generated {datetime.now(UTC).isoformat(timespec='seconds')}"
    summary = table(["source comments", "staged", "quarantined", "import rows", "rejected", "skipped", "missing", "customers"],
                    [[rec.source_comments, rec.staged, rec.quarantined_comments, rec.outcomes["row"], rec.outcomes["rejected"],
                      rec.outcomes["skipped"], len(rec.not_staged) + len(rec.no_outcome), rec.persons_with_email]])
    parts = [summary, checks_section(checks, "Data guarantees: nothing lost, nothing duplicated")]
    if rec.per_day:
        parts.append(section("Per day", stages_chart(rec.per_day, STAGES[:5], "Comments per day: source vs staged vs outcome")))
    for heading, ids in (("Source comments not staged", rec.not_staged), ("Staged comments without an outcome", rec.no_outcome),
                         ("Customers without a Gladly profile", rec.profiles_missing),
                         ("Customers with more than one Gladly profile", rec.profiles_duplicated)):
        parts.append(section(f"{heading} ({len(ids)})", table(["id"], [[i] for i in ids])))
    return document(title, meta, parts)
