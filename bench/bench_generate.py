"""Benchmark the messy-data generator at a given size.

    python bench/bench_generate.py --items 1000000 --out /tmp/x

Picks a customer count that lands near `--items` (customers * items-per-customer, corrected for
timelines that run out of history, plus the one >1,000-item conversation), generates into
`--out` (which must not hold a dataset), and prints a one-line JSON summary: items, customers,
wall time, items/s, peak RSS (ru_maxrss), bytes on disk (apparent size and allocated blocks),
file count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.synth.generator import MEGA_MIN_ITEMS, generate  # noqa: E402

# Timelines that start late in history end early, so customers average a bit under the target.
ITEMS_PER_CUSTOMER_YIELD = 0.94


def customers_for(items: int, items_per_customer: float) -> int:
    """How many customers give about `items` items."""
    return max(1, round((items - MEGA_MIN_ITEMS) / (items_per_customer * ITEMS_PER_CUSTOMER_YIELD)))


def disk_usage(root: Path) -> tuple[int, int, int]:
    """(apparent bytes, allocated bytes, files) under root."""
    apparent = allocated = files = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            apparent += st.st_size
            allocated += st.st_blocks * 512
            files += 1
    return apparent, allocated, files


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--items-per-customer", type=float, default=25.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frequency", choices=("daily", "hourly"), default="daily")
    ap.add_argument("--end", type=date.fromisoformat, default=date(2025, 1, 15))
    args = ap.parse_args(argv)

    customers = customers_for(args.items, args.items_per_customer)
    started = time.perf_counter()
    last = [started]

    def progress(n: int) -> None:
        now = time.perf_counter()
        if now - last[0] >= 10:
            last[0] = now
            print(f"  {n:,} items, {n / (now - started):,.0f} items/s", file=sys.stderr, flush=True)

    manifest = generate(args.out, customers=customers, days=args.days, seed=args.seed, end=args.end,
                        frequency=args.frequency, items_per_customer=args.items_per_customer, progress=progress)
    wall = time.perf_counter() - started
    apparent, allocated, files = disk_usage(args.out)
    items = manifest["counts"]["items"]
    summary = {
        "items": items, "customers": customers, "days": args.days, "frequency": args.frequency,
        "jobs": len(manifest["jobs"]), "wall_s": round(wall, 2), "items_per_s": round(items / wall),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "bytes_apparent": apparent, "bytes_allocated": allocated, "files": files,
        "export_bytes": manifest["counts"]["exportBytes"],
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
