"""The Dagster UI in a real headless Chromium: the lineage graph shows every stage, and a partition
launched from the UI's launch dialog runs to success against the emulators.

What runs, all on loopback: the `make ui` rehearsal environment (`rehearsal_environment`: a small
generated dataset, both emulators, fresh secrets), `dagster-webserver` and `dagster-daemon` (the
instance's default QueuedRunCoordinator needs the daemon to start a queued run) on the project's
workspace.yaml with a temporary DAGSTER_HOME holding the project's dagster.yaml, and Debian's
chromium driven through its matching chromedriver by Selenium.

Skips when chromium, chromedriver or selenium are missing (checked before the UI starts), except
under CI (any truthy value), where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from sim.demo import rehearsal_environment
from sim.synth.dataset import read_json
from migration_pipeline_tests.conftest import skip_or_fail

REPO = Path(__file__).resolve().parents[2]
# Every stage of the graph, source to target (README "The asset graph"): keys `gladly_to_unthread/<name>`,
# drawn in the lineage graph by their last component, <name>.
PAIR = "gladly_to_unthread"
EXTERNAL_ASSETS = ("gladly_export", "unthread_workspace")
MATERIALIZED_STAGES = (
    "gladly_export_jobs",
    "staged_customers",
    "staged_agents",
    "staged_topics",
    "staged_conversation_items",
    "split_tickets",
    "unthread_loaded_records",
    "reconciliation_report",
)
# Generous deadlines: the machine may be a loaded 2-core box; nothing here asserts on duration.
STARTUP_DEADLINE_S = 300
UI_DEADLINE_S = 120
RUN_DEADLINE_S = 1500
RUN_STATUSES_TERMINAL = ("Success", "Failure", "Canceled")
RUN_HREF = re.compile(r"/runs/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

pytestmark = pytest.mark.slow


# -- prerequisites ----------------------------------------------------------------------------
def _missing(what: str) -> None:
    skip_or_fail(f"{what} not installed for the browser test; `apt-get install chromium chromium-driver` "
                 "and `make venv` (.ci/run installs them)")


@pytest.fixture
def browser_binaries() -> tuple[str, str]:
    """chromium and chromedriver, looked for before anything is started."""
    return _browser_binaries()


def _browser_binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file() else None
    )
    if not chromium:
        _missing("chromium (Debian package `chromium`)")
    if not driver:
        _missing("chromedriver (Debian package `chromium-driver`)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _missing("selenium (the `dev` extra)")
    return chromium, driver


# -- servers ----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dagster_command(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found beside {sys.executable} nor on PATH (dagster-webserver is a dependency)")
    return found


@dataclass
class DagsterUI:
    """dagster-webserver + dagster-daemon as real processes, each in its own process group so that
    their code servers and run workers are stopped with them."""

    home: Path
    env: dict[str, str]
    port: int = field(default_factory=_free_port)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self, name: str) -> Path:
        return self.home / f"{name}.log"

    def start(self, name: str) -> None:
        workspace = str(REPO / "workspace.yaml")
        command = {
            "webserver": [_dagster_command("dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port), "-w", workspace],
            "daemon": [_dagster_command("dagster-daemon"), "run", "-w", workspace],
        }[name]
        with self.log(name).open("wb") as out:
            self.processes[name] = subprocess.Popen(
                command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            # code servers and run workers it spawned share its process group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def tail(self, lines: int = 40) -> str:
        parts = []
        for name in self.processes:
            text = self.log(name).read_text(encoding="utf-8", errors="replace").splitlines()
            parts.append(f"--- {name} log (last {lines} lines) ---\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def _poll(self, what: str, probe: Callable[[], bool]) -> None:
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                assert proc.poll() is None, f"{name} exited with {proc.returncode}\n{self.tail()}"
            try:
                if probe():
                    return
            except (httpx.HTTPError, KeyError, TypeError):
                pass
            time.sleep(1)
        pytest.fail(f"{what} not ready after {STARTUP_DEADLINE_S}s\n{self.tail()}")

    def wait_until_loaded(self) -> None:
        """Webserver answering and the code location loaded (a load error fails with its message)."""
        query = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
            name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""

        def loaded() -> bool:
            entries = self.graphql(query)["workspaceOrError"]["locationEntries"]
            if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
                return False
            errors = [e["locationOrLoadError"] for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
            assert not errors, f"code location failed to load: {errors[0]['message']}"
            return True

        self._poll("dagster-webserver with the code location", loaded)

    def wait_until_daemon_healthy(self) -> None:
        """The run queue daemon heartbeating: without it a run launched from the UI stays queued."""
        query = "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"

        def healthy() -> bool:
            statuses = self.graphql(query)["instance"]["daemonHealth"]["allDaemonStatuses"]
            return all(s["healthy"] for s in statuses if s["required"])

        self._poll("dagster-daemon", healthy)


# -- fixtures -----------------------------------------------------------------------------------
@dataclass
class UIRehearsal:
    ui: DagsterUI
    env: dict[str, str]
    partition: str


@pytest.fixture
def ui_rehearsal(browser_binaries, tmp_path) -> Iterator[UIRehearsal]:
    """The `make ui` rehearsal on a small dataset, served by dagster-webserver + dagster-daemon."""
    with rehearsal_environment(tmp_path / "rehearsal", customers=12, days=3, seed=5) as (env, layout):
        manifest = read_json(layout.manifest)
        first, end = date.fromisoformat(env["MIGRATION_HISTORY_START"]), date.fromisoformat(env["MIGRATION_HISTORY_END"])
        days = [(first + timedelta(days=n)).isoformat() for n in range((end - first).days)]
        per_day = manifest["counts"]["itemsPerDay"]
        # the lightest day that has items: a real partition of the dataset, and a quick run
        partition = min((d for d in days if per_day.get(d, 0) > 0), key=lambda d: (per_day[d], d))

        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        process_env = os.environ | env | {
            "DAGSTER_HOME": str(home),
            # keep staging beside this rehearsal whatever the caller's environment says
            "MIGRATION_STAGING_URL": f"sqlite:///{tmp_path / 'rehearsal' / 'staging.db'}",
            "PYTHONUNBUFFERED": "1",
        }
        ui = DagsterUI(home=home, env=process_env)
        try:
            # One after the other: both would otherwise create the fresh SQLite instance storage at
            # once and stamp its schema version twice ("more than one head").
            ui.start("webserver")
            ui.wait_until_loaded()
            ui.start("daemon")
            ui.wait_until_daemon_healthy()
            # The "Join the Dagster community" dialog opens over any page served from 127.0.0.1 until
            # it is dismissed once per instance; this is the mutation its Skip button sends.
            assert ui.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
            yield UIRehearsal(ui=ui, env=env, partition=partition)
        finally:
            ui.stop()


@pytest.fixture
def browser(browser_binaries, tmp_path):
    chromium, chromedriver = browser_binaries
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # A large window so the fitted lineage graph draws full asset names, not truncated ones.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=2400,1500"):
        options.add_argument(arg)
    service = Service(executable_path=chromedriver, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(UI_DEADLINE_S)
    try:
        yield driver
    finally:
        driver.quit()


class Screenshots:
    """Numbered screenshots of each step, in the test's tmp dir and, when MIGRATION_UI_SCREENSHOTS_DIR
    is set, copied there too (pytest keeps only its last few tmp dirs)."""

    def __init__(self, driver, folder: Path):
        self.driver, self.folder, self.taken = driver, folder, []
        folder.mkdir(parents=True, exist_ok=True)
        keep = os.environ.get("MIGRATION_UI_SCREENSHOTS_DIR")
        self.keep = Path(keep) if keep else None
        if self.keep:
            self.keep.mkdir(parents=True, exist_ok=True)

    def take(self, name: str) -> Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        assert self.driver.save_screenshot(str(path)), f"screenshot {path} failed"
        self.taken.append(path)
        if self.keep:
            shutil.copy(path, self.keep / path.name)
        return path


# -- the test -----------------------------------------------------------------------------------
def test_lineage_shows_every_stage_and_a_partition_launched_from_the_ui_succeeds(ui_rehearsal, browser, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    ui, partition = ui_rehearsal.ui, ui_rehearsal.partition
    shots = Screenshots(browser, tmp_path / "screenshots")
    wait = WebDriverWait(browser, UI_DEADLINE_S, poll_frequency=0.5, ignored_exceptions=(StaleElementReferenceException,))

    def xpath_text(text: str) -> str:
        return f"//*[normalize-space(text())='{text}']"

    def status_tag(status: str) -> str:
        return f"//*[contains(@class, 'BaseTag')]{xpath_text(status)}"

    def graph_asset_names() -> set[str]:
        return {e.text.strip() for e in browser.find_elements(By.CSS_SELECTOR, "foreignObject [class*='assetName']")}

    def wait_for(condition: Callable, what: str, timeout: float = UI_DEADLINE_S):
        return WebDriverWait(
            browser, timeout, poll_frequency=1, ignored_exceptions=(StaleElementReferenceException,)
        ).until(condition, message=f"waited {timeout}s for {what}")

    def materialization_row(b):
        """A materialization row of the run's event log. The log is virtualized and follows its
        tail: when the run's last steps (checks) log many rows, the materializations are scrolled
        out of the page, so each poll scrolls every scrolled box up by most of its height (back
        to the bottom from the top) until one is in view."""
        if b.find_elements(By.XPATH, xpath_text("ASSET_MATERIALIZATION")):
            return True
        b.execute_script(
            "for (const e of document.querySelectorAll('*')) {"
            "  const y = getComputedStyle(e).overflowY;"
            "  if ((y === 'auto' || y === 'scroll') && e.scrollHeight > e.clientHeight + 10) {"
            "    e.scrollTop = e.scrollTop <= 0 ? e.scrollHeight : Math.max(0, e.scrollTop - e.clientHeight * 0.8);"
            "  }"
            "}"
        )
        return False

    try:
        # 1. the pair's own lineage graph (its group): source -> stages -> target, no other pair's
        browser.get(f"{ui.url}/locations/migration_pipeline/asset-groups/{PAIR}")
        materialize_all = (By.XPATH, "//button[starts-with(normalize-space(.), 'Materialize all')]")
        wait.until(EC.element_to_be_clickable(materialize_all))
        expected = set(EXTERNAL_ASSETS) | set(MATERIALIZED_STAGES)
        wait_for(lambda _: expected <= graph_asset_names(), f"asset nodes {sorted(expected)} in the lineage graph")
        # no node of the other pair (whose names the graph draws without its prefix, as these)
        assert not {"zendesk_deliveries", "zendesk_account", "gladly_organization"} & graph_asset_names(), graph_asset_names()
        shots.take("lineage")

        # 2. Materialize all -> launch dialog -> one partition the dataset has
        wait.until(EC.element_to_be_clickable(materialize_all)).click()
        dialog = (By.XPATH, "//*[@role='dialog'][.//*[starts-with(normalize-space(text()), 'Launch runs to materialize')]]")
        wait.until(EC.visibility_of_element_located(dialog))
        shots.take("launch-dialog")
        partition_input = wait.until(EC.element_to_be_clickable((By.XPATH, f"{dialog[1]}//input[@type='text']")))
        partition_input.click()
        partition_input.send_keys(partition, Keys.ENTER)
        one_partition = (By.XPATH, f"{dialog[1]}{xpath_text('1 partition')}")
        wait_for(EC.presence_of_element_located(one_partition), "1 partition selected")
        launch = (By.XPATH, f"{dialog[1]}//button[normalize-space(.)='Launch 1 run']")
        wait.until(EC.element_to_be_clickable(launch))
        shots.take("partition-selected")
        wait.until(EC.element_to_be_clickable(launch)).click()
        wait_for(EC.invisibility_of_element_located(dialog), "the launch dialog to close after launching")

        # 3. the run on the Runs page, followed until it ends (the page polls; a reload now and then
        #    guards against a missed poll without hiding a stuck run)
        browser.get(f"{ui.url}/runs")

        def launched_run_link(b):
            links = b.find_elements(By.CSS_SELECTOR, "a[href*='/runs/']")
            return next((a for a in links if RUN_HREF.search(a.get_attribute("href") or "")), False)

        run_link = wait_for(launched_run_link, "the launched run on the Runs page")
        run_id = run_link.get_attribute("href").rsplit("/", 1)[1]
        wait_for(lambda b: f"partition: {partition}" in b.find_element(By.TAG_NAME, "body").text, "the run's partition tag")

        status_xpath = " | ".join(status_tag(s) for s in RUN_STATUSES_TERMINAL)
        deadline = time.monotonic() + RUN_DEADLINE_S
        status = None
        while status is None and time.monotonic() < deadline:
            try:
                found = WebDriverWait(browser, 60, poll_frequency=1).until(
                    lambda b: b.find_elements(By.XPATH, status_xpath)
                )
                status = found[0].text.strip()
            except WebDriverException:
                browser.refresh()
        shots.take("runs-page")
        assert status == "Success", f"run {run_id} ended as {status!r} in the UI (or not within {RUN_DEADLINE_S}s)"

        # 4. the run's own page: the status and its materializations
        browser.get(f"{ui.url}/runs/{run_id}")
        wait_for(
            EC.presence_of_element_located((By.XPATH, status_tag("Success"))),
            "the run page's Success status",
        )
        wait_for(materialization_row, "materialization events")
        final = shots.take("run-succeeded")
        print(f"screenshots: {', '.join(str(p) for p in shots.taken)} (final: {final})")
    except BaseException:
        try:
            shots.take("failure")
            (tmp_path / "screenshots" / "failure.html").write_text(browser.page_source, encoding="utf-8")
        except Exception:  # a dead browser must not hide the original error
            pass
        print(ui.tail())
        raise

    # What the UI said, cross-checked on the instance and the target: every stage materialized this
    # partition in this run, and the Unthread emulator really received conversations.
    run = ui.graphql(
        "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status tags { key value } } } }",
        {"id": run_id},
    )["runOrError"]
    assert run["status"] == "SUCCESS"
    assert {"key": "dagster/partition", "value": partition} in run["tags"]
    for asset in MATERIALIZED_STAGES:
        found = ui.graphql(
            """query($path: [String!]!, $p: [String!]) { assetOrError(assetKey: {path: $path}) {
                ... on Asset { assetMaterializations(partitions: $p) { runId partition } } } }""",
            {"path": [PAIR, asset], "p": [partition]},
        )["assetOrError"]["assetMaterializations"]
        assert any(m["runId"] == run_id for m in found), f"{asset} has no materialization of {partition} from {run_id}"
    unthread_root = ui_rehearsal.env["UNTHREAD_BASE_URL"].removesuffix("/api")
    stats = httpx.get(f"{unthread_root}/_emulator/stats", timeout=30).json()
    assert stats["conversations"] > 0 and stats["messages"] > 0, stats
