"""`make demo`: the whole pipeline on the embedded default, against both emulators, in one process.

1. generate a messy Gladly dataset whose history ends today (so its export jobs are visible);
2. start the Gladly and Unthread emulators on free loopback ports, with fresh random secrets;
3. materialize the asset graph over the dataset's whole partition range (one single-run backfill);
4. prove the result against the generator's ground truth and print a summary.
Exits non-zero when any check fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sim.emulators.common import RunningServer
from sim.synth.dataset import DatasetLayout, read_json

console = Console()


@contextmanager
def rehearsal_environment(
    workdir: Path, *, customers: int, days: int, seed: int, fresh: bool = True
) -> Iterator[tuple[dict[str, str], DatasetLayout]]:
    """Generate (or reuse) a dataset, start both emulators, and yield the pipeline's environment.

    The environment holds fresh random secrets; nothing here prints them.
    """
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    dataset_dir, data_dir = workdir / "dataset", workdir / "pipeline"
    layout = DatasetLayout(dataset_dir)
    if not layout.manifest.exists():
        end = datetime.now(UTC).date()
        with console.status(f"generating {customers} customers x {days} days of messy Gladly history"):
            from sim.synth.generator import generate

            generate(dataset_dir, customers=customers, days=days, seed=seed, end=end)
    manifest = read_json(layout.manifest)
    counts = manifest["counts"]
    console.print(
        f"[bold]dataset[/] {dataset_dir}: {counts['customers']} customers, {counts['items']} items, "
        f"{len(manifest['jobs'])} export jobs"
    )
    accepted = accept_planted_mess(dataset_dir, data_dir)
    console.print(f"[bold]accepted losses[/] the {accepted} malformed lines the generator planted (a reviewer's sign-off)")
    end = datetime.fromisoformat(manifest["params"]["end"]).date()
    start = end - timedelta(days=int(manifest["params"]["days"]))
    creds = {
        "GLADLY_API_USER": "migration.bot@example.com",
        "GLADLY_API_TOKEN": secrets.token_urlsafe(24),
        "UNTHREAD_API_KEY": secrets.token_urlsafe(24),
    }
    as_of = datetime.fromisoformat(manifest["params"]["asOf"])
    gladly_app, unthread_app = _emulator_apps(dataset_dir, workdir, creds, as_of)
    with RunningServer(gladly_app) as gladly, RunningServer(unthread_app) as unthread:
        console.print(f"[bold]emulators[/] gladly {gladly.url}  unthread {unthread.url}/api")
        yield (
            creds
            | {
                "GLADLY_BASE_URL": gladly.url,
                "UNTHREAD_BASE_URL": f"{unthread.url}/api",
                "MIGRATION_DATA_DIR": str(data_dir),
                "MIGRATION_HISTORY_START": start.isoformat(),
                "MIGRATION_HISTORY_END": end.isoformat(),
                "UNTHREAD_TRIAGE_CHANNEL_ID": read_json(layout.unthread_workspace)["triageChannels"][0]["id"],
                # the Unthread emulator answers 429 above 50 requests/s; pace just under it
                "UNTHREAD_REQUESTS_PER_SECOND": os.environ.get("UNTHREAD_REQUESTS_PER_SECOND", "45"),
            },
            layout,
        )


def accept_planted_mess(dataset_dir: Path, data_dir: Path) -> int:
    """The rehearsal's reviewer: the generator's manifest names every malformed line it planted
    in the export, and exactly those are written to the accepted-losses file. The reconciliation
    then passes only if nothing else is missing (in a real migration a person writes the file
    after reading the report's list of losses)."""
    from migration_pipeline.pairs.gladly_to_unthread.checks.reconciliation import ACCEPTED_LOSSES_FILE, line_key, write_accepted_losses

    planted = read_json(DatasetLayout(dataset_dir).manifest)["mess"]["malformed_lines"]["where"]
    accepted = {line_key(m["job"], m["file"], m["line"]): f"planted by the generator: {m['reason']}" for m in planted}
    write_accepted_losses(data_dir / ACCEPTED_LOSSES_FILE, accepted,
                          header="Written by the rehearsal from the dataset manifest's malformed_lines.")
    return len(accepted)


def run_demo(*, workdir: Path | None, customers: int, days: int, seed: int) -> int:
    workdir = (workdir or Path("data") / "demo").resolve()
    with rehearsal_environment(workdir, customers=customers, days=days, seed=seed) as (env, layout):
        os.environ.update(env)
        first = env["MIGRATION_HISTORY_START"]
        last = (datetime.fromisoformat(env["MIGRATION_HISTORY_END"]) - timedelta(days=1)).date().isoformat()
        with console.status(f"materializing every asset for {first}...{last}"):
            result = _materialize_range(first, last)
    return _report(layout, Path(env["MIGRATION_DATA_DIR"]), result)


def run_ui(*, workdir: Path | None, customers: int, days: int, seed: int) -> int:
    """The same rehearsal in the Dagster UI: emulators in this process, `dg dev` beside it."""
    workdir = (workdir or Path("data") / "ui").resolve()
    with rehearsal_environment(workdir, customers=customers, days=days, seed=seed, fresh=False) as (env, _):
        home = workdir / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(_instance_yaml(), home / "dagster.yaml")
        console.print(
            f"partitions {env['MIGRATION_HISTORY_START']} .. {env['MIGRATION_HISTORY_END']} (exclusive); "
            "open the printed URL, select the assets and launch a backfill. Ctrl-C stops everything."
        )
        command = [str(Path(sys.executable).with_name("dg")), "dev", "-m", "migration_pipeline.definitions"]
        try:
            return subprocess.call(command, env=os.environ | env | {"DAGSTER_HOME": str(home)})
        except KeyboardInterrupt:
            return 0


def _instance_yaml() -> Path:
    """The project's dagster.yaml (pools, retry logs): the working directory's, else the checkout's."""
    for candidate in (Path.cwd() / "dagster.yaml", Path(__file__).resolve().parent.parent / "dagster.yaml"):
        if candidate.is_file():
            return candidate
    raise SystemExit("dagster.yaml not found: run `migration-pipeline ui` from the project folder (it holds the instance settings)")


def _emulator_apps(dataset_dir: Path, workdir: Path, creds: dict[str, str], as_of: datetime):
    from sim.emulators import gladly, unthread

    # The Gladly clock is pinned to the dataset's "now" (its last daily job has landed), so the
    # rehearsal behaves the same whatever the wall-clock hour.
    gladly_app = gladly.create_app(
        dataset_dir, api_user=creds["GLADLY_API_USER"], api_token=creds["GLADLY_API_TOKEN"], now=as_of
    )
    workspace = read_json(DatasetLayout(dataset_dir).unthread_workspace)
    unthread_app = unthread.create_app(
        api_key=creds["UNTHREAD_API_KEY"], state_path=workdir / "unthread-state.sqlite", workspace=workspace
    )
    return gladly_app, unthread_app


def _materialize_range(first: str, last: str):
    # Imported only now: partitions are read from MIGRATION_HISTORY_START at import time.
    import dagster as dg

    from migration_pipeline.definitions import defs
    from migration_pipeline.pairs.gladly_to_unthread.definitions import SPEC

    return dg.materialize(
        [*SPEC.external, *SPEC.stages, *SPEC.checks],  # the checks along the pipeline too, as the job runs them
        resources=defs.resources,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=False,
    )


def _report(layout: DatasetLayout, data_dir: Path, result) -> int:
    """Print what every stage did and the reconciliation; non-zero if anything failed."""
    import dagster as dg

    from migration_pipeline.pairs.gladly_to_unthread.pair import NAME

    def shown(key: dg.AssetKey) -> str:  # the pair's keys are `gladly_to_unthread/<asset>`: its table shows <asset>
        return key.to_user_string().removeprefix(f"{NAME}/")

    manifest = read_json(layout.manifest)
    table = Table(title="stages (one single-run backfill over the whole range)")
    for column in ("asset", "figures"):
        table.add_column(column)
    seen = set()
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        name = shown(mat.asset_key)
        if name in seen:  # a range run records one materialization per day; range_* holds the whole range
            continue
        seen.add(name)
        numbers = {k: v.value for k, v in mat.metadata.items() if isinstance(v.value, (int, float)) and k != "duration_s"}
        # a day's own figure has a range_ twin: show the range's under the plain name
        figures = {k: numbers.get(f"range_{k}", v) for k, v in numbers.items() if not k.startswith("range_")}
        table.add_row(name, ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))
    console.print(table)

    reports = sorted((data_dir / "reports").glob("reconciliation-*.md"))
    if reports:
        console.print(reports[-1].read_text(encoding="utf-8").split("\n| day")[0].strip())
        console.print(f"full report: {reports[-1]}")
    evaluations = result.get_asset_check_evaluations()
    # a failed WARN check is a workspace limit or a reminder (freshness), shown but not a failure
    checks = {
        f"{shown(c.asset_key)}:{c.check_name}": c.passed or c.severity == dg.AssetCheckSeverity.WARN
        for c in evaluations
    }
    for c in sorted(evaluations, key=lambda c: (shown(c.asset_key), c.check_name)):
        verdict = "[green]passed[/]" if c.passed else "[yellow]warning[/]" if c.severity == dg.AssetCheckSeverity.WARN else "[red]FAILED[/]"
        console.print(f"check {shown(c.asset_key)}:{c.check_name}: {verdict}")
    console.print(
        f"ground truth: {manifest['counts']['items']} items generated; "
        f"{len(manifest['mess']['malformed_lines']['where'])} malformed lines planted"
    )
    if not result.success or not checks or not all(checks.values()):
        console.print("[red]demo failed[/]")
        return 1
    planted = len(manifest["mess"]["malformed_lines"]["where"])
    console.print(
        "[green]demo passed[/]: every item in Gladly's exports is in Unthread exactly once, in order, except the "
        f"{planted} malformed lines the generator planted (each named in the report and accepted in accepted_losses.yaml)"
    )
    return 0
