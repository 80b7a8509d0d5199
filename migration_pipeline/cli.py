"""`migration-pipeline`: the command line (typer). Every command has --help."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from migration_pipeline.cli_ops import StagingUrl, cli_settings
from migration_pipeline.settings import MigrationPair

app = typer.Typer(
    help="Helpdesk history migration (Gladly -> Unthread) on Dagster, with vendor emulators.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    pair: Annotated[
        Optional[MigrationPair],
        typer.Option("--pair", help="Source and target of the migration (default: MIGRATION_PAIR, else gladly_to_unthread)"),
    ] = None,
) -> None:
    """Options of every command: the migration pair they work on (kept for `cli_settings`)."""
    ctx.obj = pair


# The rehearsal commands (emulator, generate, demo, ui) come from the `sim` package, registered
# through the entry-point group below, so the pipeline itself never imports the simulator.
PLUGIN_GROUP = "migration_pipeline.cli"


def _register_plugins() -> None:
    from importlib.metadata import entry_points

    for entry in entry_points(group=PLUGIN_GROUP):
        entry.load()(app)


@app.command("trace")
def trace_cmd(
    ctx: typer.Context,
    record_id: Annotated[str, typer.Argument(help="Gladly item / customer / conversation id, an email, or an Unthread conversation id")],
    staging_url: StagingUrl = None,
    readback: Annotated[
        bool,
        typer.Option("--readback/--no-readback", help="Read the record back from Unthread (UNTHREAD_BASE_URL, UNTHREAD_API_KEY)"),
    ] = True,
) -> None:
    """Print one record's path through every stage (readback status from Unthread included), or
    where it stopped and why."""
    from contextlib import nullcontext

    from migration_pipeline.pairs.gladly_to_unthread.checks.trace import trace
    from migration_pipeline.resources import unthread_resource
    from migration_pipeline.lib.staging.db import StagingDatabase
    from migration_pipeline.pairs.gladly_to_unthread.pair import NAME

    settings = cli_settings(ctx)
    readback = readback and settings.unthread.base_url is not None and settings.unthread.api_key is not None
    db = StagingDatabase(staging_url or settings.staging_database_url, NAME, sqlite_synchronous=settings.sqlite_synchronous)
    db.create_schema()  # on first use, moves the tables from before namespaces (adoption)
    try:
        with unthread_resource(settings, env_vars=False).client() if readback else nullcontext() as client:
            result = trace(db, record_id, client)
    finally:
        db.dispose()
    typer.echo(result.render())
    if result.kind == "unknown":
        raise typer.Exit(1)


@app.command("split-preview")
def split_preview_cmd(
    ctx: typer.Context,
    customer: Annotated[Optional[str], typer.Option("--customer", help="Gladly customer id (merged profiles included)")] = None,
    conversation: Annotated[Optional[str], typer.Option("--conversation", help="Gladly conversation id")] = None,
    rules: Annotated[
        Optional[Path], typer.Option("--rules", help="Candidate rules YAML to compare with the current rules", exists=True)
    ] = None,
    current_rules: Annotated[
        Optional[Path], typer.Option("--current-rules", help="Current rules (default: MIGRATION_SPLIT_RULES or the shipped file)")
    ] = None,
    show_items: Annotated[bool, typer.Option("--items", help="List every item id of every ticket")] = False,
    staging_url: StagingUrl = None,
) -> None:
    """Show how one customer's or conversation's staged timeline would be cut into tickets under
    the current rules and, with --rules, under a candidate rules file. Writes nothing."""
    from migration_pipeline.lib.split_rules import RulesFileError, SplitRules
    from migration_pipeline.lib.staging import preview as pv
    from migration_pipeline.lib.staging.db import StagingDatabase
    from migration_pipeline.pairs.gladly_to_unthread.pair import NAME

    if (customer is None) == (conversation is None):
        raise typer.BadParameter("give exactly one of --customer or --conversation")
    settings = cli_settings(ctx)
    try:
        rule_sets = [("current", SplitRules.load(current_rules or settings.split_rules))]
        if rules is not None:
            rule_sets.append(("candidate", SplitRules.load(rules)))
    except RulesFileError as exc:
        raise typer.BadParameter(str(exc)) from None
    db = StagingDatabase(staging_url or settings.staging_database_url, NAME, sqlite_synchronous=settings.sqlite_synchronous)
    db.create_schema()  # on first use, moves the tables from before namespaces (adoption)
    try:
        timelines = pv.timeline_items(db, customer, conversation)
        staged = pv.count_staged_tickets(db, timelines) if timelines else {}
    finally:
        db.dispose()
    if not timelines:
        typer.echo(f"no staged items for {'customer ' + customer if customer else 'conversation ' + str(conversation)}")
        raise typer.Exit(1)
    _print_previews([(name, r, pv.preview(timelines, r)) for name, r in rule_sets], staged, show_items)


def _print_previews(results, staged: dict[str, int], show_items: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from migration_pipeline.lib.staging.preview import moved_items

    console = Console(width=140)
    for name, rules, previews in results:
        console.print(f"[bold]{name} rules {rules.rule_version}[/bold]: " + "; ".join(rules.describe()))
        for timeline in previews:
            table = Table(title=f"{timeline.conversation_key}: {timeline.items} items -> {len(timeline.tickets)} tickets "
                                f"({staged.get(timeline.conversation_key, 0)} already cut in staging)")
            for column in ("#", "from (UTC)", "to (UTC)", "items", "channels", "starts because", "links back to"):
                table.add_column(column)
            number = {t.ticket_id: n for n, t in enumerate(timeline.tickets, 1)}
            for n, t in enumerate(timeline.tickets, 1):
                channels = ", ".join(f"{c} {k}" for c, k in sorted(t.channels.items()))
                link = f"#{number[t.previous_ticket_id]}" if t.previous_ticket_id in number else ""
                items = f"{len(t.items)}" + (f"\n{' '.join(t.items)}" if show_items else "")
                table.add_row(str(n), t.first_ts, t.last_ts, items, channels, t.cut_reason, link)
            console.print(table)
    if len(results) == 2:
        (_, _, current), (_, _, candidate) = results
        before = sum(len(p.tickets) for p in current)
        after = sum(len(p.tickets) for p in candidate)
        console.print(f"[bold]current {before} tickets, candidate {after} tickets; "
                      f"{moved_items(current, candidate)} items would be grouped differently[/bold]")


from migration_pipeline import cli_ops  # noqa: E402  (preflight, sample, dry-run, rollback)

cli_ops.register(app)
_register_plugins()
