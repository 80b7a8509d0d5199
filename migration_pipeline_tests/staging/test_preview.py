"""`migration-pipeline split-preview`, run as a process on a staged database: current rules vs a
candidate rules file, a merged customer's timelines, and clear errors."""

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from migration_pipeline.lib.split_rules import SplitRules
from migration_pipeline.lib.staging.db import customer_lookups, now_text, tickets, utc_text
from migration_pipeline.lib.staging.preview import moved_items, preview, timeline_items
from migration_pipeline.lib.staging.tickets import split_window
from migration_pipeline_tests.staging.test_tickets import T0, _db, _items

SCRIPT = str(Path(sys.executable).with_name("migration-pipeline"))


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, "split-preview", *args], capture_output=True, text=True, timeout=120)


def _staged(tmp_path):
    rows = _items(seed=3, conversations=4, per=40)
    url = f"sqlite:///{tmp_path / 'staging.db'}"
    db = _db(url, rows)
    # cust9 was merged into cust1: its items belong to cust1's preview
    with db.begin() as conn:
        db.upsert(conn, customer_lookups, [{"customer_id": "cust9", "status": "moved", "moved_to": "cust1",
                                            "surviving_id": "cust1", "profile": None, "fetched_at": now_text()}])
        conn.execute(sa.text("update stg_conversation_items set customer_id = 'cust9' where source_id like 'it01%'"))
    return db, url, rows


def test_preview_compares_current_and_candidate_rules_and_writes_nothing(tmp_path):
    db, url, rows = _staged(tmp_path)
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text("version: 3\nrules:\n  time_gap: {days: 1}\n  channel_switch: {enabled: true}\n")
    proc = _run("--customer", "cust1", "--rules", str(candidate), "--staging-url", url)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    current, cand = SplitRules.load(), SplitRules.load(candidate)
    assert f"current rules {current.rule_version}" in out and f"candidate rules {cand.rule_version}" in out
    assert "conv01" in out  # the merged-away profile's conversation is in the surviving customer's preview
    # the figures printed are the engine's own
    timelines = timeline_items(db, "cust1", None)
    a, b = preview(timelines, current), preview(timelines, cand)
    total_a, total_b = sum(len(p.tickets) for p in a), sum(len(p.tickets) for p in b)
    assert total_b > total_a
    assert f"current {total_a} tickets, candidate {total_b} tickets; {moved_items(a, b)} items" in out
    assert "channel_switch" in out and "time_gap" in out
    assert db.count(tickets) == 0  # a preview cuts nothing
    db.dispose()


def test_preview_of_one_conversation_lists_items_and_counts_tickets_already_cut(tmp_path):
    db, url, rows = _staged(tmp_path)
    split_window(db, utc_text(T0), utc_text(T0 + timedelta(days=31)), SplitRules.load())
    proc = _run("--conversation", "conv02", "--items", "--staging-url", url)
    assert proc.returncode == 0, proc.stderr
    assert "conv02: 40 items" in proc.stdout and "already cut in staging" in proc.stdout
    assert "it02000" in proc.stdout and "it03000" not in proc.stdout
    db.dispose()


def test_preview_errors_are_clear(tmp_path):
    db, url, _ = _staged(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 3\nrules:\n  time_gap: {days: 0}\n")
    proc = _run("--customer", "cust1", "--rules", str(bad), "--staging-url", url)
    assert proc.returncode != 0 and "rules.time_gap.days" in proc.stderr
    proc = _run("--staging-url", url)
    assert proc.returncode != 0 and "exactly one of --customer or --conversation" in proc.stderr
    proc = _run("--customer", "nobody", "--staging-url", url)
    assert proc.returncode == 1 and "no staged items for customer nobody" in proc.stdout
    db.dispose()
