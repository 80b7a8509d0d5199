"""The `migration-pipeline` console script, run as a user would (a real process)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from migration_pipeline_tests.conftest import GLADLY_TOKEN, GLADLY_USER, UNTHREAD_KEY

SCRIPT = str(Path(sys.executable).with_name("migration-pipeline"))
COMMANDS = [[], ["generate"], ["demo"], ["ui"], ["trace"], ["split-preview"], ["emulator"], ["emulator", "gladly"], ["emulator", "unthread"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(command):
    proc = subprocess.run([SCRIPT, *command, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [SCRIPT, *args, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ | env
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    raise AssertionError("emulator did not start")


def test_gladly_emulator_process_serves_a_generated_dataset(tmp_path):
    data = tmp_path / "data"
    gen = subprocess.run(
        [SCRIPT, "generate", "--customers", "5", "--days", "3", "--seed", "1", "--out", str(data), "--end", "2026-11-20"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gen.returncode == 0, gen.stderr
    env = {"GLADLY_API_USER": GLADLY_USER, "GLADLY_API_TOKEN": GLADLY_TOKEN}
    proc, url = _start(["emulator", "gladly", "--data", str(data), "--now", "2026-11-20T06:00:00"], env)
    try:
        jobs = httpx.get(f"{url}/api/v1/export/jobs", auth=(GLADLY_USER, GLADLY_TOKEN)).json()
        assert jobs and all("parameters" in j for j in jobs)
        assert httpx.get(f"{url}/api/v1/export/jobs", auth=(GLADLY_USER, "wrong")).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_unthread_emulator_process_keeps_state_across_restarts(tmp_path):
    state = tmp_path / "state.sqlite"
    env = {"UNTHREAD_API_KEY": UNTHREAD_KEY}
    headers = {"X-Api-Key": UNTHREAD_KEY}
    proc, url = _start(["emulator", "unthread", "--state", str(state)], env)
    try:
        created = httpx.post(f"{url}/api/customers", json={"name": "Acme"}, headers=headers)
        assert created.status_code in (200, 201), created.text
        customer_id = created.json()["id"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    proc, url = _start(["emulator", "unthread", "--state", str(state)], env)
    try:
        again = httpx.get(f"{url}/api/customers/{customer_id}", headers=headers)
        assert again.status_code == 200 and again.json()["name"] == "Acme"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_emulator_refuses_to_start_without_credentials(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "UNTHREAD_API_KEY"}
    proc = subprocess.run([SCRIPT, "emulator", "unthread", "--port", "0"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0
    assert "UNTHREAD_API_KEY" in proc.stdout + proc.stderr
