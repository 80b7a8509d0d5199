"""`migration-pipeline` commands for the review before cutover: preflight, sample, dry-run, rollback.

They run the same library code as the Dagster assets and jobs (lib/staging/sample.py,
vendors/unthread/{preflight,dry_run,rollback}.py) directly, with rich progress bars, on resources
built from the same settings as `defs` (settings.py, resources.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Optional, TypeVar

import typer

if TYPE_CHECKING:
    from migration_pipeline.settings import MigrationSettings
    from migration_pipeline.lib.staging.db import StagingDatabase

Built = TypeVar("Built")


def _passwordless_url(value: str | None) -> str | None:
    """Refuse a staging URL with a password: a command line is readable by every user of the
    machine (`ps`, /proc) and lands in shell history. The environment is not."""
    if value is None:
        return None
    from urllib.parse import urlsplit

    import sqlalchemy as sa

    try:
        password = sa.make_url(value).password
    except (sa.exc.ArgumentError, ValueError):  # malformed: StagingDatabase says so; look for a password anyway
        try:
            password = urlsplit(value).password
        except ValueError:
            password = None
    if password:
        raise typer.BadParameter(
            "this URL carries a password, which a command line shows to every user of the machine; "
            "put the URL in the MIGRATION_STAGING_URL environment variable instead and leave out --staging-url"
        )
    return value


StagingUrl = Annotated[
    Optional[str],
    typer.Option(
        "--staging-url",
        help="Staging database without a password (default: MIGRATION_STAGING_URL, the place for a URL "
        "with a password, or the data dir's SQLite file)",
        callback=_passwordless_url,
    ),
]
Range = Annotated[
    Optional[str],
    typer.Option("--range", help="UTC days FIRST...LAST (inclusive), e.g. 2026-11-01...2026-11-03; default: all staged"),
]


def usage_errors(build: Callable[..., Built], *args, **kwargs) -> Built:
    """`build(*args, **kwargs)`, a bad or missing setting reported as a usage error (exit status 2)
    naming its variable."""
    from migration_pipeline.settings import SettingsError

    try:
        return build(*args, **kwargs)
    except SettingsError as exc:
        raise typer.BadParameter(str(exc)) from None


def cli_settings(ctx: typer.Context) -> MigrationSettings:
    """The settings from the environment, with the pair chosen by the top-level `--pair`."""
    from migration_pipeline.settings import load_settings

    return usage_errors(load_settings, **({"pair": ctx.obj} if ctx.obj else {}))


def _database(settings: MigrationSettings, staging_url: str | None) -> StagingDatabase:
    from migration_pipeline.lib.staging.db import StagingDatabase
    from migration_pipeline.pairs.gladly_to_unthread.pair import NAME

    db = StagingDatabase(staging_url or settings.staging_database_url, NAME, sqlite_synchronous=settings.sqlite_synchronous)
    db.create_schema()
    return db


def _window(db: StagingDatabase, value: str | None) -> tuple[str, str]:
    """[lo, hi) as staging text: the given inclusive day range, or every staged day."""
    from migration_pipeline.lib.staging.db import utc_text
    from migration_pipeline.lib.staging.sample import staged_span

    if value:
        first, sep, last = value.partition("...")
        try:
            start = datetime.fromisoformat(first).replace(tzinfo=UTC)
            end = datetime.fromisoformat(last if sep else first).replace(tzinfo=UTC) + timedelta(days=1)
        except ValueError as exc:
            raise typer.BadParameter(f"--range wants YYYY-MM-DD...YYYY-MM-DD, got {value!r}") from exc
        return utc_text(start), utc_text(end)
    span = staged_span(db)
    if span is None:
        raise typer.BadParameter("nothing is staged yet: materialize the extract and staging assets first")
    start = datetime.fromisoformat(span[0][:10]).replace(tzinfo=UTC)
    end = datetime.fromisoformat(span[1][:10]).replace(tzinfo=UTC) + timedelta(days=1)
    return utc_text(start), utc_text(end)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()
    )


def preflight_cmd(
    ctx: typer.Context,
    staging_url: StagingUrl = None,
    offline: Annotated[bool, typer.Option("--offline", help="Check the configuration only; send nothing")] = False,
    reprobe: Annotated[
        bool, typer.Option("--reprobe", help="Forget what the workspace was found to support and probe it again")
    ] = False,
) -> None:
    """Blocking checks before the first write to Unthread: the API key works, the triage channel and
    placeholder user are configured, agents map to Unthread users (unmatched ones listed), what the
    workspace supports (probed once, kept in the staging database), and a reminder to pause the
    workspace's automations. Exit status 1 when a blocking check fails."""
    from migration_pipeline.resources import unthread_resource
    from migration_pipeline.vendors.unthread.preflight import run_preflight

    settings = cli_settings(ctx)
    unthread = usage_errors(unthread_resource, settings, env_vars=False)
    db = _database(settings, staging_url)
    try:
        with unthread.client() as client:
            report = run_preflight(
                None if offline else client, db, triage_channel_id=unthread.triage_channel_id,
                placeholder_user_id=unthread.placeholder_user_id, offline=offline, reprobe=reprobe,
            )
    finally:
        db.dispose()
    typer.echo(report.render())
    if not report.passed:
        raise typer.Exit(1)


def _load(
    settings: MigrationSettings, db: StagingDatabase, ticket_ids: list[str], until: datetime, *,
    run_id: str, dry_run: bool, read_users: bool, label: str,
) -> int:
    """Preflight, then load (or dry-run) the tickets with a progress bar; returns the exit status.
    The loader gets what the `unthread_loaded_records` asset gives it (load_setup.py)."""
    from contextlib import ExitStack

    from migration_pipeline.pairs.gladly_to_unthread.checks.sample import sample_readback
    from migration_pipeline.pairs.gladly_to_unthread.load_setup import gladly_fetchers, loader_settings
    from migration_pipeline.resources import gladly_resource, storage_resource, unthread_resource
    from migration_pipeline.vendors.unthread.dry_run import DryRunLoader, DryRunUnthreadClient
    from migration_pipeline.vendors.unthread.loader import UnthreadLoader
    from migration_pipeline.vendors.unthread.preflight import run_preflight

    reads_unthread = not dry_run or read_users
    unthread = usage_errors(unthread_resource, settings, env_vars=False, offline=not reads_unthread)
    gladly = None if dry_run else usage_errors(gladly_resource, settings, env_vars=False)
    storage = storage_resource(settings)
    load_settings = loader_settings(unthread, run_id)
    with ExitStack() as stack:
        client = stack.enter_context(unthread.client()) if reads_unthread else None
        report = run_preflight(
            None if dry_run else client, db, triage_channel_id=load_settings.triage_channel_id,
            placeholder_user_id=load_settings.placeholder_user_id, offline=dry_run,
        )
        typer.echo(report.render())
        if not report.passed:
            return 1
        if dry_run:
            target = DryRunUnthreadClient(storage.root / "dry-run" / run_id.replace(":", "-"), reader=client)
            stack.callback(target.close)
            loader: UnthreadLoader = DryRunLoader(db, target, load_settings)
        else:
            source = stack.enter_context(gladly.client())  # type: ignore[union-attr]
            loader = UnthreadLoader(db, client, load_settings, **gladly_fetchers(source, storage.root))  # type: ignore[arg-type]
            stack.callback(loader.close)  # stops the lease heartbeat
        with _progress() as bar:
            task = bar.add_task(label, total=len(ticket_ids))
            for ticket_id in ticket_ids:
                loader.load_ticket(ticket_id, until)
                bar.advance(task)
        c = loader.counts
        verb = "would create" if dry_run else "created"
        typer.echo(
            f"{verb} {c.customers_created} customers, {c.conversations_created} conversations, "
            f"{c.messages_created} messages, {c.statuses_patched} status updates; {c.failed} refused; "
            f"{len(c.unmatched_agents)} unmatched agents; ledger run id {run_id}"
        )
        for error in c.errors[:20]:
            typer.echo(f"  refused: {error}")
        if dry_run:
            summary = target.summary()
            typer.echo(f"dry run: payloads in {summary['out_dir']} ({summary['requests_sent']} requests sent to Unthread)")
            return 0
        readback = sample_readback(db, client, ticket_ids)  # type: ignore[arg-type]
        typer.echo(readback.summary())
        return 0 if readback.passed and not c.failed else 1


def _split(settings: MigrationSettings, db: StagingDatabase, lo: str, hi: str) -> None:
    """Cut tickets for the window exactly as the split_tickets asset does (MIGRATION_SPLIT_RULES
    or the shipped rules)."""
    from migration_pipeline.lib.split_rules import SplitRules
    from migration_pipeline.lib.staging.db import exclusive
    from migration_pipeline.lib.staging.tickets import SPLIT_LEASE, SPLIT_LEASE_TTL_SECONDS, split_window

    with exclusive(db, SPLIT_LEASE, f"cli:{uuid.uuid4().hex[:8]}:split", SPLIT_LEASE_TTL_SECONDS):
        split_window(db, lo, hi, SplitRules.load(settings.split_rules))


def _run_id(kind: str) -> str:
    return f"cli-{kind}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def sample_cmd(
    ctx: typer.Context,
    customers: Annotated[int, typer.Option("--customers", help="How many of the messiest customers", min=1)] = 10,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Write the payloads to files; send nothing")] = False,
    read_users: Annotated[
        bool, typer.Option("--read-users", help="Dry run: read Unthread's user list so agents map as in a real run")
    ] = False,
    date_range: Range = None,
    staging_url: StagingUrl = None,
) -> None:
    """Take the N messiest customers (most items, channels, merged profiles, bad emails,
    attachments) through split -> load -> readback into the Unthread workspace UNTHREAD_BASE_URL
    points at, for the mapping review. Undo with `rollback --sample --yes`."""
    from rich.console import Console
    from rich.table import Table

    from migration_pipeline.lib.staging.sample import messiest_customers, sample_run_id, tickets_of_customers

    settings = cli_settings(ctx)
    db = _database(settings, staging_url)
    try:
        lo, hi = _window(db, date_range)
        _split(settings, db, lo, hi)
        chosen = messiest_customers(db, customers)
        table = Table(title=f"the {len(chosen)} messiest customers")
        for column in ("customer", "score", "items", "channels", "merged profiles", "bad email", "with attachments"):
            table.add_column(column)
        for c in chosen:
            table.add_row(*(str(c[k]) for k in ("customer_id", "score", "items", "channels", "merged_profiles", "bad_email", "items_with_attachments")))
        Console().print(table)
        ticket_ids = tickets_of_customers(db, [c["customer_id"] for c in chosen], lo, hi)
        run_id = sample_run_id(_run_id("sample"))
        until = datetime.fromisoformat(hi.replace("Z", "+00:00"))
        code = _load(settings, db, ticket_ids, until, run_id=run_id, dry_run=dry_run, read_users=read_users,
                     label="sample tickets")
    finally:
        db.dispose()
    raise typer.Exit(code)


def dry_run_cmd(
    ctx: typer.Context,
    date_range: Range = None,
    read_users: Annotated[
        bool, typer.Option("--read-users", help="Read Unthread's user list (one read) so agents map as in a real run")
    ] = False,
    staging_url: StagingUrl = None,
) -> None:
    """Build every Unthread payload of the range exactly as a real run would and write them to
    MIGRATION_DATA_DIR/dry-run/<run id>/{customers,conversations,messages,statuses}.jsonl. Sends
    nothing, writes nothing to the ledger. Tickets must be split already (the split_tickets asset)."""
    from migration_pipeline.vendors.unthread.loader import tickets_touching

    settings = cli_settings(ctx)
    db = _database(settings, staging_url)
    try:
        lo, hi = _window(db, date_range)
        ticket_ids = tickets_touching(db, lo, hi)
        until = datetime.fromisoformat(hi.replace("Z", "+00:00"))
        code = _load(settings, db, ticket_ids, until, run_id=_run_id("dry-run"), dry_run=True, read_users=read_users,
                     label="tickets")
    finally:
        db.dispose()
    raise typer.Exit(code)


def rollback_cmd(
    ctx: typer.Context,
    run_id: Annotated[Optional[str], typer.Option("--run-id", help="Roll back what this run created (ledger run id)")] = None,
    date_range: Annotated[
        Optional[str], typer.Option("--range", help="Roll back the tickets with items on these UTC days: FIRST...LAST")
    ] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Roll back every sample run")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Delete for real; without it only the plan is printed")] = False,
    staging_url: StagingUrl = None,
) -> None:
    """Delete from Unthread what a run, a day range or the sample runs created, driven by the
    ledger: conversations with their messages, then customers nothing else uses. Ledger rows are
    marked rolled_back so a later run recreates them. Prints the plan; `--yes` executes it."""
    from migration_pipeline.resources import unthread_resource
    from migration_pipeline.vendors.unthread.rollback import execute_rollback, plan_rollback

    if sum(bool(x) for x in (run_id, date_range, sample)) != 1:
        raise typer.BadParameter("choose exactly one of --run-id, --range, --sample")
    settings = cli_settings(ctx)
    db = _database(settings, staging_url)
    try:
        window = _window(db, date_range) if date_range else None
        plan = plan_rollback(db, run_id=run_id, window=window, sample=sample)
        typer.echo(plan.render())
        if plan.empty:
            return
        if not yes:
            typer.echo("nothing deleted: re-run with --yes to delete the above")
            return
        unthread = usage_errors(unthread_resource, settings, env_vars=False)
        with unthread.client() as client, _progress() as bar:
            task = bar.add_task("rolling back", total=len(plan.conversations) + len(plan.customers))
            result = execute_rollback(
                db, client, plan, progress=lambda _key: bar.advance(task), lease_ttl_seconds=unthread.lease_ttl_seconds
            )
        typer.echo(result.render())
    finally:
        db.dispose()


def cutover_close_cmd(
    ctx: typer.Context,
    execute: Annotated[
        bool, typer.Option("--execute", help="Close for real; without it a dry run: the plan CSV only, nothing sent")
    ] = False,
    topic_id: Annotated[
        Optional[str], typer.Option("--topic-id", help="Gladly topic id added to each conversation before closing")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Close even when the customer waits for a response (Gladly's status.force)")
    ] = False,
    staging_url: StagingUrl = None,
) -> None:
    """Cutover: close in Gladly the conversations migrated to Unthread (every ticket and staged item
    loaded, per the ledger), a topic added first if given; the rest is skipped with the reason.
    Results in MIGRATION_DATA_DIR/reports/gladly-cutover-close-*.csv (conversationId,status,error).
    Without --execute nothing is sent. Exit status 1 when a conversation could not be closed."""
    from contextlib import nullcontext

    from migration_pipeline.resources import gladly_resource, storage_resource
    from migration_pipeline.vendors.gladly.cutover import run_cutover

    settings = cli_settings(ctx)
    gladly = usage_errors(gladly_resource, settings, env_vars=False) if execute else None
    reports = storage_resource(settings).root / "reports"
    db = _database(settings, staging_url)
    try:
        with gladly.client() if gladly else nullcontext() as client, _progress() as bar:
            task = bar.add_task("closing conversations", total=None)
            result = run_cutover(
                db, client, reports, dry_run=not execute, topic_id=topic_id, force=force,
                run_id=_run_id("cutover"), progress=lambda _row: bar.advance(task),
            )
    except ValueError as exc:  # an unusable topic: refused before anything was written
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    typer.echo(result.summary())
    raise typer.Exit(1 if result.counts["failed"] else 0)


def register(app: typer.Typer) -> None:
    """Add the commands to the main `migration-pipeline` app."""
    app.command("preflight")(preflight_cmd)
    app.command("sample")(sample_cmd)
    app.command("dry-run")(dry_run_cmd)
    app.command("rollback")(rollback_cmd)
    app.command("cutover-close")(cutover_close_cmd)
