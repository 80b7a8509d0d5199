"""`migration-pipeline`: the command line (typer). Every command has --help."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from migration_pipeline.cli_ops import StagingUrl, cli_settings, usage_errors
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


emulator_app = typer.Typer(help="Run a vendor API emulator on loopback (for rehearsals and tests).", no_args_is_help=True)
app.add_typer(emulator_app, name="emulator")

# -- shared fault options ---------------------------------------------------------------------
FaultsFile = Annotated[
    Optional[Path], typer.Option("--faults", help="YAML/JSON file with fault settings (see README); flags override it")
]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Seed that makes fault decisions repeatable")]
Fault429 = Annotated[Optional[float], typer.Option("--fault-429", help="Fraction of API requests answered 429")]
Fault5xx = Annotated[Optional[float], typer.Option("--fault-5xx", help="Fraction of API requests answered 500/502/503")]
Latency = Annotated[Optional[float], typer.Option("--latency-ms", help="Latency added to every API request (ms)")]
LostResponse = Annotated[
    Optional[float], typer.Option("--fault-lost-response", help="Fraction of writes applied but their response lost")
]
Truncate = Annotated[Optional[float], typer.Option("--fault-truncate", help="Fraction of file downloads cut short")]
RequestLog = Annotated[Optional[Path], typer.Option("--request-log", help="Append every request as JSON lines here")]
Host = Annotated[str, typer.Option("--host", help="Interface to bind (loopback by default)")]


def _fault_config(faults_file: Path | None, **overrides):
    from migration_pipeline.emulators.common import FaultConfig

    base = FaultConfig.from_file(faults_file) if faults_file else FaultConfig()
    return base.merged(**overrides)


def _credential(settings_class, field: str) -> str:
    """A credential the emulator checks like the vendor would, from the variable the pipeline reads."""
    return usage_errors(lambda: settings_class.from_env().required(field))


@emulator_app.command("gladly")
def emulator_gladly(
    data: Annotated[Path, typer.Option("--data", help="Dataset folder (written by `generate`)", exists=True)],
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0 picks a free one)")] = 8081,
    host: Host = "127.0.0.1",
    now: Annotated[
        Optional[datetime], typer.Option("--now", help="Pin the emulator clock (export-job visibility); default: wall clock")
    ] = None,
    rate_limit: Annotated[int, typer.Option("--rate-limit", help="Org-wide requests per second")] = 10,
    faults: FaultsFile = None,
    seed: Seed = None,
    fault_429: Fault429 = None,
    fault_5xx: Fault5xx = None,
    latency_ms: Latency = None,
    fault_lost_response: LostResponse = None,
    fault_truncate: Truncate = None,
    expire_jobs: Annotated[
        Optional[float], typer.Option("--expire-jobs", help="Fraction of listed export jobs whose files are already gone")
    ] = None,
    request_log: RequestLog = None,
) -> None:
    """Serve a dataset as Gladly's REST API (Basic auth from GLADLY_API_USER / GLADLY_API_TOKEN)."""
    from migration_pipeline.emulators.common import serve_forever
    from migration_pipeline.emulators.gladly import create_app
    from migration_pipeline.settings import GladlySettings

    config = _fault_config(
        faults,
        seed=seed,
        rate_429=fault_429,
        rate_5xx=fault_5xx,
        latency_ms=latency_ms,
        lost_response=fault_lost_response,
        truncate_downloads=fault_truncate,
        expire_jobs=expire_jobs,
    )
    asgi = create_app(
        data,
        api_user=_credential(GladlySettings, "api_user"),
        api_token=_credential(GladlySettings, "api_token"),
        faults=config,
        now=_utc(now),
        rate_limit_per_second=rate_limit,
        request_log_path=request_log,
    )
    serve_forever(asgi, host=host, port=port)


@emulator_app.command("unthread")
def emulator_unthread(
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0 picks a free one)")] = 8082,
    host: Host = "127.0.0.1",
    state: Annotated[
        Optional[Path], typer.Option("--state", help="SQLite file that keeps created objects across restarts")
    ] = None,
    workspace: Annotated[
        Optional[Path],
        typer.Option("--workspace", help="JSON of existing users/channels/inboxes (a dataset's unthread/workspace.json)"),
    ] = None,
    rate_limit: Annotated[int, typer.Option("--rate-limit", help="Requests per second before 429 (0 = none)")] = 50,
    retry_after: Annotated[
        Optional[int], typer.Option("--retry-after", help="Send Retry-After (seconds) on 429s; off by default")
    ] = None,
    faults: FaultsFile = None,
    seed: Seed = None,
    fault_429: Fault429 = None,
    fault_5xx: Fault5xx = None,
    latency_ms: Latency = None,
    fault_lost_response: LostResponse = None,
    fault_truncate: Truncate = None,
    request_log: RequestLog = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Offer only the confirmed Unthread API (default: UNTHREAD_EMULATOR_STRICT)")
    ] = False,
) -> None:
    """Serve an Unthread-compatible API under /api (X-Api-Key from UNTHREAD_API_KEY)."""
    from migration_pipeline.emulators.common import serve_forever
    from migration_pipeline.emulators.unthread import create_app
    from migration_pipeline.settings import UnthreadSettings

    config = _fault_config(
        faults,
        seed=seed,
        rate_429=fault_429,
        rate_5xx=fault_5xx,
        latency_ms=latency_ms,
        lost_response=fault_lost_response,
        truncate_downloads=fault_truncate,
    )
    asgi = create_app(
        api_key=_credential(UnthreadSettings, "api_key"),
        state_path=state,
        workspace=json.loads(workspace.read_text(encoding="utf-8")) if workspace else None,
        faults=config,
        rate_limit_per_second=rate_limit or None,
        retry_after_seconds=retry_after,
        request_log_path=request_log,
        strict=True if strict else None,
    )
    serve_forever(asgi, host=host, port=port)


@app.command("generate")
def generate_cmd(
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to write")],
    customers: Annotated[int, typer.Option("--customers", help="Number of Gladly customers", min=1)] = 200,
    days: Annotated[int, typer.Option("--days", help="Days of history", min=1)] = 21,
    seed: Annotated[int, typer.Option("--seed", help="Same seed and end date, same bytes")] = 0,
    end: Annotated[
        Optional[datetime], typer.Option("--end", formats=["%Y-%m-%d"], help="Last day (exclusive) of history; default today UTC")
    ] = None,
    frequency: Annotated[str, typer.Option("--frequency", help="Export schedule: daily or hourly")] = "daily",
    one_time_job: Annotated[
        Optional[bool],
        typer.Option("--one-time-job/--no-one-time-job", help="Add a Support one-time job for expired history (default: when days > 13)"),
    ] = None,
) -> None:
    """Write a messy Gladly-shaped dataset (export jobs, REST data, ground-truth manifest)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from migration_pipeline.synth.generator import generate

    with Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TextColumn("items"), TimeElapsedColumn()) as bar:
        task = bar.add_task("items", total=None)
        manifest = generate(
            out,
            customers=customers,
            days=days,
            seed=seed,
            end=end.date() if end else None,
            frequency=frequency,  # type: ignore[arg-type]
            one_time_job=one_time_job,
            progress=lambda n: bar.update(task, completed=n),
        )
    counts = manifest.get("counts", {})
    typer.echo(
        f"wrote {out}: {counts.get('customers')} customers, {counts.get('items')} items, "
        f"{len(manifest.get('jobs', []))} export jobs"
    )


@app.command("demo")
def demo_cmd(
    workdir: Annotated[
        Optional[Path], typer.Option("--workdir", help="Where to put the dataset, archive and staging DB (default: a temp dir)")
    ] = None,
    customers: Annotated[int, typer.Option("--customers")] = 150,
    days: Annotated[int, typer.Option("--days")] = 21,
    seed: Annotated[int, typer.Option("--seed")] = 7,
) -> None:
    """Start both emulators, generate a messy dataset and run the pipeline over its whole range."""
    import warnings

    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    from migration_pipeline.demo import run_demo

    raise typer.Exit(run_demo(workdir=workdir, customers=customers, days=days, seed=seed))


@app.command("ui")
def ui_cmd(
    workdir: Annotated[
        Optional[Path], typer.Option("--workdir", help="Dataset, archive and Dagster home (default: data/ui, reused)")
    ] = None,
    customers: Annotated[int, typer.Option("--customers")] = 150,
    days: Annotated[int, typer.Option("--days")] = 21,
    seed: Annotated[int, typer.Option("--seed")] = 7,
) -> None:
    """Start both emulators on a rehearsal dataset and open the pipeline in the Dagster UI."""
    from migration_pipeline.demo import run_ui

    raise typer.Exit(run_ui(workdir=workdir, customers=customers, days=days, seed=seed))


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

    from migration_pipeline.checks.trace import trace
    from migration_pipeline.resources import unthread_resource
    from migration_pipeline.staging.db import StagingDatabase

    settings = cli_settings(ctx)
    readback = readback and settings.unthread.base_url is not None and settings.unthread.api_key is not None
    db = StagingDatabase(staging_url or settings.staging_database_url)
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
    from migration_pipeline.core.split_rules import RulesFileError, SplitRules
    from migration_pipeline.staging import preview as pv
    from migration_pipeline.staging.db import StagingDatabase

    if (customer is None) == (conversation is None):
        raise typer.BadParameter("give exactly one of --customer or --conversation")
    settings = cli_settings(ctx)
    try:
        rule_sets = [("current", SplitRules.load(current_rules or settings.split_rules))]
        if rules is not None:
            rule_sets.append(("candidate", SplitRules.load(rules)))
    except RulesFileError as exc:
        raise typer.BadParameter(str(exc)) from None
    db = StagingDatabase(staging_url or settings.staging_database_url)
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

    from migration_pipeline.staging.preview import moved_items

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


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

