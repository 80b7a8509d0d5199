"""`migration-pipeline generate --source zendesk` and `emulator zendesk`, run as a user would."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from migration_pipeline_tests.test_cli import SCRIPT, _start

from .conftest import EMAIL, TOKEN


def test_zendesk_emulator_process_serves_a_generated_dataset(tmp_path: Path) -> None:
    data = tmp_path / "data"
    gen = subprocess.run([SCRIPT, "generate", "--source", "zendesk", "--customers", "9", "--days", "2", "--seed", "1",
                          "--out", str(data), "--end", "2026-11-20"], capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr
    without = {k: v for k, v in os.environ.items() if k not in ("ZENDESK_EMAIL", "ZENDESK_API_TOKEN")}
    refused = subprocess.run([SCRIPT, "emulator", "zendesk", "--data", str(data), "--port", "0"],
                             capture_output=True, text=True, env=without, timeout=60)
    assert refused.returncode == 2 and "ZENDESK_EMAIL" in refused.stdout + refused.stderr
    proc, url = _start(["emulator", "zendesk", "--data", str(data)], {"ZENDESK_EMAIL": EMAIL, "ZENDESK_API_TOKEN": TOKEN})
    try:
        page = httpx.get(f"{url}/api/v2/incremental/tickets/cursor.json", params={"start_time": 0},
                         auth=(f"{EMAIL}/token", TOKEN)).json()
        assert page["tickets"] and page["end_of_stream"] is True
        assert httpx.get(f"{url}/api/v2/users/me.json", auth=(f"{EMAIL}/token", "wrong")).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)
