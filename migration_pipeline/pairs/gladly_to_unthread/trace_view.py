"""`trace_record`: the `migration-pipeline trace` view in the Dagster UI (Jobs -> trace_record ->
Launchpad, set `record_id`). The trace is rendered as markdown metadata on the op's output, in
the run's event log; the job writes nothing."""

import dagster as dg
from pydantic import Field

from migration_pipeline.pairs.gladly_to_unthread.checks.trace import trace
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.vendors.unthread.resources import UnthreadResource
from migration_pipeline.pairs.gladly_to_unthread.pair import NAME


class TraceConfig(dg.Config):
    record_id: str = Field(
        description="A Gladly item, customer or conversation id, an email, or an Unthread conversation id"
    )
    readback: bool = Field(default=True, description="Also read the record back from Unthread now")


@dg.op(description="One record's path through every stage, or the stage where it stopped and why, as markdown.")
def render_trace(context: dg.OpExecutionContext, config: TraceConfig, staging: StagingResource, unthread: UnthreadResource):
    """Trace `record_id` (archive file and line, staged row, merge, ticket, ledger, Unthread ids,
    readback status) and attach it to the run as markdown metadata."""
    with staging.database(NAME) as db:
        if config.readback:
            with unthread.client() as client:
                result = trace(db, config.record_id, client)
        else:
            result = trace(db, config.record_id)
    context.log.info(result.render())
    return dg.Output(
        result.render(),
        metadata={
            "trace": dg.MetadataValue.md(result.render_markdown()),
            "record_id": dg.MetadataValue.text(config.record_id),
            "kind": dg.MetadataValue.text(result.kind),
            "found": dg.MetadataValue.bool(result.found),
            "stages": dg.MetadataValue.int(len(result.steps)),
        },
    )


@dg.job(
    name="trace_record",
    description="Trace one record (Gladly item / customer / conversation id, email, or Unthread conversation id) "
    "through every stage and read it back from Unthread; set ops.render_trace.config.record_id.",
    tags={"purpose": "lineage"},
)
def trace_record():
    render_trace()
