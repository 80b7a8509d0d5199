"""Run every benchmark in bench/ (`make bench`) and collect their one-line JSON summaries.

Benchmarks measure; they never assert wall-clock limits. Figures go to bench/results/ and into
the notes of the issue that asked for them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    summaries = []
    failed = 0
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            failed += 1
            sys.stderr.write(proc.stderr)
            continue
        last = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if last:
            summaries.append({"bench": script.stem, **json.loads(last[-1])})
    out = results_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(summaries, indent=1))
    print(f"results: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
