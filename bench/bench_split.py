"""Benchmark ticket splitting on ~1,000,000 generated items against the reference rule.

    python bench/bench_split.py [--items 1000000] [--work /tmp/bench-split] [--dataset DIR]

Generates a dataset with the project's generator, stages its conversation items into a SQLite
staging database (only the columns the splitter reads; not timed), then runs, each in its own
process so peak memory (ru_maxrss) is its own:

- reference: the straightforward time-gap rule — load every item of the staging table into
  memory, sort, loop — keeping its groups in memory only;
- ours: `split_window` over the whole range, as the split_tickets asset runs it, under the pure
  time-gap rules (7 days): streamed one timeline at a time and written back (tickets and every
  item's ticket, committed in batches);
- engine: ours without writing, the same input and output as the reference;
- ours (shipped rules): the same with the shipped rules file (reopen, size cap), for scale.

The tickets of `ours` and `reference` must be identical (compared by a digest of every ticket's
item set). Prints one JSON summary line: items/s, peak RSS and the ratios ours/reference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GAP = timedelta(days=7)
LO, HI = "2000-01-01T00:00:00.000000Z", "2100-01-01T00:00:00.000000Z"


class Digest:
    """Order-independent digest of a partition of items into tickets, built one ticket at a
    time (a sum of per-ticket hashes), so computing it costs no memory."""

    def __init__(self) -> None:
        self.value, self.tickets = 0, 0

    def add(self, members) -> None:
        self.value = (self.value + int.from_bytes(hashlib.sha256(",".join(sorted(members)).encode()).digest()[:8])) % 2**64
        self.tickets += 1

    def hex(self) -> str:
        return f"{self.value:016x}:{self.tickets}"


def digest(groups) -> str:
    d = Digest()
    for group in groups:
        d.add(group)
    return d.hex()


# -- the two contenders (each run in a child process) ---------------------------------------
def run_reference(url: str) -> dict:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    started = time.perf_counter()
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select coalesce(conversation_id, 'activity:' || customer_id) as k, ts, source_id from stg_conversation_items"
        )).all()
    items = [(k, datetime.fromisoformat(ts), source_id) for k, ts, source_id in rows]
    items.sort()
    groups: list[list[str]] = []
    last_key, last_ts = None, None
    for key, ts, source_id in items:
        if key != last_key or ts - last_ts > GAP:
            groups.append([])
        groups[-1].append(source_id)
        last_key, last_ts = key, ts
    wall = time.perf_counter() - started
    return {"items": len(items), "tickets": len(groups), "wall_s": wall, "digest": digest(groups)}


def run_ours(url: str, shipped_rules: bool) -> dict:
    from migration_pipeline.core.split_rules import SplitRules
    from migration_pipeline.staging.db import StagingDatabase
    from migration_pipeline.staging.tickets import split_window

    rules = SplitRules.load() if shipped_rules else SplitRules.time_gap_only(GAP)
    db = StagingDatabase(url)
    started = time.perf_counter()
    counts = split_window(db, LO, HI, rules)
    wall = time.perf_counter() - started
    return {"items": counts.items_assigned, "tickets": counts.tickets_created, "wall_s": wall,
            "peak_rss_mb_before_digest": _rss_mb()}


def run_engine(url: str) -> dict:
    """Ours without persistence: the same input and output as the reference (what split-preview
    runs): timelines streamed from staging in the database's order, cut by `assign_items`."""
    from migration_pipeline.core.split_rules import SplitRules
    from migration_pipeline.core.splitting import assign_items
    from migration_pipeline.staging.db import StagingDatabase
    from migration_pipeline.staging.tickets import unassigned_timelines

    rules = SplitRules.time_gap_only(GAP)
    db = StagingDatabase(url)
    started = time.perf_counter()
    result, items = Digest(), 0
    with db.engine.connect() as conn:
        for timeline in unassigned_timelines(conn, LO, HI):
            spans, assignments = assign_items(timeline.key, [], timeline.items, rules)
            members: dict[str, list[str]] = {}
            for item_id, ticket_id in assignments:
                members.setdefault(ticket_id, []).append(item_id)
            for group in members.values():
                result.add(group)
            items += len(assignments)
    wall = time.perf_counter() - started
    return {"items": items, "tickets": result.tickets, "wall_s": wall, "digest": result.hex()}


def ours_digest(url: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    groups: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for item_id, ticket_id in conn.execute(sa.text("select item_id, ticket_id from ticket_items")):
            groups.setdefault(ticket_id, []).append(item_id)
    return digest(groups.values())


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def child(argv: list[str]) -> None:
    mode, url = argv
    if mode == "reference":
        result = run_reference(url)
    elif mode == "engine":
        result = run_engine(url)
    else:
        result = run_ours(url, mode == "shipped")
    result["peak_rss_mb"] = _rss_mb()
    print(json.dumps(result))


def in_child(mode: str, url: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, url], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- setup ------------------------------------------------------------------------------------
def prepare(work: Path, items: int, dataset: Path | None = None) -> tuple[Path, int]:
    """Generate (once per size, unless a dataset is given) and stage the items' splitter columns
    into a template database."""
    from bench_generate import customers_for

    from migration_pipeline.synth.generator import generate

    dataset = dataset or work / f"dataset-{items}"
    template = work / f"staged-{items}.db"
    if not template.exists():
        if not dataset.exists():
            generate(dataset, customers=customers_for(items, 25.0), days=30, seed=0, end=date(2025, 1, 15),
                     items_per_customer=25.0)
        stage_minimal(dataset, template)
    import sqlite3

    with sqlite3.connect(template) as conn:
        count = conn.execute("select count(*) from stg_conversation_items").fetchone()[0]
    return template, count


def stage_minimal(dataset: Path, path: Path) -> None:
    import sqlite3

    from migration_pipeline.sources.gladly.parse import RecordError, parse_item
    from migration_pipeline.staging.db import StagingDatabase, utc_text

    db = StagingDatabase(f"sqlite:///{path}")
    db.create_schema()
    db.dispose()
    seen: set[str] = set()
    conn = sqlite3.connect(path)
    for file in sorted(dataset.rglob("conversation_items*.jsonl")):
        batch = []
        with file.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    item = parse_item(json.loads(line))
                except (RecordError, ValueError):
                    continue
                if item.source_id in seen:
                    continue
                seen.add(item.source_id)
                payload = json.dumps({"content": item.payload.get("content") or {}}) if item.kind in (
                    "TOPIC_CHANGE", "CONVERSATION_STATUS_CHANGE") else "{}"
                batch.append((item.source_id, item.customer_id, item.conversation_id, utc_text(item.timestamp),
                              item.kind, item.author_type, item.channel, "[]", payload, "bench", file.name, 0, "-"))
        conn.executemany(
            "insert into stg_conversation_items (source_id, customer_id, conversation_id, ts, kind, author_type, "
            "channel, attachments, payload, job_id, file_name, line_no, staged_at) values "
            "(?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
        conn.commit()
    conn.close()


def fresh_copy(template: Path, name: str) -> str:
    import shutil

    target = template.with_name(f"{template.stem}-{name}.db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1:])
        return {}
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-split"))
    ap.add_argument("--dataset", type=Path, help="a dataset written by bench_generate.py (else one is generated)")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    template, items = prepare(args.work, args.items, args.dataset)
    print(f"  {items:,} staged items ready in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)

    reference = in_child("reference", fresh_copy(template, "reference"))
    ours_url = fresh_copy(template, "ours")
    ours = in_child("ours", ours_url)
    ours["digest"] = ours_digest(ours_url)
    engine = in_child("engine", fresh_copy(template, "engine"))
    shipped = in_child("shipped", fresh_copy(template, "shipped"))
    summary = {
        "items": items,
        "reference_items_per_s": round(items / reference["wall_s"]),
        "reference_peak_rss_mb": reference["peak_rss_mb"],
        "ours_items_per_s": round(items / ours["wall_s"]),
        "ours_peak_rss_mb": ours["peak_rss_mb"],
        "speed_ratio_ours_over_reference": round(reference["wall_s"] / ours["wall_s"], 2),
        "memory_ratio_ours_over_reference": round(ours["peak_rss_mb"] / reference["peak_rss_mb"], 2),
        "tickets_reference": reference["tickets"],
        "tickets_ours": ours["tickets"],
        "identical_tickets": reference["digest"] == ours["digest"] == engine["digest"],
        "engine_items_per_s": round(items / engine["wall_s"]),
        "engine_peak_rss_mb": engine["peak_rss_mb"],
        "engine_speed_ratio_over_reference": round(reference["wall_s"] / engine["wall_s"], 2),
        "engine_memory_ratio_over_reference": round(engine["peak_rss_mb"] / reference["peak_rss_mb"], 2),
        "shipped_rules_items_per_s": round(items / shipped["wall_s"]),
        "shipped_rules_tickets": shipped["tickets"],
        "shipped_rules_peak_rss_mb": shipped["peak_rss_mb"],
        "note": "ours = the split_tickets path (streams from staging, writes tickets back); engine = ours "
                "without writes, same input/output as the reference (load all, sort, loop, result in memory)",
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
