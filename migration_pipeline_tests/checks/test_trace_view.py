"""Trace with readback: the `trace_record` job renders a record's path as markdown in Dagster, and
the CLI reads the record back from Unthread. (An item loaded by the run that resumed after a crash
is traced in test_resilience.py, on the crash that test makes.)"""

from __future__ import annotations

import httpx
import sqlalchemy as sa
from typer.testing import CliRunner

from migration_pipeline.cli import app
from migration_pipeline.lib.staging.db import ledger, ticket_items, tickets
from migration_pipeline.pairs.gladly_to_unthread.trace_view import trace_record
from migration_pipeline_tests.conftest import UNTHREAD_KEY
from migration_pipeline_tests.rehearsal import Rehearsal


def _trace_job(r: Rehearsal, record_id: str) -> tuple[str, dict]:
    result = trace_record.execute_in_process(
        run_config={"ops": {"render_trace": {"config": {"record_id": record_id}}}},
        resources={"staging": r.resources["staging"], "unthread": r.resources["unthread"]},
    )
    assert result.success
    output = next(e for e in result.all_node_events if e.is_successful_output)
    return result.output_for_node("render_trace"), output.step_output_data.metadata


def _loaded_item(r: Rehearsal) -> tuple[str, str, str]:
    """(item id, ticket id, Unthread conversation id) of a loaded item that is not its ticket's first."""
    db = r.db()
    try:
        with db.engine.connect() as conn:
            return _first_loaded(conn)
    finally:
        db.dispose()


def _first_loaded(conn) -> tuple[str, str, str]:
    key, ticket_id = conn.execute(
        sa.select(ledger.c.source_key, ticket_items.c.ticket_id)
        .join(ticket_items, ledger.c.source_key == sa.literal("message:") + ticket_items.c.item_id)
        .join(tickets, tickets.c.ticket_id == ticket_items.c.ticket_id)
        .where(ledger.c.state == "done", tickets.c.first_item_id != ticket_items.c.item_id)
        .order_by(ledger.c.source_key)
    ).first()
    conversation = conn.execute(sa.select(ledger.c.target_id).where(ledger.c.source_key == f"ticket:{ticket_id}")).scalar_one()
    return key.removeprefix("message:"), ticket_id, conversation


def test_trace_record_job_renders_the_trace_with_readback_as_markdown(migrated):
    rehearsal = migrated
    item_id, ticket_id, conversation = _loaded_item(rehearsal)

    text, metadata = _trace_job(rehearsal, item_id)
    markdown = metadata["trace"].value
    assert metadata["kind"].value == "Gladly conversation item" and metadata["found"].value is True
    assert f"### Trace of `{item_id}`" in markdown and "| stage | detail |" in markdown
    for stage in ("archive", "staged", "ticket", "loaded", "message", "readback"):
        assert f"| {stage} |" in markdown, stage
    assert ticket_id in markdown and f"(ledger message:{item_id}" in markdown
    assert "found on Unthread now: message" in markdown and conversation in markdown
    assert text.startswith(f"{item_id}: Gladly conversation item")

    # the CLI shows the same readback when it can reach Unthread, and says so when it cannot
    runner = CliRunner()
    env = {"UNTHREAD_BASE_URL": f"{rehearsal.unthread.url}/api", "UNTHREAD_API_KEY": UNTHREAD_KEY}
    # (`--` ends the options: Gladly ids may start with a dash)
    out = runner.invoke(app, ["trace", "--staging-url", rehearsal.staging_url, "--", item_id], env=env)
    assert out.exit_code == 0 and "found on Unthread now" in out.output, out.output
    out = runner.invoke(app, ["trace", "--staging-url", rehearsal.staging_url, "--no-readback", "--", item_id], env=env)
    assert out.exit_code == 0 and "readback    not checked" in out.output, out.output

    # deleted from Unthread after the load: the trace says the record is missing there now
    httpx.delete(f"{rehearsal.unthread.url}/api/conversations/{conversation}", headers={"X-Api-Key": UNTHREAD_KEY})
    _, metadata = _trace_job(rehearsal, item_id)
    assert f"MISSING: conversation {conversation} is gone from Unthread (404)" in metadata["trace"].value

    _, metadata = _trace_job(rehearsal, "no-such-record")
    assert metadata["found"].value is False and "not found" in metadata["trace"].value
