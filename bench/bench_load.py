"""End to end on the emulators at realistic limits: load efficiency (issues: loads that never
duplicate; run it like production).

Generates a dataset, starts both emulators in their own processes (`--emulators thread` runs
them inside this one, as `make demo` does) and runs the whole graph in this process against
them (Gladly at its real org-wide 10 requests/s, client paced at its default 9/s; Unthread limited to --limit
requests/s, the client paced at the same figure) and reads both emulators' request logs:
- achieved requests/s during the load (first to last write) divided by the limit;
- 429s per 1,000 requests;
- requests per loaded message, against the floor of one per message plus one conversation
  create and one status patch per ticket (customers and the user list on top);
- Gladly requests, its 429s and its request rate while the staging step called it;
- end-to-end wall time and items per second for the whole run, and each asset's duration;
- the pipeline process's CPU per API request (what one free core could sustain) and the load
  average, since on a busy shared machine the achieved rate is set by the neighbours.
Prints a one-line JSON summary. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import httpx

WRITE = re.compile(r"^/api/(customers|conversations|conversations/[^/]+/messages)$")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def emulator_processes(workdir: Path, *, customers: int, days: int, seed: int, limit: int) -> Iterator[dict[str, str]]:
    """Like `demo.rehearsal_environment`, but each emulator in its own process (`migration-pipeline
    emulator ...`), as the vendors are elsewhere in production: in-process emulators would share
    the pipeline's interpreter lock and, on a busy machine, its CPU share."""
    from sim.demo import accept_planted_mess
    from sim.synth.dataset import DatasetLayout, read_json
    from sim.synth.generator import generate

    dataset = workdir / "dataset"
    manifest = generate(dataset, customers=customers, days=days, seed=seed, end=date.today())
    layout = DatasetLayout(dataset)
    end = date.fromisoformat(manifest["params"]["end"])
    # the reviewer's sign-off on the malformed lines the generator plants, as `make demo` gives it
    accept_planted_mess(dataset, workdir / "pipeline")
    env = {
        "GLADLY_API_USER": "migration.bot@example.com",
        "GLADLY_API_TOKEN": secrets.token_urlsafe(24),
        "UNTHREAD_API_KEY": secrets.token_urlsafe(24),
    }
    cli = str(Path(sys.executable).with_name("migration-pipeline"))
    gladly_port, unthread_port = _free_port(), _free_port()
    commands = [
        [cli, "emulator", "gladly", "--data", str(dataset), "--port", str(gladly_port),
         "--now", manifest["params"]["asOf"], "--rate-limit", "10"],
        [cli, "emulator", "unthread", "--port", str(unthread_port), "--state", str(workdir / "unthread.sqlite"),
         "--workspace", str(layout.unthread_workspace), "--rate-limit", str(limit)],
    ]
    procs = [subprocess.Popen(c, env=os.environ | env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for c in commands]
    try:
        for port in (gladly_port, unthread_port):
            for _ in range(300):
                try:
                    httpx.get(f"http://127.0.0.1:{port}/_emulator/health", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
        yield env | {
            "GLADLY_BASE_URL": f"http://127.0.0.1:{gladly_port}",
            "UNTHREAD_BASE_URL": f"http://127.0.0.1:{unthread_port}/api",
            "MIGRATION_DATA_DIR": str(workdir / "pipeline"),
            "MIGRATION_HISTORY_START": (end - timedelta(days=days)).isoformat(),
            "MIGRATION_HISTORY_END": end.isoformat(),
            "UNTHREAD_TRIAGE_CHANNEL_ID": read_json(layout.unthread_workspace)["triageChannels"][0]["id"],
        }
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--emulators", choices=("process", "thread"), default="process",
                        help="emulators in their own processes (default) or in this one (as `make demo`)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from migration_pipeline.pairs.gladly_to_unthread.pair import key
    from sim.demo import _materialize_range, rehearsal_environment

    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    if args.emulators == "process":
        environment = emulator_processes(workdir, customers=args.customers, days=args.days, seed=3, limit=args.limit)
    else:
        environment = rehearsal_environment(workdir, customers=args.customers, days=args.days, seed=3)
    with environment as env:
        env = env[0] if isinstance(env, tuple) else env
        env["UNTHREAD_REQUESTS_PER_SECOND"] = str(args.limit)
        os.environ.update(env)
        first = env["MIGRATION_HISTORY_START"]
        last = time.strftime("%Y-%m-%d", time.gmtime(time.mktime(time.strptime(env["MIGRATION_HISTORY_END"], "%Y-%m-%d")) - 86400))
        started, cpu_started, load_before = time.monotonic(), time.process_time(), os.getloadavg()[0]
        result = _materialize_range(first, last)
        wall, cpu = time.monotonic() - started, time.process_time() - cpu_started
        load_after = os.getloadavg()[0]
        log = httpx.get(env["UNTHREAD_BASE_URL"].removesuffix("/api") + "/_emulator/requests").json()
        gladly_log = [r for r in httpx.get(env["GLADLY_BASE_URL"] + "/_emulator/requests").json()
                      if r["path"].startswith("/api/")]
    if not result.success:
        failed = [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]
        print(f"run failed (failed checks: {failed or 'none'})", file=sys.stderr)
        return 1
    assets = {  # by asset key, `gladly_to_unthread/<asset>`
        m.asset_key: {k: v.value for k, v in m.metadata.items()}
        for m in (e.event_specific_data.materialization for e in result.get_asset_materialization_events())
    }
    loaded, staged = assets[key("unthread_loaded_records")], assets[key("staged_conversation_items")]
    # Gladly's rate over its busy stretch: the REST profile lookups of the staging step.
    rest = [r for r in gladly_log if "/customers/" in r["path"]] or gladly_log
    g0, g1 = (min(r["t"] for r in rest), max(r["t"] for r in rest)) if rest else (0.0, 0.0)
    writes = [r for r in log if r["method"] in ("POST", "PATCH") and (WRITE.match(r["path"]) or r["method"] == "PATCH")]
    t0, t1 = min(r["t"] for r in writes), max(r["t"] for r in writes)
    during = [r for r in log if t0 <= r["t"] <= t1]
    achieved = len(during) / max(t1 - t0, 1e-9)
    throttled = sum(1 for r in log if r["status"] == 429)
    # a range run's materialization carries one day's figures; range_* holds the whole range
    messages, tickets = loaded["range_messages_created"], loaded["range_tickets"]
    load_requests = len(during)
    summary = {
        "limit_rps": args.limit,
        "achieved_rps": round(achieved, 2),
        "efficiency": round(achieved / args.limit, 3),
        "throttled_per_1000": round(1000 * throttled / max(len(log), 1), 2),
        "messages": messages,
        "tickets": tickets,
        "customers_created": loaded["range_customers_created"],
        "load_requests": load_requests,
        "requests_per_message": round(load_requests / max(messages, 1), 3),
        "floor_requests_per_message": round((messages + 2 * tickets + loaded["range_customers_created"]) / max(messages, 1), 3),
        "run_wall_s": round(wall, 1),
        "emulators": args.emulators,
        # On a shared machine the achieved rate says as much about the neighbours as about us:
        # the pipeline's own CPU per request bounds the rate one free core could sustain.
        "loadavg_1m_before_after": [round(load_before, 2), round(load_after, 2)],
        "pipeline_cpu_s": round(cpu, 1),
        "pipeline_cpu_ms_per_request": round(1000 * cpu / max(len(log) + len(gladly_log), 1), 2),
        "cpu_ceiling_rps": round(max(len(log) + len(gladly_log), 1) / max(cpu, 1e-9), 1),
        "items_staged": staged["rows"],
        "items_per_s_end_to_end": round(staged["rows"] / wall, 1),
        "gladly_limit_rps": 10,
        "gladly_requests": len(gladly_log),
        "gladly_throttled": sum(1 for r in gladly_log if r["status"] == 429),
        "gladly_rest_rps": round(len(rest) / max(g1 - g0, 1e-9), 2) if len(rest) > 1 else None,
        "asset_duration_s": {k.path[-1]: v.get("duration_s") for k, v in assets.items() if "duration_s" in v},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
