"""Stage 4: Gladly's historical conversation import files for the partition range."""

from datetime import timedelta

import dagster as dg
from pydantic import Field

from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.pairs.day_figures import range_metadata
from migration_pipeline.pairs.zendesk_to_gladly.pair import NAME, stage
from migration_pipeline.pairs.zendesk_to_gladly.activity_items import items_in_gladly
from migration_pipeline.pairs.zendesk_to_gladly.shaping import load_import_rules, range_label, write_range
from migration_pipeline.resources import MigrationStorage
from migration_pipeline.vendors.gladly.import_files import GLADLY_MAX_ROWS_PER_FILE, ColumnNames, ImportFileConfig


class ImportFilesConfig(dg.Config):
    rules_file: str | None = Field(default=None, description="Import rules (skips, private notes, attachments); default: the packaged import_rules.yaml")
    rows_per_file: int = Field(default=GLADLY_MAX_ROWS_PER_FILE, description="Rows per CSV batch (Gladly takes at most 500,000)")
    column_names: dict[str, str] = Field(
        default_factory=dict,
        description="Header names from Gladly's template, by field: timestamp, title, body, source, customer_email, "
        "customer_name, customer_phone, tags (unset: the labels of Gladly's import article)",
    )
    render_workers: int = Field(default=0, ge=0, description="Processes that render HTML bodies to text for a big range "
                                "(0: one per CPU; 1: in the run's own process). The files are the same either way")


def import_root(storage: MigrationStorage):
    """MIGRATION_DATA_DIR/import/gladly/<first day>_<last day>/: one folder per range written."""
    return storage.root / "import" / "gladly"


@stage(
    "gladly_import_files",
    # profiles before any history: Gladly anchors imported items on the customer
    deps=["staged_conversation_items", "staged_conversations", "staged_customers", "gladly_customer_profiles",
          "gladly_activity_items"],  # what went through the API is left out
    kinds={"gladly", "csv"},
)
def gladly_import_files(
    context: dg.AssetExecutionContext, config: ImportFilesConfig, storage: MigrationStorage, staging: StagingResource
) -> dg.MaterializeResult:
    """Gladly's historical import files of the run's range (MIGRATION_DATA_DIR/import/gladly/<range>/):
    CSV batches (UTF-8, RFC 4180, at most `rows_per_file` rows), `rejected.csv` (each row Gladly
    would refuse, with its reason), `index.csv` (where each Zendesk comment went) and
    `manifest.json` (files, rows, sha256, range, source counts). One row per comment; titles over 100
    characters cut with an ellipsis, bodies over 25,000 split into continuation rows. Re-materializing
    a range writes the same bytes; a later range holds only what no earlier range took (a delta)."""
    window = context.partition_time_window
    first, last = window.start.date(), (window.end - timedelta(days=1)).date()
    rules = load_import_rules(config.rules_file)
    file_config = ImportFileConfig(rows_per_file=config.rows_per_file, columns=ColumnNames(**config.column_names))
    folder = import_root(storage) / range_label(first, last)
    with staging.database(NAME) as db:
        in_gladly = frozenset(items_in_gladly(db, window.start, window.end))
        result = write_range(db, folder, window.start, window.end, rules, file_config, in_gladly,
                             render_workers=config.render_workers)
    context.log.info(
        f"{result.label}: {result.written} comments in {result.rows_written} rows, {result.rejected} rejected, "
        f"{result.skipped} skipped, {result.late_arrivals} late arrivals; files in {folder}"
    )
    summary = result.summary()
    return dg.MaterializeResult(metadata={
        **range_metadata(context.partition_keys, {}),
        "folder": dg.MetadataValue.path(str(folder)),
        "rules_version": dg.MetadataValue.text(result.rules_version),
        "comments": dg.MetadataValue.int(result.items),
        "comments_written": dg.MetadataValue.int(result.written),
        "rows_written": dg.MetadataValue.int(result.rows_written),
        "continuation_rows": dg.MetadataValue.int(result.continuation_rows),
        "rejected": dg.MetadataValue.int(result.rejected),
        "rejected_by_reason": dg.MetadataValue.json(result.rejected_by_reason),
        "skipped": dg.MetadataValue.int(result.skipped),
        "skipped_by_rule": dg.MetadataValue.json(result.skipped_by_rule),
        "titles_cut": dg.MetadataValue.int(result.titles_cut),
        "bodies_split": dg.MetadataValue.int(result.bodies_split),
        "late_arrivals": dg.MetadataValue.int(result.late_arrivals),
        "files": dg.MetadataValue.json(summary["files"]),
    })
