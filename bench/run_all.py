"""Run every benchmark in bench/ (`make bench`) and collect their one-line JSON summaries.

    python bench/run_all.py [--items 1000000] [--only staging,delta]

`--items` sizes the data benchmarks (default 1,000,000, the issue's figure; `--items 100000`
for a quick run): generation, staging (ours vs dlt, reusing the generated dataset) and the delta
benchmark (items per day = items / 1000, so its 300-day history holds 30% of `--items`). The
end-to-end load benchmark (bench_load) keeps its own size: it is bound by Unthread's rate limit.
Scratch data goes to a temporary folder removed afterwards.

Benchmarks measure; they never assert wall-clock limits. Figures go to bench/results/ and into
the notes of the issue that asked for them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run order (the staging benchmark reuses the generator benchmark's dataset) and each one's
# arguments for a given size and scratch folder; a bench_*.py not listed runs without arguments.
ORDER = ("bench_generate", "bench_staging", "bench_delta", "bench_load", "bench_split", "bench_import_files",
         "bench_gladly_profiles", "bench_zendesk_import")


def bench_args(name: str, items: int, scratch: Path) -> list[str]:
    dataset = scratch / "dataset"
    if name == "bench_generate":
        return ["--items", str(items), "--out", str(dataset)]
    if name == "bench_staging":
        reuse = ["--dataset", str(dataset)] if (dataset / "manifest.json").exists() else ["--items", str(items)]
        return [*reuse, "--workdir", str(scratch / "staging")]
    if name == "bench_split":
        reuse = ["--dataset", str(dataset)] if (dataset / "manifest.json").exists() else []
        return ["--items", str(items), *reuse, "--work", str(scratch / "split")]
    if name == "bench_delta":
        return ["--items-per-day", str(max(50, items // 1000)), "--workdir", str(scratch / "delta")]
    if name == "bench_import_files":
        return ["--rows", str(items), "--work", str(scratch / "import_files")]
    if name == "bench_zendesk_import":
        return ["--comments", str(items), "--work", str(scratch / "zendesk_import")]
    return []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--only", help="comma-separated names without the bench_ prefix, e.g. staging,delta")
    args = ap.parse_args(argv)
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    found = {p.stem: p for p in HERE.glob("bench_*.py")}
    names = [n for n in ORDER if n in found] + sorted(set(found) - set(ORDER))
    if args.only:
        wanted = {f"bench_{n.strip().removeprefix('bench_')}" for n in args.only.split(",")}
        names = [n for n in names if n in wanted]
    summaries = []
    failed = 0
    scratch = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        for name in names:
            command = [sys.executable, str(found[name]), *bench_args(name, args.items, scratch)]
            print(f"== {name} {' '.join(command[2:])}", flush=True)
            proc = subprocess.run(command, capture_output=True, text=True)
            sys.stdout.write(proc.stdout)
            if proc.returncode != 0:
                failed += 1
                sys.stderr.write(proc.stderr[-4000:])
                continue
            last = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if last:
                summaries.append({"bench": name, **json.loads(last[-1])})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    out = results_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(summaries, indent=1))
    print(f"results: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
