"""Staging throughput and peak memory, ours against dlt, on SQLite and PostgreSQL (issue: run it like production).

    python bench/bench_staging.py --items 1000000 [--dataset DIR] [--engines sqlite,postgresql]

Generates a dataset of about `--items` conversation items (or reuses `--dataset`), then stages
every COMPLETED export job's four JSONL files four times, each in its own subprocess so peak RSS
is per loader:
- ours: `stage_job_file` (parse to canonical rows, quarantine, upsert by source id; COPY into a
  temp table + INSERT ... ON CONFLICT on PostgreSQL, executemany on SQLite), as the staging asset
  runs it for a single-run backfill over the whole range;
- dlt: a resource per file name reading the same lines (malformed lines and records without an
  id skipped, as ours quarantines them), `write_disposition="merge"` with `primary_key="id"`
  (strategy `delete-insert`, dlt's default and the one that dedupes a load by key as ours does;
  SQLite through dlt's sqlalchemy destination), `max_table_nesting=0` so nested objects land as
  JSON columns like our `payload` instead of child tables.
PostgreSQL runs get a fresh database each, created and dropped here. Prints items/s, peak RSS
and ours/dlt ratios, and a one-line JSON summary. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _common import DEFAULT_PG, PgBackendCpu, run_json, staging_database  # noqa: E402

ENTITY_FILES = ("agents.jsonl", "conversation_items.jsonl", "customers.jsonl", "topics.jsonl")


def completed_jobs(dataset: Path) -> list[dict]:
    """The dataset's COMPLETED export jobs, oldest update first (the order the archive stages them)."""
    jobs = []
    for job_json in (dataset / "gladly" / "jobs").glob("*/job.json"):
        job = json.loads(job_json.read_text(encoding="utf-8"))
        if job["status"] == "COMPLETED":
            jobs.append(job | {"directory": str(job_json.parent)})
    return sorted(jobs, key=lambda j: (j["updatedAt"], j["id"]))


def peak_rss_mb() -> float:
    """This process's peak RSS, or a child's if one grew larger (dlt may fork normalizers)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


# -- workers (one loader, one engine, one process) ---------------------------------------------
def run_ours(dataset: Path, url: str) -> dict:
    from migration_pipeline.vendors.gladly.archive import ArchivedJob
    from migration_pipeline.vendors.gladly.staging import StageCounts, stage_job_file
    from migration_pipeline.lib.staging.db import StagingDatabase

    jobs = completed_jobs(dataset)
    archived = [
        ArchivedJob(j["id"], _ts(j["parameters"]["startAt"]), _ts(j["parameters"]["endAt"]), _ts(j["updatedAt"]),
                    "api", Path(j["directory"]), {name: {} for name in j["files"]})
        for j in jobs
    ]
    window = (min(j.start_at for j in archived), max(j.end_at for j in archived))  # a whole-range backfill
    db = StagingDatabase(url)
    db.create_schema()
    totals = {name: StageCounts() for name in ENTITY_FILES}
    started = time.perf_counter()
    for job in archived:
        for name in sorted(job.files):
            if name in totals:
                totals[name].add(stage_job_file(db, job, name, window))
    wall = time.perf_counter() - started
    from migration_pipeline.lib.staging.db import conversation_items

    rows = db.count(conversation_items)
    db.dispose()
    items = totals["conversation_items.jsonl"]
    return {
        "item_lines": items.lines, "lines": sum(t.lines for t in totals.values()), "item_rows": rows,
        "quarantined": sum(t.quarantined for t in totals.values()), "wall_s": round(wall, 2),
    }


def _ts(text: str):
    from migration_pipeline.vendors.gladly.parse import parse_timestamp

    return parse_timestamp(text)


def run_dlt(dataset: Path, url: str, workdir: Path) -> dict:
    import dlt

    jobs = completed_jobs(dataset)
    counts = {"item_lines": 0, "lines": 0, "skipped": 0}

    def records(name: str):
        for job in jobs:
            path = Path(job["directory"]) / name
            if not path.exists():
                continue
            with path.open("r", encoding="utf-8", errors="replace") as fh:
                for raw in fh:
                    if not raw.strip():
                        continue
                    counts["lines"] += 1
                    counts["item_lines"] += name == "conversation_items.jsonl"
                    try:
                        obj = json.loads(raw)
                    except ValueError:
                        obj = None
                    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
                        counts["skipped"] += 1
                        continue
                    yield obj

    is_pg = url.startswith("postgresql")
    if is_pg and ":" not in url.split("://", 1)[1].split("@", 1)[0]:
        # dlt insists on a password; a trust-auth server (as here) ignores whatever is sent
        url = url.replace("://", "://", 1).replace("@", ":unused@", 1)
    # delete-insert (dlt's default) dedupes the load by primary key, as ours does; dlt's `upsert`
    # refuses a key twice in one load, and every daily job repeats the agents and topics.
    strategy = "delete-insert"
    resources = [
        dlt.resource(records(name), name=name.removesuffix(".jsonl"), primary_key="id",
                     write_disposition={"disposition": "merge", "strategy": strategy}, max_table_nesting=0)
        for name in ENTITY_FILES
    ]
    destination = dlt.destinations.postgres(credentials=url) if is_pg else dlt.destinations.sqlalchemy(credentials=url)
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{uuid.uuid4().hex[:8]}", pipelines_dir=str(workdir / "dlt_pipelines"),
        destination=destination, dataset_name="gladly",
    )
    started = time.perf_counter()
    pipeline.run(resources)
    wall = time.perf_counter() - started
    with pipeline.sql_client() as client:
        rows = client.execute_sql(f"select count(*) from {client.make_qualified_table_name('conversation_items')}")[0][0]
    return {**counts, "item_rows": rows, "merge_strategy": strategy, "wall_s": round(wall, 2)}


def worker(args) -> int:
    if args.worker == "ours":
        result = run_ours(args.dataset, args.url)
    else:
        result = run_dlt(args.dataset, args.url, args.workdir)
    result["items_per_s"] = round(result["item_lines"] / result["wall_s"])
    result["peak_rss_mb"] = peak_rss_mb()
    # CPU seconds of this loader (and any process it forked): on a shared, busy machine wall time
    # depends on the neighbours, CPU time much less. The database server's own CPU is not in it.
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    result["cpu_s"] = round(sum(u.ru_utime + u.ru_stime for u in usage), 2)
    result["items_per_cpu_s"] = round(result["item_lines"] / result["cpu_s"])
    print(json.dumps(result))
    return 0


# -- driver -----------------------------------------------------------------------------------
def _warm(dataset: Path) -> None:
    """Read every export file once so no loader pays for a cold page cache the others don't."""
    for job in completed_jobs(dataset):
        for name in ENTITY_FILES:
            path = Path(job["directory"]) / name
            if path.exists():
                with path.open("rb") as fh:
                    while fh.read(1 << 20):
                        pass


def run_one(loader: str, engine: str, dataset: Path, workdir: Path, pg_url: str) -> dict:
    with staging_database(engine, workdir / f"{loader}-{uuid.uuid4().hex[:6]}.db", pg_url) as url:
        with contextlib.ExitStack() as stack:
            server = None
            if engine == "postgresql":
                server = stack.enter_context(PgBackendCpu(pg_url, url.rpartition("/")[2]))
            result = run_json([sys.executable, __file__, "--worker", loader, "--dataset", str(dataset), "--url", url,
                               "--workdir", str(workdir)])
    if result is None:
        return {"loader": loader, "engine": engine, "error": "worker failed (stderr above)"}
    if server is not None:
        # client + server CPU: the fair cost on a machine both share
        result["server_cpu_s"] = server.cpu_s
        result["items_per_cpu_s"] = round(result["item_lines"] / (result["cpu_s"] + server.cpu_s))
    return {"loader": loader, "engine": engine, **result}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--dataset", type=Path, help="reuse a generated dataset instead of generating one")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--loaders", default="ours,dlt")
    ap.add_argument("--pg-url", default=DEFAULT_PG, help="an admin URL; each run gets its own database")
    ap.add_argument("--worker", choices=("ours", "dlt"), help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-staging-"))
    workdir.mkdir(parents=True, exist_ok=True)
    dataset = args.dataset
    if dataset is None:
        from bench_generate import customers_for

        from sim.synth.generator import generate

        dataset = workdir / "dataset"
        started = time.perf_counter()
        manifest = generate(dataset, customers=customers_for(args.items, 25.0), days=30, seed=0,
                            end=__import__("datetime").date(2025, 1, 15))
        print(f"generated {manifest['counts']['items']:,} items in {time.perf_counter() - started:.0f} s", flush=True)
    _warm(dataset)

    results = []
    for engine in args.engines.split(","):
        for loader in args.loaders.split(","):
            print(f"  {loader} -> {engine} ...", flush=True)
            r = run_one(loader, engine, dataset, workdir, args.pg_url)
            results.append(r)
            if "error" in r:
                print(f"  {loader} -> {engine}: FAILED {r['error']}", flush=True)
            else:
                print(f"  {loader} -> {engine}: {r['item_lines']:,} item lines ({r['lines']:,} lines) in {r['wall_s']} s = "
                      f"{r['items_per_s']:,} items/s ({r['cpu_s']} client + {r.get('server_cpu_s', 0)} server CPU s = "
                      f"{r['items_per_cpu_s']:,} items per CPU s), "
                      f"peak RSS {r['peak_rss_mb']} MB, {r['item_rows']:,} item rows",
                      flush=True)

    summary: dict = {"dataset": str(dataset), "runs": results}
    for engine in args.engines.split(","):
        by = {r["loader"]: r for r in results if r["engine"] == engine and "error" not in r}
        if "ours" in by and "dlt" in by:
            summary[f"{engine}_speed_ours_over_dlt"] = round(by["ours"]["items_per_s"] / by["dlt"]["items_per_s"], 2)
            summary[f"{engine}_cpu_speed_ours_over_dlt"] = round(
                by["ours"]["items_per_cpu_s"] / by["dlt"]["items_per_cpu_s"], 2)
            summary[f"{engine}_rss_ours_over_dlt"] = round(by["ours"]["peak_rss_mb"] / by["dlt"]["peak_rss_mb"], 2)
            print(f"{engine}: ours/dlt speed x{summary[f'{engine}_speed_ours_over_dlt']} (wall), "
                  f"x{summary[f'{engine}_cpu_speed_ours_over_dlt']} (per CPU second, client + PostgreSQL server), "
                  f"peak RSS x{summary[f'{engine}_rss_ours_over_dlt']}")
    print(json.dumps(summary))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
