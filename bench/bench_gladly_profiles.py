"""Gladly profile creation (issue 15: "Profile creation at >= 0.9 of Gladly's 10 req/s against the
emulator"): the Zendesk -> Gladly profile load (`vendors/gladly/profile_load.py`) against the
Gladly emulator with its org-wide 10 requests/s limit on.

    python bench/bench_gladly_profiles.py [--profiles 300] [--rps 9] [--engine sqlite|postgresql]

Stages `--profiles` contract customers (every 10th shares its email with another customer, so
persons are fewer than customers; `--existing` of the persons already have a Gladly profile, so
their create answers 409 and is completed with a PATCH), starts the emulator in its own process
(as bench_load does: the vendor is elsewhere in production) and runs the load in this one, the
client drawing from the shared org budget at `--rps` (the resource's default is 9/s). Reads the
emulator's request log:
- achieved API requests/s over the load (first to last request) and its ratio to Gladly's 10/s;
- profiles created per second over the same stretch;
- 429s, requests per person, the load's wall time and the ledger's per-person overhead.
Prints a one-line JSON summary. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _common import staging_database  # noqa: E402
from bench_load import _free_port  # noqa: E402

GLADLY_LIMIT = 10
USER = "migration.bot@example.com"


def start_emulator(org: Path, token: str) -> tuple[subprocess.Popen, str]:
    cli = str(Path(sys.executable).with_name("migration-pipeline"))
    port = _free_port()
    env = os.environ | {"GLADLY_API_USER": USER, "GLADLY_API_TOKEN": token}
    proc = subprocess.Popen([cli, "emulator", "gladly", "--data", str(org), "--port", str(port),
                             "--rate-limit", str(GLADLY_LIMIT)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(url + "/_emulator/health", timeout=1).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the Gladly emulator did not start")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", type=int, default=300, help="staged customers")
    ap.add_argument("--existing", type=int, default=0, help="persons that already have a Gladly profile")
    ap.add_argument("--rps", type=float, default=9.0, help="the client's pace (GladlyResource.requests_per_second)")
    ap.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    args = ap.parse_args(argv)

    from migration_pipeline.contract import Customer
    from migration_pipeline.lib.staging.db import StagingDatabase, customer_columns, customers, now_text
    from migration_pipeline.vendors.gladly.client import GladlyClient
    from migration_pipeline.vendors.gladly.profile_load import ProfileLoader, people
    from migration_pipeline.vendors.gladly.profiles import GladlyTarget, ProfileFields

    work = Path(tempfile.mkdtemp(prefix="bench-gladly-profiles-"))
    (work / "org" / "gladly").mkdir(parents=True)
    token = secrets.token_urlsafe(24)
    staged = [
        Customer("zendesk", f"u{i}", f"Customer {i}", (f"c{i - 1 if i % 10 == 9 else i}@example.com",),
                 (f"+1 650 555 {i % 10000:04d}",))
        for i in range(args.profiles)
    ]
    proc, url = start_emulator(work / "org", token)
    try:
        with staging_database(args.engine, work / "staging.db") as staging_url:
            db = StagingDatabase(staging_url, "zendesk_to_gladly")
            db.create_schema()
            with db.begin() as conn:
                db.upsert(conn, customers, [{**customer_columns(c), "staged_at": now_text()} for c in staged])
            client = GladlyClient(url, USER, token, requests_per_second=args.rps, budget_dir=work / "budget")
            target = GladlyTarget(client)
            persons = people(db)
            for person in persons.persons[: args.existing]:
                target.create_profile(ProfileFields(emails=[person.emails[0]]))
            httpx.post(url + "/_emulator/requests/clear").raise_for_status()
            started, cpu_started = time.monotonic(), time.process_time()
            with ProfileLoader(db, target, "bench") as loader:
                counts = loader.load(persons)
            wall, cpu = time.monotonic() - started, time.process_time() - cpu_started
            client.close()
            db.dispose()
        log = [r for r in httpx.get(url + "/_emulator/requests").json() if r["path"].startswith("/api/")]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    t0, t1 = min(r["t"] for r in log), max(r["t"] for r in log)
    span = max(t1 - t0, 1e-9)
    achieved = (len(log) - 1) / span  # intervals between the first and the last request
    summary = {
        "engine": args.engine,
        "client_rps": args.rps,
        "gladly_limit_rps": GLADLY_LIMIT,
        "customers": args.profiles,
        "persons": counts.people,
        "created": counts.created,
        "matched": dict(counts.matched),
        "updated": counts.updated,
        "failed": counts.failed,
        "requests": len(log),
        "throttled_429": sum(1 for r in log if r["status"] == 429),
        "achieved_rps": round(achieved, 2),
        "efficiency_vs_limit": round(achieved / GLADLY_LIMIT, 3),
        "profiles_per_s": round((counts.created + sum(counts.matched.values()) - 1) / span, 2),
        "profiles_per_s_wall": round((counts.created + sum(counts.matched.values())) / wall, 2),
        "requests_per_person": round(len(log) / max(counts.people, 1), 3),
        "load_wall_s": round(wall, 2),
        "load_cpu_ms_per_person": round(1000 * cpu / max(counts.people, 1), 2),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
