"""The rehearsal commands of `migration-pipeline`: `emulator gladly|unthread|zendesk`, `generate`,
`demo` and `ui`. Registered on the pipeline's CLI through the entry-point group `migration_pipeline.cli`
(pyproject.toml), so the pipeline never imports the simulator."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from migration_pipeline.cli_ops import usage_errors

rehearsal = typer.Typer()  # holds the top-level commands until `register` adds them
emulator_app = typer.Typer(help="Run a vendor API emulator on loopback (for rehearsals and tests).", no_args_is_help=True)

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
    from sim.emulators.common import FaultConfig

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
    from sim.emulators.common import serve_forever
    from sim.emulators.gladly import create_app
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
    from sim.emulators.common import serve_forever
    from sim.emulators.unthread import create_app
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


@emulator_app.command("zendesk")
def emulator_zendesk(
    data: Annotated[Path, typer.Option("--data", help="Zendesk dataset folder (`generate --source zendesk`)", exists=True)],
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0 picks a free one)")] = 8083,
    host: Host = "127.0.0.1",
    now: Annotated[
        Optional[datetime],
        typer.Option("--now", help="Pin the emulator clock; default: the dataset's exportedAt (PUT /_emulator/clock moves it)"),
    ] = None,
    rate_limit: Annotated[int, typer.Option("--rate-limit", help="Account-wide requests per minute (0 = none)")] = 700,
    incremental_limit: Annotated[
        int, typer.Option("--incremental-limit", help="Incremental export requests per minute (0 = none)")
    ] = 10,
    faults: FaultsFile = None,
    seed: Seed = None,
    fault_429: Fault429 = None,
    fault_5xx: Fault5xx = None,
    latency_ms: Latency = None,
    request_log: RequestLog = None,
) -> None:
    """Serve a Zendesk dataset as Zendesk's API under /api/v2 (API token auth:
    ZENDESK_EMAIL + "/token" and ZENDESK_API_TOKEN)."""
    from sim.emulators.common import serve_forever
    from migration_pipeline.settings import ZendeskSettings
    from sim.emulators.zendesk import create_app

    config = _fault_config(faults, seed=seed, rate_429=fault_429, rate_5xx=fault_5xx, latency_ms=latency_ms)
    asgi = create_app(
        data,
        email=_credential(ZendeskSettings, "email"),
        api_token=_credential(ZendeskSettings, "api_token"),
        faults=config,
        now=_utc(now),
        rate_limit_per_minute=rate_limit or None,
        incremental_limit_per_minute=incremental_limit or None,
        request_log_path=request_log,
    )
    serve_forever(asgi, host=host, port=port)


class Source(str, Enum):
    gladly = "gladly"
    zendesk = "zendesk"


class ExportComments(str, Enum):
    embedded = "embedded"
    absent = "absent"
    both = "both"


# Options that only one source's generator takes: naming them for the other is a usage error.
SOURCE_ONLY_OPTIONS = {"frequency": Source.gladly, "one_time_job": Source.gladly, "export_comments": Source.zendesk}


@rehearsal.command("generate")
def generate_cmd(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to write")],
    source: Annotated[Source, typer.Option("--source", help="Which vendor's data to generate")] = Source.gladly,
    customers: Annotated[int, typer.Option("--customers", help="Number of customers (Zendesk: end users, at least one per planted role: 9)", min=1)] = 200,
    days: Annotated[int, typer.Option("--days", help="Days of history", min=1)] = 21,
    seed: Annotated[int, typer.Option("--seed", help="Same seed and end date, same bytes")] = 0,
    end: Annotated[
        Optional[datetime], typer.Option("--end", formats=["%Y-%m-%d"], help="Last day (exclusive) of history; default today UTC")
    ] = None,
    frequency: Annotated[str, typer.Option("--frequency", help="Gladly: export schedule, daily or hourly")] = "daily",
    one_time_job: Annotated[
        Optional[bool],
        typer.Option("--one-time-job/--no-one-time-job", help="Gladly: add a Support one-time job for expired history (default: when days > 13)"),
    ] = None,
    export_comments: Annotated[
        ExportComments,
        typer.Option("--export-comments", help="Zendesk: whether the export's ticket lines embed comments (both: one delivery of each)"),
    ] = ExportComments.both,
) -> None:
    """Write a messy dataset with its ground-truth manifest: Gladly (export jobs, REST data) or
    Zendesk (the full JSON export as handed over, the API's state with a later delta)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    for name, owner in SOURCE_ONLY_OPTIONS.items():
        given = ctx.get_parameter_source(name)  # typer's own enum (it vendors click): compare by name
        if owner != source and given is not None and given.name == "COMMANDLINE":
            raise typer.BadParameter(f"--{name.replace('_', '-')} applies to --source {owner.value} only")
    unit = "items" if source == Source.gladly else "tickets"
    with Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn()) as bar:
        task = bar.add_task(unit, total=None)

        def progress(done: int) -> None:
            bar.update(task, completed=done)

        if source == Source.zendesk:
            from sim.synth.zendesk import generate as generate_zendesk

            try:
                manifest = generate_zendesk(out, customers=customers, days=days, seed=seed,
                                            end=end.date() if end else None, export_comments=export_comments.value,
                                            progress=progress)
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from None
        else:
            from sim.synth.generator import generate

            manifest = generate(
                out,
                customers=customers,
                days=days,
                seed=seed,
                end=end.date() if end else None,
                frequency=frequency,  # type: ignore[arg-type]
                one_time_job=one_time_job,
                progress=progress,
            )
    counts = manifest.get("counts", {})
    if source == Source.zendesk:
        typer.echo(
            f"wrote {out}: {counts.get('tickets')} tickets, {counts.get('comments')} comments and {counts.get('users')} users "
            f"in the export ({len(manifest.get('exports', []))} files); delta after {manifest['params']['exportedAt']}: "
            f"{counts.get('deltaNewTickets')} new and {counts.get('deltaUpdatedTickets')} updated tickets"
        )
        return
    typer.echo(
        f"wrote {out}: {counts.get('customers')} customers, {counts.get('items')} items, "
        f"{len(manifest.get('jobs', []))} export jobs"
    )


@rehearsal.command("demo")
def demo_cmd(
    workdir: Annotated[
        Optional[Path], typer.Option("--workdir", help="Where to put the dataset, archive and staging DB (default: a temp dir)")
    ] = None,
    customers: Annotated[int, typer.Option("--customers")] = 150,
    days: Annotated[int, typer.Option("--days")] = 21,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    pair: Annotated[str, typer.Option("--pair", help="gladly_to_unthread (default) or zendesk_to_gladly")] = "gladly_to_unthread",
) -> None:
    """Start both emulators, generate a messy dataset and run the pair over its whole range."""
    import warnings

    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    if pair == "zendesk_to_gladly":
        from sim.demo import console
        from sim.demo_zendesk import run_zendesk_demo

        raise typer.Exit(run_zendesk_demo(workdir=workdir, customers=min(customers, 60), days=min(days, 7), seed=seed, console=console))
    if pair != "gladly_to_unthread":
        raise typer.BadParameter(f"unknown pair {pair!r}: gladly_to_unthread or zendesk_to_gladly", param_hint="--pair")
    from sim.demo import run_demo

    raise typer.Exit(run_demo(workdir=workdir, customers=customers, days=days, seed=seed))


@rehearsal.command("ui")
def ui_cmd(
    workdir: Annotated[
        Optional[Path], typer.Option("--workdir", help="Dataset, archive and Dagster home (default: data/ui, reused)")
    ] = None,
    customers: Annotated[int, typer.Option("--customers")] = 150,
    days: Annotated[int, typer.Option("--days")] = 21,
    seed: Annotated[int, typer.Option("--seed")] = 7,
) -> None:
    """Start both emulators on a rehearsal dataset and open the pipeline in the Dagster UI."""
    from sim.demo import run_ui

    raise typer.Exit(run_ui(workdir=workdir, customers=customers, days=days, seed=seed))


def register(app: typer.Typer) -> None:
    """Add the rehearsal commands to the `migration-pipeline` app."""
    app.add_typer(emulator_app, name="emulator")
    for command in rehearsal.registered_commands:
        app.registered_commands.append(command)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
