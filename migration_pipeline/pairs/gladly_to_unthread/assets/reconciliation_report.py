"""Stage 5: source reconciled against the target, with blocking checks and an HTML report."""

import json
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from pydantic import Field

from migration_pipeline.pairs.day_figures import record_by_day
from migration_pipeline.pairs.gladly_to_unthread.checks.fidelity import attachment_checksum_mismatches, tag_coverage
from migration_pipeline.lib.reconcile.full_lists import FullList, copy_full_lists, listed_note, write_full_lists
from migration_pipeline.pairs.gladly_to_unthread.checks.reconciliation import (
    ACCEPTED_LOSSES_FILE,
    FULL_LISTS,
    MAX_LISTED,
    Reconciliation,
    load_accepted_losses,
    reconcile,
)
from migration_pipeline.lib.reconcile.report_html import CheckOutcome
from migration_pipeline.pairs.gladly_to_unthread.checks.report_html import write_html
from migration_pipeline.lib.files import atomic_write_text
from migration_pipeline.lib.markdown import md_row
from migration_pipeline.pairs.gladly_to_unthread.mappings import load_mappings
from migration_pipeline.partitions import daily_partitions
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.gladly.archive import ExportArchive
from migration_pipeline.lib.staging.db import utc_text
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.vendors.unthread.capabilities import FILE_READ_BACK, MESSAGE_AUTHOR, TAGS, TAGS_ON_UPDATE, CapabilityStore
from migration_pipeline.vendors.unthread.resources import UnthreadResource
from migration_pipeline.pairs.gladly_to_unthread.pair import GROUP, NAME, key

VARIANCE_CHECK = "variance_within_tolerance"
ORDER_CHECK = "messages_in_source_order"
DUPLICATE_CHECK = "no_duplicate_messages"
ATTRIBUTION_CHECK = "customer_attribution"
MERGED_PROFILES_CHECK = "merged_profiles_no_duplicate_customers"
TAG_CHECK = "tag_coverage"
ATTACHMENT_CHECK = "attachment_checksums"
ACCOUNTED_CHECK = "every_source_item_accounted_for"
CAPABILITIES_CHECK = "workspace_capabilities"
REPORT = key("reconciliation_report")  # the asset its checks are on
METADATA_ROWS = 100  # rows per metadata table; the full lists are in the report's Parquet files


class ReconciliationConfig(dg.Config):
    max_variance: float = Field(default=0.001, description="Largest tolerated share of source items missing")
    accepted_losses_file: str = Field(
        default="",
        description=f"Reviewed YAML list of losses accepted for sign-off (key and why each); empty: "
        f"MIGRATION_DATA_DIR/{ACCEPTED_LOSSES_FILE}",
    )


@dg.asset(
    key_prefix=NAME,
    deps=[key("unthread_loaded_records")],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"unthread", "sql"},
    pool="unthread_api",
    check_specs=[
        dg.AssetCheckSpec(VARIANCE_CHECK, asset=REPORT, blocking=True,
                          description="Source items (and export lines that cannot be placed in a day) missing from "
                                      "Unthread on readback stay within max_variance (0.1%)"),
        dg.AssetCheckSpec(ACCOUNTED_CHECK, asset=REPORT, blocking=True,
                          description="Nothing lost silently: every line of the window's export files is read back "
                                      "from Unthread as an item, or is named here with the stage where it stopped and "
                                      "why (quarantined and the reason, refused by Unthread and the vendor's message, "
                                      "not in a ticket, not loaded, gone on readback), as is every refused write. "
                                      f"Passes when each is accepted in MIGRATION_DATA_DIR/{ACCEPTED_LOSSES_FILE}"),
        dg.AssetCheckSpec(ORDER_CHECK, asset=REPORT, blocking=True,
                          description="Every loaded conversation of the window (all of them, not a sample) has its "
                                      "messages in source order"),
        dg.AssetCheckSpec(DUPLICATE_CHECK, asset=REPORT, blocking=True,
                          description="No source item appears in Unthread more than once"),
        dg.AssetCheckSpec(ATTRIBUTION_CHECK, asset=REPORT, blocking=True,
                          description="Every read-back message is from the person who wrote its source item (the "
                                      "agent's Unthread user, or the customer), and every conversation sits under the "
                                      "Unthread customer made for its Gladly customer"),
        dg.AssetCheckSpec(MERGED_PROFILES_CHECK, asset=REPORT, blocking=True,
                          description="Merged Gladly profiles: no Unthread customer for a merged-away id, and exactly "
                                      "one Unthread customer per surviving Gladly customer (read back by "
                                      "externalCrmMetadata.id)"),
        dg.AssetCheckSpec(TAG_CHECK, asset=REPORT, blocking=True,
                          description="Every loaded conversation of the window carries exactly the flattened tags of "
                                      "its ticket's Gladly topics (and their ids in metadata): every topic used is a tag"),
        dg.AssetCheckSpec(ATTACHMENT_CHECK, asset=REPORT, blocking=True,
                          description="Every file put on an Unthread message was read back with the sha256 of its "
                                      "Gladly source bytes (oversize files are listed, not failed; on a workspace "
                                      "with no file read-back: a warning, files matched by name and size)"),
        dg.AssetCheckSpec(CAPABILITIES_CHECK, asset=REPORT, blocking=False,
                          description="The workspace offers every optional API feature the load can use (tags, "
                                      "private notes, file read-back, message author, ...); a missing one is a "
                                      "warning naming what the load did instead (preflight's target_capabilities)"),
    ],
)
def reconciliation_report(
    context: dg.AssetExecutionContext,
    config: ReconciliationConfig,
    storage: MigrationStorage,
    staging: StagingResource,
    unthread: UnthreadResource,
):
    """Counts of source items (re-read from the archived export files), staged, quarantined, in
    tickets, loaded and read back from Unthread, per day; the variance; every missing item with
    the stage where it stopped and why; dead letters, ticket sizes, unmatched agents, and the
    attribution and customer checks. Written to MIGRATION_DATA_DIR/reports/ as JSON, markdown and
    a self-contained HTML file with charts, and every list in full as Parquet under
    reports/reconciliation-<range>/ (HTML and Parquet also kept per run under reports/runs/<run id>/).

    Each day of the range gets its own figures (source_items, staged, in_tickets, loaded,
    read_back, missing) on its materialization; the range's totals of them are range_*, and every
    other number (variance, losses, dead letters, tickets, attribution, customers) is the range's."""
    started = time.monotonic()
    window = context.partition_time_window
    jobs = ExportArchive(storage.root).jobs_overlapping(window.start, window.end)
    accepted_file = Path(config.accepted_losses_file or storage.root / ACCEPTED_LOSSES_FILE)
    accepted = load_accepted_losses(accepted_file)
    with staging.database(NAME) as db, unthread.client() as client:
        rec = reconcile(
            db, client, jobs, window.start, window.end,
            placeholder_user_id=unthread.placeholder_user_id, customer_mode=unthread.customer_mode, accepted=accepted,
        )
        lo, hi = utc_text(window.start), utc_text(window.end)
        caps = CapabilityStore(db)
        tags_in_metadata = not (caps.supports(TAGS) and caps.supports(TAGS_ON_UPDATE))
        tags_ok, tags = tag_coverage(db, client, lo, hi, load_mappings(unthread.mappings_file), in_metadata=tags_in_metadata)
        files_ok, files = attachment_checksum_mismatches(db, lo, hi)
        calls = client.stats.as_dict()
    outcomes = check_outcomes(rec, config.max_variance, caps)
    outcomes += [
        tag_outcome(tags_ok, tags, caps if tags_in_metadata else None),
        attachment_outcome(files_ok, files, caps),
        capabilities_outcome(caps),
    ]

    reports = storage.root / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    stem = f"reconciliation-{window.start:%Y-%m-%d}_{window.end:%Y-%m-%d}"
    full = write_full_lists(rec, FULL_LISTS, reports / stem)
    links = {name: f"{stem}/{written.path.name}" for name, written in full.items()}  # relative to reports/
    atomic_write_text(reports / f"{stem}.json", report_json(rec, links))
    summary = render_markdown(rec, outcomes, links)
    atomic_write_text(reports / f"{stem}.md", summary)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    html_path = write_html(reports / f"{stem}.html", rec, checks=outcomes, run_id=context.run.run_id,
                           generated_at=generated, full_lists=links)
    # the range's files are replaced by the next run; this run's copy stays for sign-off (the
    # same layout, so the HTML's links to the Parquet files work in both places)
    run_html = reports / "runs" / context.run.run_id / f"{stem}.html"
    run_html.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(html_path, run_html)
    copy_full_lists(full, run_html.parent / stem)
    context.log.info(summary.splitlines()[2] if len(summary.splitlines()) > 2 else summary)

    whole_range = {"source_items": rec.source_items, "staged": rec.staged, "in_tickets": rec.in_tickets,
                   "loaded": rec.loaded, "read_back": rec.read_back, "missing": len(rec.missing)}
    sizes = sorted(rec.ticket_sizes)
    yield dg.MaterializeResult(
        metadata={
            **record_by_day(context, day_figures(rec, context.partition_keys), whole_range),
            "quarantined_lines": dg.MetadataValue.int(rec.quarantined_lines),
            "dead_letters": dg.MetadataValue.int(len(rec.dead_letters)),
            "variance": dg.MetadataValue.float(rec.variance),
            "unplaceable_lines": dg.MetadataValue.int(rec.unplaceable_lines),
            "losses_not_accepted": dg.MetadataValue.int(len(rec.unaccepted_losses)),
            "losses_accepted": dg.MetadataValue.int(len(rec.losses) - len(rec.unaccepted_losses)),
            "tickets": dg.MetadataValue.int(rec.tickets_in_window),
            "ticket_size_median": dg.MetadataValue.int(sizes[len(sizes) // 2] if sizes else 0),
            "ticket_size_max": dg.MetadataValue.int(sizes[-1] if sizes else 0),
            "unmatched_agents": dg.MetadataValue.int(len(rec.unmatched_agents)),
            "messages_attributed": dg.MetadataValue.int(rec.messages_attributed),
            "attribution_mismatches": dg.MetadataValue.int(
                len(rec.attribution_mismatches) + len(rec.conversation_customer_mismatches)
            ),
            "target_customers": dg.MetadataValue.int(rec.target_customers),
            "duplicate_customers": dg.MetadataValue.int(len(rec.duplicate_customers)),
            "api_calls": dg.MetadataValue.int(calls["requests"]),
            "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
            "report": dg.MetadataValue.path(str(reports / f"{stem}.md")),
            "report_html": dg.MetadataValue.path(str(html_path)),
            "report_html_url": dg.MetadataValue.url(run_html.as_uri()),
            "summary": dg.MetadataValue.md(summary),
            **metadata_tables(rec, full),
            **{f"full_list_{name}": dg.MetadataValue.path(str(written.path)) for name, written in full.items()},
        }
    )
    fidelity_metadata = [
        {"conversations_checked": dg.MetadataValue.int(tags["conversations_checked"]),
         "wrong": dg.MetadataValue.int(tags["wrong"]),
         "missing_conversations": dg.MetadataValue.int(tags["missing_conversations"]),
         "examples": dg.MetadataValue.json(tags["examples"])},
        {"files": dg.MetadataValue.int(files["files"]),
         "mismatches": dg.MetadataValue.int(files["mismatches"]),
         "unverified": dg.MetadataValue.int(files["unverified"]),
         "oversize_listed_not_uploaded": dg.MetadataValue.int(files["oversize_listed_not_uploaded"]),
         "unverifiable": dg.MetadataValue.int(files["unverifiable"]),
         "by_state": dg.MetadataValue.json(files["by_state"]),
         "failing": dg.MetadataValue.json(files["failing"])},
        {"missing": dg.MetadataValue.json([{"capability": f.name, "detail": f.detail, "instead": f.capability.without}
                                           for f in caps.missing()]),
         "supported": dg.MetadataValue.json([f.name for f in caps.findings() if f.supported])},
    ]
    for outcome, metadata in zip(outcomes, check_metadata(rec, accepted_file, full) + fidelity_metadata, strict=True):
        yield dg.AssetCheckResult(check_name=outcome.name, passed=outcome.passed, description=outcome.detail,
                                  severity=dg.AssetCheckSeverity.WARN if outcome.limit else dg.AssetCheckSeverity.ERROR,
                                  metadata=metadata)


def tag_outcome(ok: bool, tags: dict, caps: CapabilityStore | None) -> CheckOutcome:
    """Tags as tags; on a workspace without them (`caps` given), the names kept in metadata:
    right there, the check is a warning naming the limit; wrong, a failure like any other."""
    wrong = (f"{tags['wrong']} of {tags['conversations_checked']} conversations with wrong {tags['kept_as']}; "
             f"{tags['missing_conversations']} conversations not found")
    if caps is None or not ok:
        return CheckOutcome(TAG_CHECK, ok, wrong)
    why = "; ".join(f"{f.name}: {f.detail}" for f in caps.missing() if f.name.startswith("tags"))
    return CheckOutcome(TAG_CHECK, False, limit=True, detail=(
        f"this workspace takes no tags ({why}): the topic names of all {tags['conversations_checked']} conversations "
        "are kept in metadata.gladlyTags, each as expected"))


def attachment_outcome(ok: bool, files: dict, caps: CapabilityStore) -> CheckOutcome:
    detail = (f"{files['mismatches']} of {files['files']} files with a different sha256 (or size) on Unthread; "
              f"{files['unverified']} not verified; {files['oversize_listed_not_uploaded']} oversize (listed)")
    if ok and files["unverifiable"]:
        finding = next((f for f in caps.missing() if f.name == FILE_READ_BACK), None)
        return CheckOutcome(ATTACHMENT_CHECK, False, limit=True, detail=(
            f"{files['unverifiable']} files not verifiable on this workspace (no file read-back"
            f"{': ' + finding.detail if finding else ''}): each is listed on its message with the source's size and "
            f"its source sha256 is recorded; {detail}"))
    return CheckOutcome(ATTACHMENT_CHECK, ok, detail)


def capabilities_outcome(caps: CapabilityStore) -> CheckOutcome:
    missing = caps.missing()
    if not missing:
        probed = len(caps.findings())
        return CheckOutcome(CAPABILITIES_CHECK, True, f"all {probed} probed capabilities supported" if probed
                            else "nothing probed (no preflight on record): every feature assumed")
    return CheckOutcome(CAPABILITIES_CHECK, False, limit=True, detail="; ".join(
        f"{f.name} not supported → {f.capability.without}" for f in missing))


def check_outcomes(rec: Reconciliation, max_variance: float, caps: CapabilityStore | None = None) -> list[CheckOutcome]:
    """Pass/fail and a one-line reason for each check, in the order of the check specs."""
    no_author = next((f for f in caps.missing() if f.name == MESSAGE_AUTHOR), None) if caps else None
    return [
        CheckOutcome(VARIANCE_CHECK, rec.variance <= max_variance,
                     f"{len(rec.missing)} of {rec.source_items} source items missing"
                     + (f", and {rec.unplaceable_lines} export lines that cannot be placed in a day" if rec.unplaceable_lines else "")
                     + (f"; {rec.accepted_missing} of them accepted in review, not counted" if rec.accepted_missing else "")
                     + f" ({rec.variance:.4%}; tolerance {max_variance:.4%})"),
        CheckOutcome(ORDER_CHECK, not rec.out_of_order and rec.conversations_checked == rec.conversations_expected,
                     f"{len(rec.out_of_order)} conversations out of order; {rec.conversations_checked} of "
                     f"{rec.conversations_expected} loaded conversations checked"),
        CheckOutcome(DUPLICATE_CHECK, not rec.duplicates, f"{len(rec.duplicates)} source items found more than once"),
        CheckOutcome(ATTRIBUTION_CHECK, rec.attribution_ok and not rec.messages_unverifiable,
                     limit=rec.attribution_ok,
                     detail=f"{len(rec.attribution_mismatches)} of {rec.messages_attributed} messages from the wrong person; "
                     f"{len(rec.conversation_customer_mismatches)} conversations under the wrong customer; "
                     f"{rec.messages_unverifiable} messages showed no author"
                     + (f" (not verifiable on this workspace: {no_author.detail})" if rec.messages_unverifiable and no_author else "")),
        CheckOutcome(MERGED_PROFILES_CHECK, rec.merged_profiles_ok,
                     f"{len(rec.duplicate_customers)} Gladly ids with several Unthread customers; "
                     f"{len(rec.merged_customers_on_target)} merged-away ids with one; "
                     f"{len(rec.customers_missing_on_target)} loaded customers not found"),
        CheckOutcome(ACCOUNTED_CHECK, not rec.unaccepted_losses, accounted_detail(rec)),
    ]


def accounted_detail(rec: Reconciliation) -> str:
    """One line: how much of the window the target does not have, and whether each is accepted."""
    open_ = rec.unaccepted_losses
    by_stage = Counter(loss["stage"] for loss in open_)
    stages = ", ".join(f"{stage} {n}" for stage, n in by_stage.most_common())
    accepted = len(rec.losses) - len(open_)
    if not open_:
        return ("every source item and line of the window is in Unthread" if not rec.losses
                else f"all {accepted} losses accepted (reviewed in {ACCEPTED_LOSSES_FILE}); nothing else missing")
    return (f"{len(open_)} source items, lines or writes not in Unthread and not accepted ({stages}); "
            f"{accepted} accepted; {rec.unplaceable_lines} lines could not be placed in a day")


def check_metadata(
    rec: Reconciliation, accepted_file: Path | None = None, full: Mapping[str, FullList] | None = None
) -> list[dict]:
    """Each check's metadata, in the order of `check_outcomes`; with `full`, each check links the
    Parquet files of the lists it shows examples of, and says where it cut them."""
    examples = 50
    attribution = rec.attribution_mismatches + rec.conversation_customer_mismatches
    customers = rec.duplicate_customers + rec.merged_customers_on_target + rec.customers_missing_on_target
    accepted = [x for x in rec.losses if x.get("accepted")]
    return [
        {
            "variance": dg.MetadataValue.float(rec.variance),
            "missing": dg.MetadataValue.int(len(rec.missing)),
            "missing_by_stage": dg.MetadataValue.json(dict(rec.missing_by_stage)),
            **_listed(full, {"missing": len(rec.missing)}),
        },
        {
            "tickets_in_window": dg.MetadataValue.int(rec.tickets_in_window),
            "conversations_expected": dg.MetadataValue.int(rec.conversations_expected),
            "conversations_checked": dg.MetadataValue.int(rec.conversations_checked),
            "out_of_order": dg.MetadataValue.json(rec.out_of_order[:examples]),
            **_listed(full, _shown(examples, out_of_order=rec.out_of_order)),
        },
        {"duplicates": dg.MetadataValue.int(len(rec.duplicates)),
         "examples": dg.MetadataValue.json(rec.duplicates[:examples]),
         **_listed(full, _shown(examples, duplicates=rec.duplicates))},
        {
            "messages_attributed": dg.MetadataValue.int(rec.messages_attributed),
            "messages_unverifiable": dg.MetadataValue.int(rec.messages_unverifiable),
            "mismatches": dg.MetadataValue.int(len(rec.attribution_mismatches)),
            "conversation_customer_mismatches": dg.MetadataValue.int(len(rec.conversation_customer_mismatches)),
            "examples": dg.MetadataValue.json(attribution[:examples]),
            **_listed(full, _shown(examples, attribution_mismatches=rec.attribution_mismatches,
                                   conversation_customer_mismatches=rec.conversation_customer_mismatches)),
        },
        {
            "target_customers": dg.MetadataValue.int(rec.target_customers),
            "duplicate_customers": dg.MetadataValue.int(len(rec.duplicate_customers)),
            "merged_customers_on_target": dg.MetadataValue.int(len(rec.merged_customers_on_target)),
            "customers_missing_on_target": dg.MetadataValue.int(len(rec.customers_missing_on_target)),
            "examples": dg.MetadataValue.json(customers[:examples]),
            **_listed(full, _shown(examples, duplicate_customers=rec.duplicate_customers,
                                   merged_customers_on_target=rec.merged_customers_on_target,
                                   customers_missing_on_target=rec.customers_missing_on_target)),
        },
        {
            "losses": dg.MetadataValue.int(len(rec.losses)),
            "not_accepted": dg.MetadataValue.int(len(rec.unaccepted_losses)),
            "accepted": dg.MetadataValue.int(len(accepted)),
            "unplaceable_lines": dg.MetadataValue.int(rec.unplaceable_lines),
            "not_accepted_by_stage": dg.MetadataValue.json(dict(Counter(x["stage"] for x in rec.unaccepted_losses))),
            "not_accepted_list": dg.MetadataValue.json(rec.unaccepted_losses[:MAX_LISTED]),
            "accepted_list": dg.MetadataValue.json(accepted[:MAX_LISTED]),
            "stale_acceptances": dg.MetadataValue.json(rec.stale_acceptances[:MAX_LISTED]),
            **({"accepted_losses_file": dg.MetadataValue.path(str(accepted_file))} if accepted_file else {}),
            **_listed(full, {"losses": min(len(rec.unaccepted_losses), MAX_LISTED) + min(len(accepted), MAX_LISTED),
                             **_shown(MAX_LISTED, stale_acceptances=rec.stale_acceptances)}),
        },
    ]


def _shown(limit: int, **lists: Sequence) -> dict[str, int]:
    """How many rows of each list their concatenation, cut at `limit` rows, shows."""
    shown = {}
    for name, rows in lists.items():
        shown[name] = min(len(rows), limit)
        limit -= shown[name]
    return shown


def _listed(full: Mapping[str, FullList] | None, shown: Mapping[str, int]) -> dict[str, dg.MetadataValue]:
    """For each list (name -> rows shown in this metadata), a link to its Parquet file and, when
    fewer rows are shown than it has, "N listed here, all M in <file>" (`<list>_listed`)."""
    out: dict[str, dg.MetadataValue] = {}
    for name, n in shown.items():
        written = (full or {}).get(name)
        if written is None:
            continue
        out[f"full_list_{name}"] = dg.MetadataValue.path(str(written.path))
        if note := listed_note(n, written.rows, written.path):
            out[f"{name}_listed"] = dg.MetadataValue.text(note)
    return out


def day_figures(rec: Reconciliation, days: Sequence[str]) -> dict[str, dict[str, int]]:
    """Each day's own source_items, staged, in_tickets, loaded, read_back and missing, from the
    per-day table and the missing items' days (zeros for a day with nothing in it)."""
    by_day = {d["day"]: d for d in rec.by_day}
    missing = Counter(m.get("day") for m in rec.missing)
    columns = {"source_items": "source", "staged": "staged", "in_tickets": "in_tickets", "loaded": "loaded",
               "read_back": "read_back"}
    return {
        day: {**{name: int(by_day.get(day, {}).get(column) or 0) for name, column in columns.items()},
              "missing": missing[day]}
        for day in days
    }


def report_json(rec: Reconciliation, full_lists: Mapping[str, str]) -> str:
    """The JSON report: `Reconciliation.as_dict` (each list cut at MAX_LISTED), and under
    `full_lists` each list's Parquet file (relative to the report), its rows, how many are listed
    here and, when cut, "N listed here, all M in <file>"."""
    data = rec.as_dict()
    data["full_lists"] = {}
    for name, href in full_lists.items():
        listed, rows = len(data[name]), len(getattr(rec, name))
        note = listed_note(listed, rows, href)
        data["full_lists"][name] = {"file": href, "rows": rows, "listed": listed, **({"note": note} if note else {})}
    return json.dumps(data, indent=1, default=str)


def _table(columns: list[tuple[str, str]], rows: list[list]) -> dg.TableMetadataValue:
    # Not markdown: the Dagster UI shows each record's values as plain text (a React text node),
    # so cells are passed as they are; escaping them would show `&lt;` to the reader.
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns])
    records = [
        dg.TableRecord({name: ("" if value is None else value) for (name, _), value in zip(columns, row, strict=True)})
        for row in rows[:METADATA_ROWS]
    ]
    return dg.MetadataValue.table(records, schema=schema)


def metadata_tables(rec: Reconciliation, full: Mapping[str, FullList] | None = None) -> dict[str, dg.MetadataValue]:
    """The report's figures as Dagster table metadata (the UI shows them on the materialization);
    with `full`, where a table of a list is cut, where all its rows are."""
    per_day = [("day", "string"), ("source", "int"), ("staged", "int"), ("in_tickets", "int"), ("loaded", "int"),
               ("read_back", "int")]
    sizes = Counter(rec.ticket_sizes)
    return {
        "per_day": _table(per_day, [[d[name] for name, _ in per_day] for d in rec.by_day]),
        "quarantine_reasons": _table([("reason", "string"), ("lines", "int")],
                                     [[r, n] for r, n in rec.quarantine_reasons.most_common()]),
        "dead_letter_reasons": _table([("reason", "string"), ("writes", "int")],
                                      [[r, n] for r, n in rec.dead_letter_reasons.most_common()]),
        "ticket_size_distribution": _table([("items_per_ticket", "int"), ("tickets", "int")],
                                           [[size, n] for size, n in sorted(sizes.items())]),
        "unmatched_agent_list": _table(
            [("agent_id", "string"), ("name", "string"), ("email", "string"), ("active", "bool"), ("items", "int")],
            [[a["agent_id"], a["name"], a["email"], a["active"], a["items"]] for a in rec.unmatched_agents],
        ),
        "missing_items": _table([("item_id", "string"), ("day", "string"), ("stage", "string"), ("reason", "string")],
                                [[m["item_id"], m.get("day"), m["stage"], m["reason"]] for m in rec.missing]),
        "losses_not_accepted": _table([("key", "string"), ("stage", "string"), ("reason", "string")],
                                      [[x["key"], x["stage"], x["reason"]] for x in rec.unaccepted_losses]),
        **_listed(full, {"missing": min(len(rec.missing), METADATA_ROWS),
                         "unmatched_agents": min(len(rec.unmatched_agents), METADATA_ROWS),
                         "losses": min(len(rec.unaccepted_losses), METADATA_ROWS)}),
    }


def render_markdown(
    rec: Reconciliation, outcomes: list[CheckOutcome] | None = None, full_lists: Mapping[str, str] | None = None
) -> str:
    """The report as markdown (the asset's `summary` metadata and the .md file). Every cell goes
    through `md_row`: names, ids and reasons come from Gladly, staging and vendor errors. A list
    cut at 200 rows says where all of them are (`full_lists`: list -> Parquet file)."""
    files = dict(full_lists or {})

    def cut(name: str, shown: int) -> list[str]:
        note = listed_note(shown, len(getattr(rec, name)), f"`{files[name]}`" if name in files else None)
        return ["", f"{note}."] if note else []

    lines = [
        f"# Reconciliation {rec.window[0][:10]} .. {rec.window[1][:10]} (UTC, end exclusive)",
        "",
        f"source {rec.source_items} · staged {rec.staged} · quarantined lines {rec.quarantined_lines} · "
        f"in tickets {rec.in_tickets} · loaded {rec.loaded} · read back {rec.read_back} · "
        f"variance {rec.variance:.4%} · conversations checked {rec.conversations_checked} · "
        f"out of order {len(rec.out_of_order)} · duplicates {len(rec.duplicates)}",
        "",
    ]
    if outcomes:
        limits = [o for o in outcomes if o.limit and not o.passed]
        lines += ["**Data guarantees** (nothing lost, duplicated, out of order or misattributed):", "",
                  "| check | result | detail |", "|---|---|---|"]
        lines += [md_row([o.name, "PASSED" if o.passed else "**FAILED**", o.detail]) for o in outcomes if o not in limits]
        lines += [""]
        if limits:
            lines += ["**Workspace limits** (warnings: what this Unthread workspace does not offer; no data lost):", "",
                      "| check | result | detail |", "|---|---|---|"]
            lines += [md_row([o.name, "WARN", o.detail]) for o in limits]
            lines += [""]
    lines += [
        "| day | source | staged | in tickets | loaded | read back |",
        "|---|---|---|---|---|---|",
        *[md_row([d["day"], d["source"], d["staged"], d["in_tickets"], d["loaded"], d["read_back"]]) for d in rec.by_day],
    ]
    if rec.quarantine_reasons:
        lines += ["", "## Quarantined lines", "", "| reason | lines |", "|---|---|"]
        lines += [md_row([reason, n]) for reason, n in rec.quarantine_reasons.most_common()]
    if rec.dead_letters:
        lines += ["", f"## Dead letters ({len(rec.dead_letters)}): refused by the target; the next run retries them",
                  "", "| source key | attempts | reason |", "|---|---|---|"]
        lines += [md_row([d["source_key"], d["attempts"], d["reason"]]) for d in rec.dead_letters[:200]]
        lines += cut("dead_letters", min(len(rec.dead_letters), 200))
    if rec.unmatched_agents:
        lines += ["", f"## Unmatched agents ({len(rec.unmatched_agents)}): no Unthread user with their email",
                  "", "| agent | name | email | items |", "|---|---|---|---|"]
        lines += [md_row([a["agent_id"], a["name"], a["email"], a["items"]]) for a in rec.unmatched_agents[:200]]
        lines += cut("unmatched_agents", min(len(rec.unmatched_agents), 200))
    if rec.missing:
        lines += ["", f"## Missing from Unthread ({len(rec.missing)})", "", "| item | stage | reason |", "|---|---|---|"]
        lines += [md_row([m["item_id"], m["stage"], m["reason"]]) for m in rec.missing[:200]]
        lines += cut("missing", min(len(rec.missing), 200))
    if rec.losses:
        open_ = rec.unaccepted_losses
        lines += ["", f"## Not in Unthread ({len(rec.losses)}: {len(open_)} not accepted)", "",
                  "| loss | stage | reason | accepted |", "|---|---|---|---|"]
        shown = open_[:200] + [x for x in rec.losses if x.get("accepted")][: max(0, 200 - len(open_))]
        lines += [md_row([x["key"], x["stage"], x["reason"], x.get("accepted") or "NO"]) for x in shown]
        lines += cut("losses", len(shown))
    return "\n".join(lines) + "\n"
