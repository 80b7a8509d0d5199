"""Benchmark ticket splitting on ~1,000,000 generated items against the reference rule.

    python bench/bench_split.py [--items 1000000] [--work /tmp/bench-split] [--dataset DIR]

Generates a dataset with the project's generator, stages its conversation items into a SQLite
staging database (only the columns the splitter reads; not timed), then runs, each in its own
process so peak memory (ru_maxrss) is its own:

- reference: the straightforward time-gap rule — load every item of the staging table into
  memory, sort, loop — keeping its groups in memory (taken in turns with the engine, `--repeat`
  times each; the medians count);
- engine: ours with the same input and output: timelines streamed from staging (one covering
  index, no row lookups) and cut by `TimelineCutter.cut_staged`, groups kept in memory;
- reference persisted: the reference, then writing its tickets and every item's ticket with
  the same bulk insert as ours, in one transaction;
- ours: `split_window` over the whole range, as the split_tickets asset runs it, under the pure
  time-gap rules (7 days): streamed and written back in committed batches;
- ours (shipped rules): the same with the shipped rules file (reopen, size cap), for scale.

All four must give identical tickets (a digest of every ticket's item set). Prints one JSON
summary line: items/s and peak RSS side by side, with the ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from itertools import groupby
from operator import itemgetter
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
    """Load all, sort, loop: the straightforward time-gap rule, its groups kept in memory."""
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
    wall, rss = time.perf_counter() - started, _rss_mb()
    return {"items": len(items), "tickets": len(groups), "wall_s": wall, "peak_rss_mb": rss, "digest": digest(groups)}


def run_reference_persisted(url: str) -> dict:
    """The same, reading the customer too, then writing its tickets and every item's ticket
    through the same bulk insert as ours, in one transaction: a complete naive split step."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    started = time.perf_counter()
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select coalesce(conversation_id, 'activity:' || customer_id) as k, ts, source_id, customer_id "
            "from stg_conversation_items"
        )).all()
    items = [(k, datetime.fromisoformat(ts), source_id, customer) for k, ts, source_id, customer in rows]
    del rows
    items.sort()
    groups: list[list[str]] = []
    last_key, last_ts = None, None
    for key, ts, source_id, _customer in items:
        if key != last_key or ts - last_ts > GAP:
            groups.append([])
        groups[-1].append(source_id)
        last_key, last_ts = key, ts
    _persist_reference(url, items, groups)
    wall, rss = time.perf_counter() - started, _rss_mb()
    return {"items": len(items), "tickets": len(groups), "wall_s": wall, "peak_rss_mb": rss}


def _persist_reference(url: str, items, groups) -> None:
    from migration_pipeline.lib.splitting import ticket_id_for
    from migration_pipeline.lib.staging.db import StagingDatabase, now_text, ticket_items, tickets, utc_text
    from migration_pipeline.lib.staging.tickets import write_rows

    db = StagingDatabase(url)
    cut_at = now_text()
    ticket_rows, item_rows, position = [], [], 0
    for members in groups:
        first, last = items[position], items[position + len(members) - 1]
        position += len(members)
        ticket_id = ticket_id_for(first[0], first[2])
        ticket_rows.append((ticket_id, first[0], first[3], utc_text(first[1]), utc_text(last[1]), first[2], len(members),
                            "reference", cut_at, "time_gap", None, None, "[]", None, None))
        item_rows.extend((item_id, ticket_id, utc_text(ts)) for _k, ts, item_id, _c in items[position - len(members):position])
    with db.begin() as conn:
        write_rows(conn, tickets, sorted(ticket_rows), update=True)
        write_rows(conn, ticket_items, sorted(item_rows))


def run_ours(url: str, shipped_rules: bool) -> dict:
    from migration_pipeline.lib.split_rules import SplitRules
    from migration_pipeline.lib.staging.db import StagingDatabase
    from migration_pipeline.lib.staging.tickets import split_window

    rules = SplitRules.load() if shipped_rules else SplitRules.time_gap_only(GAP)
    db = StagingDatabase(url)
    started = time.perf_counter()
    counts = split_window(db, LO, HI, rules)
    wall, rss = time.perf_counter() - started, _rss_mb()
    return {"items": counts.items_assigned, "tickets": counts.tickets_created, "wall_s": wall, "peak_rss_mb": rss}


def run_engine(url: str) -> dict:
    """Ours without persistence: the same input and output as the reference (what split-preview
    runs): timelines streamed from staging and cut by `TimelineCutter.cut_staged`."""
    from migration_pipeline.lib.split_rules import SplitRules
    from migration_pipeline.lib.splitting import TimelineCutter
    from migration_pipeline.lib.staging.db import StagingDatabase
    from migration_pipeline.lib.staging.tickets import KEY, unassigned_timelines

    rules = SplitRules.time_gap_only(GAP)
    db = StagingDatabase(url)
    started = time.perf_counter()
    groups: list[list[str]] = []  # the same result as the reference's
    with db.engine.connect() as conn:
        for timeline in unassigned_timelines(conn, LO, HI):
            cut = TimelineCutter(timeline[0][KEY], [], rules).cut_staged(timeline)
            # a first cut assigns each ticket a contiguous run of the timeline (else the digests differ)
            groups += ([row[0] for row in run] for _ticket, run in groupby(cut, key=itemgetter(1)))
    wall, rss = time.perf_counter() - started, _rss_mb()
    return {"items": sum(map(len, groups)), "tickets": len(groups), "wall_s": wall, "peak_rss_mb": rss,
            "digest": digest(groups)}


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
    elif mode == "reference_persisted":
        result = run_reference_persisted(url)
    elif mode == "engine":
        result = run_engine(url)
    else:
        result = run_ours(url, mode == "shipped")
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

    from sim.synth.generator import generate

    dataset = dataset or work / f"dataset-{items}"
    template = work / f"staged-v2-{items}.db"  # v2: with split_change and the timeline index
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

    from migration_pipeline.lib.splitting import encode_change
    from migration_pipeline.vendors.gladly.parse import RecordError, parse_item
    from migration_pipeline.lib.staging.db import StagingDatabase, utc_text

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
                payload = "{}"  # the splitter reads split_change, never the record
                change = encode_change(item.status_change, item.tags_added, item.tags_removed)
                batch.append((item.source_id, item.customer_id, item.conversation_id, utc_text(item.timestamp),
                              item.kind, item.author_type, item.channel, "[]", payload, "bench", file.name, 0, "-",
                              change))
        conn.executemany(
            "insert into stg_conversation_items (source_id, customer_id, conversation_id, ts, kind, author_type, "
            "channel, attachments, payload, job_id, file_name, line_no, staged_at, split_change) values "
            "(?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
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
    ap.add_argument("--repeat", type=int, default=3, help="in-memory runs of each side (the median counts)")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    template, items = prepare(args.work, args.items, args.dataset)
    print(f"  {items:,} staged items ready in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)

    # In memory: the engine against the reference, the same input (staging) and output (groups),
    # taken in turns `--repeat` times; the median run of each counts (the machine may be shared).
    in_memory_url = fresh_copy(template, "in-memory")  # neither writes
    runs = {"reference": [], "engine": []}
    for _ in range(args.repeat):
        for mode in runs:
            runs[mode].append(in_child(mode, in_memory_url))
    reference, engine = (sorted(runs[m], key=lambda r: r["wall_s"])[len(runs[m]) // 2] for m in ("reference", "engine"))
    # Persisted: the split_tickets path against the reference writing its result the same way.
    persisted_url = fresh_copy(template, "reference_persisted")
    persisted = in_child("reference_persisted", persisted_url)
    persisted["digest"] = ours_digest(persisted_url)
    ours_url = fresh_copy(template, "ours")
    ours = in_child("ours", ours_url)
    ours["digest"] = ours_digest(ours_url)
    shipped = in_child("shipped", fresh_copy(template, "shipped"))

    def side_by_side(name: str, mine: dict, theirs: dict) -> dict:
        return {
            f"{name}_items_per_s": round(items / mine["wall_s"]),
            f"{name}_peak_rss_mb": mine["peak_rss_mb"],
            f"{name}_baseline_items_per_s": round(items / theirs["wall_s"]),
            f"{name}_baseline_peak_rss_mb": theirs["peak_rss_mb"],
            f"{name}_speed_ratio": round(theirs["wall_s"] / mine["wall_s"], 2),
            f"{name}_memory_ratio": round(mine["peak_rss_mb"] / theirs["peak_rss_mb"], 2),
        }

    summary = {
        "items": items,
        **side_by_side("in_memory", engine, reference),
        **side_by_side("persisted", ours, persisted),
        "in_memory_runs_s": {m: [round(r["wall_s"], 2) for r in rs] for m, rs in runs.items()},
        "tickets": reference["tickets"],
        "identical_tickets": len({r["digest"] for rs in runs.values() for r in rs} | {persisted["digest"], ours["digest"]}) == 1,
        "shipped_rules_items_per_s": round(items / shipped["wall_s"]),
        "shipped_rules_tickets": shipped["tickets"],
        "shipped_rules_peak_rss_mb": shipped["peak_rss_mb"],
        "note": "speed ratio = baseline time / ours (>1: ours faster); memory ratio = ours / baseline peak RSS "
                "(<1: ours lighter). in_memory: ours = staging streamed and cut by the engine, baseline = the "
                "reference (load all, sort, loop); persisted: ours = the split_tickets path, baseline = the "
                "reference then writing tickets and ticket_items with the same bulk insert",
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
