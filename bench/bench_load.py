"""Load efficiency against the Unthread emulator at a fixed limit (issue: loads that never duplicate).

Generates a dataset, runs the whole graph in one process against both emulators (Unthread
limited to --limit requests/s, the client paced at the same figure) and reads the Unthread
emulator's request log:
- achieved requests/s during the load (first to last write) divided by the limit;
- 429s per 1,000 requests;
- requests per loaded message, against the floor of one per message plus one conversation
  create and one status patch per ticket (customers and the user list on top).
Prints a one-line JSON summary. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx

WRITE = re.compile(r"^/api/(customers|conversations|conversations/[^/]+/messages)$")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from migration_pipeline.demo import _materialize_range, rehearsal_environment

    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    with rehearsal_environment(workdir, customers=args.customers, days=args.days, seed=3) as (env, _):
        env["UNTHREAD_REQUESTS_PER_SECOND"] = str(args.limit)
        os.environ.update(env)
        first = env["MIGRATION_HISTORY_START"]
        last = time.strftime("%Y-%m-%d", time.gmtime(time.mktime(time.strptime(env["MIGRATION_HISTORY_END"], "%Y-%m-%d")) - 86400))
        started = time.monotonic()
        result = _materialize_range(first, last)
        wall = time.monotonic() - started
        log = httpx.get(env["UNTHREAD_BASE_URL"].removesuffix("/api") + "/_emulator/requests").json()
    if not result.success:
        print("run failed", file=sys.stderr)
        return 1
    loaded = {
        m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()}
        for m in (e.event_specific_data.materialization for e in result.get_asset_materialization_events())
    }["unthread_loaded_records"]
    writes = [r for r in log if r["method"] in ("POST", "PATCH") and (WRITE.match(r["path"]) or r["method"] == "PATCH")]
    t0, t1 = min(r["t"] for r in writes), max(r["t"] for r in writes)
    during = [r for r in log if t0 <= r["t"] <= t1]
    achieved = len(during) / max(t1 - t0, 1e-9)
    throttled = sum(1 for r in log if r["status"] == 429)
    messages, tickets = loaded["messages_created"], loaded["tickets"]
    load_requests = len(during)
    summary = {
        "limit_rps": args.limit,
        "achieved_rps": round(achieved, 2),
        "efficiency": round(achieved / args.limit, 3),
        "throttled_per_1000": round(1000 * throttled / max(len(log), 1), 2),
        "messages": messages,
        "tickets": tickets,
        "customers_created": loaded["customers_created"],
        "load_requests": load_requests,
        "requests_per_message": round(load_requests / max(messages, 1), 3),
        "floor_requests_per_message": round((messages + 2 * tickets + loaded["customers_created"]) / max(messages, 1), 3),
        "run_wall_s": round(wall, 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
