"""`migration-pipeline demo --pair zendesk_to_gladly`: Zendesk -> Gladly rehearsed end to end.

1. generate a messy Zendesk dataset whose export was taken yesterday, and an empty Gladly org;
2. start the Zendesk and Gladly emulators on free loopback ports, with fresh random secrets;
3. drop the full export in the landing folder and materialize the pair over its whole range (one
   single-run backfill): archive, staging, preflight, profiles, import files, reconciliation;
4. move Zendesk's clock past the delta and materialize the day after the export (the incremental
   export): its import files hold only what is new;
5. print what every stage did, the checks and the import folders. Exits non-zero when any check fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from rich.table import Table

from sim.emulators.common import RunningServer
from sim.synth.dataset import read_json
from sim.synth.zendesk_dataset import EXPORT_TYPES, ZendeskLayout

PAIR = "zendesk_to_gladly"


@contextmanager
def zendesk_rehearsal(workdir: Path, *, customers: int, days: int, seed: int, console) -> Iterator[tuple[dict[str, str], ZendeskLayout, RunningServer]]:
    """Datasets, both emulators and the pipeline's environment (the export already in the landing
    folder). Nothing here prints a secret."""
    if workdir.exists():
        shutil.rmtree(workdir)
    zendesk_dir, gladly_dir, data_dir = workdir / "zendesk-dataset", workdir / "gladly-org", workdir / "pipeline"
    end = datetime.now(UTC).date() - timedelta(days=1)  # the export was taken early on `end`, the delta happened that day
    with console.status(f"generating {customers} Zendesk end users x {days} days"):
        from sim.synth.generator import generate as generate_gladly
        from sim.synth.zendesk import generate

        manifest = generate(zendesk_dir, customers=customers, days=days, seed=seed, end=end, export_comments="embedded")
        generate_gladly(gladly_dir, customers=0, days=1, seed=seed, end=end)  # the target org: agents, topics, no customers
    layout = ZendeskLayout(zendesk_dir)
    landing = data_dir / "landing" / "zendesk"
    landing.mkdir(parents=True)
    for kind in EXPORT_TYPES:
        shutil.copy(layout.plain_export("embedded", kind), landing)
    accept_planted_lines(manifest, landing, data_dir)
    counts = manifest["counts"]
    console.print(f"[bold]dataset[/] {zendesk_dir}: {counts['endUsers']} end users, {counts['tickets']} tickets, "
                  f"{counts['comments']} comments; the export is in {landing}")
    creds = {"ZENDESK_EMAIL": "migration.bot@example.com", "ZENDESK_API_TOKEN": secrets.token_urlsafe(24),
             "GLADLY_API_USER": "migration.bot@example.com", "GLADLY_API_TOKEN": secrets.token_urlsafe(24)}
    from sim.emulators import gladly, zendesk

    zendesk_app = zendesk.create_app(zendesk_dir, email=creds["ZENDESK_EMAIL"], api_token=creds["ZENDESK_API_TOKEN"])
    gladly_app = gladly.create_app(gladly_dir, api_user=creds["GLADLY_API_USER"], api_token=creds["GLADLY_API_TOKEN"])
    start = datetime.fromisoformat(manifest["params"]["startAt"].replace("Z", "+00:00")).date()
    with RunningServer(zendesk_app) as zd, RunningServer(gladly_app) as gd:
        console.print(f"[bold]emulators[/] zendesk {zd.url}  gladly {gd.url}")
        yield creds | {
            "MIGRATION_PAIR": PAIR,
            "ZENDESK_BASE_URL": zd.url,
            "ZENDESK_REQUESTS_PER_MINUTE": "600",
            "GLADLY_BASE_URL": gd.url,
            "MIGRATION_DATA_DIR": str(data_dir),
            "MIGRATION_HISTORY_START": start.isoformat(),
            "MIGRATION_HISTORY_END": end.isoformat(),
        }, layout, zd


def accept_planted_lines(manifest: dict, landing: Path, data_dir: Path) -> Path:
    """Play the reviewer: accept, in MIGRATION_DATA_DIR/accepted_losses.yaml, exactly the export
    lines the generator planted malformed (named by the delivery the landing drop is archived as),
    so the quarantine check passes on them and stops on any other loss."""
    from migration_pipeline.lib.reconcile.accepted_losses import ACCEPTED_LOSSES_FILE, line_key, write_accepted_losses
    from migration_pipeline.vendors.zendesk.archive import export_delivery_id, file_facts

    delivery = export_delivery_id({p.name: file_facts(p) for p in sorted(landing.iterdir()) if p.is_file()})
    planted = manifest["mess"]["malformed_lines"]["where"]
    accepted = {line_key(delivery, m["file"], m["line"]): f"planted by the generator: {m['reason']}" for m in planted}
    return write_accepted_losses(data_dir / ACCEPTED_LOSSES_FILE, accepted,
                                 header="The demo's review: the lines the generator planted malformed, and only those.")


def materialize(first: str, last: str, resources: dict | None = None, run_config: dict | None = None):
    """The pair's stages and checks over [first, last] as one single-run backfill (resources: the
    code location's, from the environment, unless given)."""
    import dagster as dg

    from migration_pipeline.pairs.zendesk_to_gladly.definitions import SPEC

    if resources is None:
        from migration_pipeline.definitions import defs

        resources = defs.resources
    return dg.materialize(
        [*SPEC.external, *SPEC.stages, *SPEC.checks],
        resources=resources,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}, **(run_config or {})},
        raise_on_error=False,
    )


def run_zendesk_demo(*, workdir: Path | None, customers: int, days: int, seed: int, console) -> int:
    workdir = (workdir or Path("data") / "demo-zendesk").resolve()
    with zendesk_rehearsal(workdir, customers=customers, days=days, seed=seed, console=console) as (env, layout, zd):
        os.environ.update(env)
        first = env["MIGRATION_HISTORY_START"]
        last_full = (datetime.fromisoformat(env["MIGRATION_HISTORY_END"]) - timedelta(days=1)).date().isoformat()
        with console.status(f"materializing {PAIR} for {first}...{last_full} (the full export)"):
            full = materialize(first, last_full)
        delta_at = datetime.fromisoformat(read_json(layout.account)["deltaAt"].replace("Z", "+00:00"))
        httpx.put(f"{zd.url}/_emulator/clock", json={"now": (delta_at + timedelta(hours=1)).isoformat()}).raise_for_status()
        delta_day = env["MIGRATION_HISTORY_END"]
        with console.status(f"materializing {PAIR} for {delta_day} (the incremental export after it)"):
            delta = materialize(delta_day, delta_day)
    return report(layout, Path(env["MIGRATION_DATA_DIR"]), [("full export", full), ("delta", delta)], console)


def report(layout: ZendeskLayout, data_dir: Path, runs, console) -> int:
    import dagster as dg

    ok = True
    for label, result in runs:
        table = Table(title=f"{PAIR}: {label}")
        table.add_column("asset")
        table.add_column("figures")
        seen = set()
        for event in result.get_asset_materialization_events():
            mat = event.event_specific_data.materialization
            name = mat.asset_key.to_user_string()
            if name in seen:
                continue
            seen.add(name)
            numbers = {k: v.value for k, v in mat.metadata.items() if isinstance(v.value, int | float) and k != "duration_s"}
            figures = {k: numbers.get(f"range_{k}", v) for k, v in numbers.items() if not k.startswith("range_")}
            table.add_row(name.removeprefix(f"{PAIR}/"), ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))
        console.print(table)
        for c in sorted(result.get_asset_check_evaluations(), key=lambda c: c.check_name):
            passed = c.passed or c.severity == dg.AssetCheckSeverity.WARN
            ok &= passed
            console.print(f"check {c.check_name}: " + ("[green]passed[/]" if c.passed else "[yellow]warning[/]" if passed else "[red]FAILED[/]"))
        ok &= result.success and bool(result.get_asset_check_evaluations())
    for folder in sorted((data_dir / "import" / "gladly").glob("*")):
        manifest = read_json(folder / "manifest.json") if (folder / "manifest.json").exists() else {}
        console.print(f"import files {folder}: {manifest.get('rows_written', manifest.get('rows', {}))}")
    reports = sorted((data_dir / "reports" / PAIR).glob("*.html"))
    if reports:
        console.print(f"reconciliation reports: {', '.join(str(r) for r in reports)}")
    counts = read_json(layout.manifest)["counts"]
    console.print(f"ground truth: {counts['comments']} comments in the export, {counts['deltaNewComments']} more in the delta, "
                  f"{counts['endUsers']} end users")
    console.print("[green]demo passed[/]: every Zendesk comment is in exactly one Gladly import row or one reject or skip with "
                  "its reason, and every customer with a valid email has exactly one Gladly profile" if ok else "[red]demo failed[/]")
    return 0 if ok else 1
