"""Delta cost: one more day after 30 days of history vs after 300 (issue: run it like production).

    python bench/bench_delta.py [--histories 30,300] [--items-per-day 1000] [--engine sqlite|postgresql]

For each history length H, in its own process (partitions are read from MIGRATION_HISTORY_START
at import): generate H+1 days with the same items per day (customers scale with H), start two
Gladly emulators on the dataset, materialize the first H days of `gladly_export_jobs`, the
staging multi-asset and `split_tickets` as one single-run backfill against an unthrottled
emulator (setup, not measured, so 300 days of REST profile lookups do not take an hour), then
materialize the last day's partition of the same assets against the emulator with Gladly's real
10 requests/s limit (client paced at its default 9/s), with `dg.materialize` and the real
resources. Reports the delta's wall time and each asset's own `duration_s` metadata, and the
300/30 ratios. The Unthread load is left out: loading 300 days of history at 50 requests/s would
take hours. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _common import DEFAULT_PG, run_json, staging_database  # noqa: E402

# Timelines that start late in history end early, so customers average a bit under their target.
ITEMS_PER_CUSTOMER, YIELD = 25.0, 0.94
USER, TOKEN = "bench@example.com", "bench-token-not-secret"


def worker(history: int, items_per_day: int, workdir: Path, staging_url: str) -> dict:
    """Set up H days of history, then time one more day. Runs in a fresh process."""
    warnings.filterwarnings("ignore")
    from sim.emulators.common import RunningServer
    from sim.emulators.gladly import create_app
    from sim.synth.dataset import DatasetLayout, read_json
    from sim.synth.generator import generate

    days = history + 1
    end = date.today()
    dataset = workdir / "dataset"
    customers = max(1, round(items_per_day * days / (ITEMS_PER_CUSTOMER * YIELD)))
    started = time.perf_counter()
    layout = DatasetLayout(dataset)
    manifest = read_json(layout.manifest) if layout.manifest.exists() else None
    if not manifest or (manifest["params"]["end"], manifest["params"]["customers"]) != (end.isoformat(), customers):
        shutil.rmtree(dataset, ignore_errors=True)  # not the same dataset: make it (same seed, same bytes)
        manifest = generate(dataset, customers=customers, days=days, seed=5, end=end)
    generated_s = time.perf_counter() - started
    shutil.rmtree(workdir / "pipeline", ignore_errors=True)  # every measured run starts with no history
    first_day = end - timedelta(days=days)
    delta_day = (end - timedelta(days=1)).isoformat()
    as_of = read_json(DatasetLayout(dataset).manifest)["params"]["asOf"]
    now = datetime.fromisoformat(as_of).astimezone(UTC)
    os.environ.update({
        "MIGRATION_HISTORY_START": first_day.isoformat(),
        "MIGRATION_DATA_DIR": str(workdir / "pipeline"),
        "MIGRATION_STAGING_URL": staging_url,
    })
    import dagster as dg

    from migration_pipeline.pairs.gladly_to_unthread.assets.export_jobs import gladly_export_jobs
    from migration_pipeline.pairs.gladly_to_unthread.assets.staged_records import staged_gladly_records
    from migration_pipeline.pairs.gladly_to_unthread.assets.tickets import split_tickets
    from migration_pipeline.pairs.gladly_to_unthread.pair import key
    from migration_pipeline.resources import MigrationStorage
    from migration_pipeline.vendors.gladly.resources import GladlyResource
    from migration_pipeline.lib.staging.db import StagingDatabase, conversation_items, tickets
    from migration_pipeline.lib.staging.resources import StagingResource
    from migration_pipeline.pairs.gladly_to_unthread.pair import NAME

    assets = [gladly_export_jobs, staged_gladly_records, split_tickets]
    fast = create_app(dataset, api_user=USER, api_token=TOKEN, now=now, rate_limit_per_second=100_000)
    real = create_app(dataset, api_user=USER, api_token=TOKEN, now=now)  # Gladly's 10/s
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with RunningServer(fast) as fast_server, RunningServer(real) as real_server:
        def resources(url: str, rps: float | None) -> dict:
            pacing = {"requests_per_second": rps} if rps else {}  # None: the resource's default
            gladly = GladlyResource(base_url=url, api_user=USER, api_token=TOKEN, **pacing)
            return {
                "gladly": gladly,
                "storage": MigrationStorage(data_dir=os.environ["MIGRATION_DATA_DIR"]),
                "staging": StagingResource(url=staging_url),
            }

        last_history_day = (end - timedelta(days=2)).isoformat()
        started = time.perf_counter()
        setup = dg.materialize(
            assets, resources=resources(fast_server.url, 5000), run_config=quiet, raise_on_error=False,
            tags={"dagster/asset_partition_range_start": first_day.isoformat(),
                  "dagster/asset_partition_range_end": last_history_day},
        )
        setup_s = time.perf_counter() - started
        if not setup.success:
            raise SystemExit("history setup run failed")
        db = StagingDatabase(staging_url, NAME)  # the pair's namespace, where its assets staged
        history_items, history_tickets = db.count(conversation_items), db.count(tickets)

        started, cpu_started = time.perf_counter(), time.process_time()
        delta = dg.materialize(
            assets, resources=resources(real_server.url, None), run_config=quiet, partition_key=delta_day,
            raise_on_error=False,
        )
        delta_s, delta_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if not delta.success:
            raise SystemExit("delta run failed")
        delta_items = db.count(conversation_items) - history_items
        db.dispose()
    per_asset = {}
    for event in delta.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        meta = {k: v.value for k, v in mat.metadata.items()}
        per_asset[mat.asset_key] = meta
    staged = per_asset[key("staged_conversation_items")]
    return {
        "history_days": history, "customers": customers, "generated_items": manifest["counts"]["items"],
        "generate_s": round(generated_s, 1), "history_setup_s": round(setup_s, 1),
        "history_items_staged": history_items, "history_tickets": history_tickets,
        "delta_day": delta_day, "delta_items": delta_items, "delta_wall_s": round(delta_s, 2),
        "delta_cpu_s": round(delta_cpu, 2),
        "export_jobs_s": per_asset[key("gladly_export_jobs")].get("duration_s"),
        "staging_s": staged.get("duration_s"), "rest_lookups": per_asset[key("staged_customers")].get("rest_lookups"),
        "split_s": per_asset[key("split_tickets")].get("duration_s"),
        "split_items": per_asset[key("split_tickets")].get("items_assigned"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--histories", default="30,300")
    ap.add_argument("--items-per-day", type=int, default=1000)
    ap.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--staging-url", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.items_per_day, args.workdir, args.staging_url)))
        return 0

    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-delta-"))
    runs = []
    for history in (int(h) for h in args.histories.split(",")):
        workdir = root / f"h{history}"
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"  {history} days of history ({args.items_per_day}/day), staging on {args.engine} ...", flush=True)
        with staging_database(args.engine, workdir / "staging.db", args.pg_url) as url:
            run = run_json([sys.executable, __file__, "--worker", str(history), "--items-per-day",
                            str(args.items_per_day), "--workdir", str(workdir), "--staging-url", url])
        if run is None:
            print(f"  {history} days: FAILED", flush=True)
            return 1
        runs.append(run)
        print(f"  {history} days: setup {run['history_items_staged']:,} items / {run['history_tickets']:,} tickets in "
              f"{run['history_setup_s']} s; delta {run['delta_day']}: {run['delta_items']} items in {run['delta_wall_s']} s "
              f"({run['delta_cpu_s']} CPU s) "
              f"(export jobs {run['export_jobs_s']} s, staging {run['staging_s']} s with {run['rest_lookups']} REST "
              f"lookups, split {run['split_s']} s)", flush=True)

    summary: dict = {"engine": args.engine, "items_per_day": args.items_per_day, "runs": runs}
    if len(runs) >= 2:
        short, long_ = runs[0], runs[-1]
        # The generator's days are not equally busy, so the per-item ratios compare like with like.
        items = max(long_["delta_items"], 1) / max(short["delta_items"], 1)
        for key in ("delta_wall_s", "delta_cpu_s", "export_jobs_s", "staging_s", "split_s"):
            if short.get(key) and long_.get(key) is not None:
                summary[f"ratio_{key}"] = round(long_[key] / short[key], 2)
                summary[f"ratio_per_item_{key}"] = round(long_[key] / short[key] / items, 2)
        print(f"delta cost {long_['history_days']} vs {short['history_days']} days of history "
              f"({long_['delta_items']} vs {short['delta_items']} items that day): "
              f"x{summary.get('ratio_delta_wall_s')} wall, x{summary.get('ratio_delta_cpu_s')} CPU "
              f"(per item x{summary.get('ratio_per_item_delta_wall_s')} wall, "
              f"x{summary.get('ratio_per_item_delta_cpu_s')} CPU); staging x{summary.get('ratio_staging_s')}, "
              f"split x{summary.get('ratio_split_s')}, export jobs x{summary.get('ratio_export_jobs_s')}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
