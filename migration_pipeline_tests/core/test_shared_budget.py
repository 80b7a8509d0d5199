"""The org-wide request budget (lib/budget.py): every client of one Gladly org on the machine, in
any thread or process, first attempts and retries alike, stays under Gladly's 10/s, judged by the
Gladly emulator (which counts the org's requests per wall-clock second and answers 429 beyond).

Child processes are started with `spawn`, as Dagster's multiprocess executor does, so nothing is
inherited but the budget folder. They import this module, so it imports only what they need at
module level (the suite's conftest would bring Dagster and seconds of imports into each).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from migration_pipeline.lib.budget import BUDGET_FOLDER, SharedRequestBudget, budget_file
from migration_pipeline.lib.http import VendorAPIError, VendorHttpClient
from sim.emulators.common import (
    EmulatorMiddleware,
    EmulatorState,
    FaultConfig,
    FaultDecider,
    RequestLog,
    RunningServer,
)
from migration_pipeline.vendors.gladly.client import GladlyClient, org_key

USER, TOKEN = "migration.bot@example.com", "gladly-test-token-0123456789"  # conftest's GLADLY_USER/TOKEN

ORG_LIMIT = 10  # the emulator's org-wide requests per second, as Gladly's default
PACE = 9  # GladlyResource's default requests_per_second
PROCESSES, THREADS, SECONDS = 3, 2, 2.0


def _start_gladly(tmp_path: Path, **kw) -> RunningServer:
    """A Gladly emulator (org limit 10/s) on an empty dataset: /organization answers regardless."""
    from migration_pipeline_tests.conftest import GLADLY_TOKEN, GLADLY_USER, start_gladly

    assert (GLADLY_USER, GLADLY_TOKEN) == (USER, TOKEN)
    (tmp_path / "dataset" / "gladly").mkdir(parents=True)
    return start_gladly(tmp_path / "dataset", rate_limit_per_second=ORG_LIMIT, **kw)


@pytest.fixture
def gladly_url(tmp_path):
    server = _start_gladly(tmp_path)
    yield server.url
    server.stop()


# -- run in child processes (module level, so `spawn` can import them) ---------------------------
def _hammer(url: str, budget_dir: str, start: multiprocessing.synchronize.Barrier, seconds: float, results) -> None:
    """THREADS threads, each with its own GladlyClient of the org, asking as fast as they may."""

    def loop(client: GladlyClient, sent: list[int]) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            client.get_organization()
            sent.append(1)

    clients = [GladlyClient(url, USER, TOKEN, requests_per_second=PACE, budget_dir=budget_dir)
               for _ in range(THREADS)]
    counts: list[list[int]] = [[] for _ in clients]
    threads = [threading.Thread(target=loop, args=(c, n)) for c, n in zip(clients, counts, strict=True)]
    start.wait()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    results.put([len(n) for n in counts])


def _get_throttled(url: str, budget_dir: str, pause: float, sent_at, done) -> None:
    """One request that Gladly refuses with 429 and that is not retried; says when it was sent,
    then stays alive until the parent has looked (a client still running, as in a real run)."""
    with GladlyClient(url, USER, TOKEN, budget_dir=budget_dir, max_attempts=1,
                      throttle_pause_seconds=pause) as client:
        started = time.time()
        try:
            client.get_organization()
        except VendorAPIError as exc:
            sent_at.put(started if exc.status == 429 else None)
        else:
            sent_at.put(None)
        done.wait(60)


# -- the judge: the emulator --------------------------------------------------------------------
def test_clients_in_several_processes_and_threads_stay_within_the_org_limit(gladly_url, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(PROCESSES), ctx.Queue()
    budget_dir = str(tmp_path / "budgets")
    workers = [ctx.Process(target=_hammer, args=(gladly_url, budget_dir, start, SECONDS, results))
               for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    per_client = [n for _ in workers for n in results.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    log = [r for r in httpx.get(f"{gladly_url}/_emulator/requests").json() if r["path"].startswith("/api/")]
    assert Counter(r["status"] for r in log) == {200: len(log)}, "Gladly never had to refuse a request"
    assert len(log) == sum(per_client), "so nothing was retried"
    per_second = Counter(int(r["t"]) for r in log)
    assert max(per_second.values()) <= ORG_LIMIT, sorted(per_second.items())
    # Six clients that each paced only themselves would ask ~54/s; the org got ~9/s, and all of
    # it (the budget is shared, not starved): at least 80% of 9/s over the run.
    assert len(log) >= 0.8 * PACE * SECONDS, len(log)
    assert all(n > 0 for n in per_client), per_client


def test_a_429_seen_by_one_process_holds_off_every_client_of_the_org(tmp_path):
    budget_dir = tmp_path / "budgets"
    pause = 1.0
    server = _start_gladly(tmp_path, faults=FaultConfig(rate_429=1.0))
    url = server.url
    ctx = multiprocessing.get_context("spawn")
    sent_at, done = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=_get_throttled, args=(url, str(budget_dir), pause, sent_at, done))
    child.start()
    same_org = other_org = None
    try:
        sent = sent_at.get(timeout=60)
        assert sent is not None, "the child's request got a 429"
        same_org = SharedRequestBudget.for_account(budget_dir, "gladly", org_key(url), PACE)
        other_org = SharedRequestBudget.for_account(budget_dir, "gladly", "other.gladly.com", PACE)
        blocked_until = same_org.blocked_until()
        assert blocked_until >= sent + pause - 0.01, "the child's 429 was recorded for the whole org"
        same_org.acquire()
        assert time.time() >= blocked_until, "and this process waited it out before its request"
        assert other_org.blocked_until() == 0, "another org is not held"
    finally:
        done.set()
        child.join(timeout=60)
        server.stop()
        for budget in (same_org, other_org):
            if budget is not None:
                budget.close()
    assert child.exitcode == 0


# -- retries draw from the same budget ----------------------------------------------------------
def _throttled_once_server() -> tuple[RunningServer, dict[str, int]]:
    calls = {"n": 0}

    async def throttled_once(_: Request) -> Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return JSONResponse({"error": "slow down"}, status_code=429)
        return JSONResponse({"ok": True})

    state = EmulatorState(name="t", faults=FaultDecider(FaultConfig()), log=RequestLog(), api_prefix="/api")
    app = Starlette(routes=[Route("/api/throttled", throttled_once)])
    return RunningServer(EmulatorMiddleware(app, state)), calls


def test_a_retry_after_a_429_draws_from_the_shared_budget(tmp_path):
    # Two requests per second for the account (at least 250 ms apart), a pause after the 429 and
    # backoffs of a few hundredths: only the budget can hold the retry 250 ms, and only a budget
    # that recorded both attempts makes another client of the account wait for the next second.
    path = tmp_path / "acct.sqlite"
    server, calls = _throttled_once_server()
    other = SharedRequestBudget(path, 2)
    with server, VendorHttpClient(server.url, shared_budget=SharedRequestBudget(path, 2), throttle_pause_seconds=0.05,
                                  backoff_initial_seconds=0.01, backoff_max_seconds=0.02) as client:
        started = time.monotonic()
        assert client.request("GET", "/api/throttled").json() == {"ok": True}
        assert time.monotonic() - started >= 0.25, "the retry waited for the account's next slot"
    try:
        assert calls["n"] == 2 and client.stats.retries == 1 and client.stats.throttled == 1
        other.acquire()
        assert time.monotonic() - started >= 1.0, "both attempts spent the second's budget: the next client waits"
    finally:
        other.close()


def test_budget_counts_every_client_on_the_file_and_spaces_requests(tmp_path):
    path = tmp_path / "acct.sqlite"
    budgets = [SharedRequestBudget(path, 4) for _ in range(2)]
    try:
        before, after = [], []
        for i in range(5):
            before.append(time.monotonic())
            budgets[i % 2].acquire()
            after.append(time.monotonic())
        # 4 per second between both: the fifth waits for the first to leave the window, and no
        # two are closer than half the mean interval (125 ms). (Measured around each acquire, so
        # a busy machine can only lengthen what is measured, never shorten it.)
        assert after[4] - before[0] >= 1.0
        assert all(after[i + 1] - before[i] >= 0.125 for i in range(4)), (before, after)
    finally:
        for budget in budgets:
            budget.close()


def test_a_wall_clock_stepped_back_does_not_hold_the_account(tmp_path, monkeypatch):
    budget = SharedRequestBudget(tmp_path / "acct.sqlite", 2)
    try:
        real_ns = time.time_ns
        monkeypatch.setattr(time, "time_ns", lambda: real_ns() + 3600 * 10**9)
        budget.acquire()
        budget.acquire()  # the window is full, an hour from now
        budget.block_for(60)
        monkeypatch.setattr(time, "time_ns", real_ns)  # NTP steps the clock back an hour
        acquired = threading.Thread(target=budget.acquire, daemon=True)
        acquired.start()
        acquired.join(timeout=5)
        assert not acquired.is_alive(), "the stale stamps were forgotten, not waited out"
    finally:
        budget.close()


# -- where the budget lives ---------------------------------------------------------------------
def test_budget_file_is_per_org_and_names_nothing_of_the_account():
    acme = budget_file("/b", "gladly", org_key("https://acme.gladly.com/"))
    assert acme == budget_file("/b", "gladly", org_key("https://ACME.gladly.com"))
    assert acme != budget_file("/b", "gladly", org_key("https://other.gladly.com"))
    assert acme != budget_file("/b", "gladly", org_key("http://127.0.0.1:8001"))
    assert org_key("http://127.0.0.1:8001") != org_key("http://127.0.0.1:8002")
    assert "acme" not in acme.name and acme.parent == Path("/b")


def test_resource_clients_share_the_budget_under_the_data_dir(tmp_path, monkeypatch):
    """The resource as the settings build it: MIGRATION_DATA_DIR/rate-budgets when the variable
    is set, else the per-user temp folder (never the working directory's default data dir)."""
    import tempfile

    from migration_pipeline.lib.budget import default_budget_dir
    from migration_pipeline.resources import gladly_resource
    from migration_pipeline.settings import load_settings
    from migration_pipeline.vendors.gladly.resources import GladlyResource

    for name, value in (("GLADLY_BASE_URL", "https://acme.gladly.example"), ("GLADLY_API_USER", USER),
                        ("GLADLY_API_TOKEN", TOKEN), ("MIGRATION_DATA_DIR", str(tmp_path / "data"))):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GLADLY_REQUESTS_PER_SECOND", raising=False)
    resource = gladly_resource(load_settings(), env_vars=False)
    with resource.client() as first, resource.client() as second:
        assert first.shared_budget is not None and second.shared_budget is not None
        assert first.shared_budget.path == second.shared_budget.path
        assert first.shared_budget.path.parent == tmp_path / "data" / BUDGET_FOLDER
        assert first.shared_budget.requests_per_second == 9.0
        assert TOKEN not in str(first.shared_budget.path) and USER not in str(first.shared_budget.path)
    explicit = GladlyResource(base_url="https://acme.gladly.example", api_user=USER, api_token=TOKEN,
                              rate_budget_dir=str(tmp_path / "elsewhere"))
    with explicit.client() as client:
        assert client.shared_budget.path.parent == tmp_path / "elsewhere"
    monkeypatch.delenv("MIGRATION_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    unset = gladly_resource(load_settings(), env_vars=False)
    assert unset.rate_budget_dir is None and default_budget_dir().parent.parent == Path(tempfile.gettempdir())
