"""Zendesk full JSON export -> Gladly import files, ~1,000,000 comments, ours against the reference.

    python bench/bench_zendesk_import.py [--comments 1000000] [--cache DIR] [--work DIR] [--profile ours]

The dataset: `sim.synth.zendesk.generate` with comments embedded in the ticket lines (the export as
handed over: NDJSON tickets.json with `comments`, users.json, organizations.json, with the
generator's planted mess: truncated lines, a ticket without id, requesters without email, invalid
emails, private notes, HTML with links, a 40,000-character body, long subjects ...). Customers are
scaled so the export holds about `--comments` comments (the manifest's counts.comments, reported).
Generated once per size into `<cache>/zendesk-<N>/` (default bench/.cache) and reused; the
generation time is measured apart and is in neither side's figures.

Each side runs in its own process (its peak RSS, ru_maxrss, is its own), on a warm page cache:
- ours: the pipeline's path over the whole range in one run: `ZendeskArchive.archive_from_landing`
  (the three files landed in a landing folder: copied, sha256-checked), `stage_delivery` into a
  SQLite staging database in the pair's namespace ("zendesk_to_gladly", window = every day of the
  export), then `write_range` over the same days (rules: the packaged import_rules.yaml; HTML
  bodies rendered by one worker process per CPU, as the asset does by default: its peak RSS is
  this process's or, while writing, this process's and its workers' summed, see `TreeRss`);
- reference: what a user writes first: pandas `read_json(lines=True)` of tickets.json and
  users.json (lines that are not JSON dropped first: read_json refuses the whole file otherwise;
  the time that takes is reported), the requesters' email, name and phone merged in, the comments
  exploded, the same row mapping (the body through shaping's `comment_content`, the title, email
  and skip rules as shaping applies them, the writer's reject reasons, title cut and body split
  through import_files' public helpers), sorted, `to_csv` per 500,000 rows, and rejected.csv;
- floor: only what neither can avoid: json.loads of every ticket line and `comment_content` of
  every comment, nothing kept or written (how much of each side is the shared rendering cost).

The reference holds the whole export in memory (about 24 GB at 1M comments): past 85% of the
memory available (`--memory-cap-mb`) it is stopped and reported as not finished, not left to the
kernel's OOM killer; ours' figures stand alone then.

Same rows: the (timestamp, title, body, customer email) cells of every data row of both sides'
batch files, read back with Python's csv module, as a sorted list of digests (a multiset); and the
rejected (item id, reason) pairs. Prints figures and one JSON summary line (also written to
bench/results/). Figures, not assertions.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import hashlib
import importlib.util
import io
import json
import os
import pstats
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _common import last_json, run_json  # noqa: E402

# Comments per customer of the generator at days=30, tickets_per_customer=1.5: customers = N / this
# (measured: 12,662 comments for 2,000 customers; --comments 100000 gives 99,131, 1000000 985,142).
COMMENTS_PER_CUSTOMER = 6.33
DAYS, SEED, END = 30, 0, date(2025, 1, 15)
NAMESPACE = "zendesk_to_gladly"
EXPORT_FILES = ("tickets.json", "users.json", "organizations.json")
COMPARED = (0, 1, 2, 4)  # timestamp, title, body, customer email in the batch files' column order


# -- the dataset --------------------------------------------------------------------------------
def dataset_for(n: int, cache: Path) -> tuple[Path, dict, float | None]:
    """The cached dataset of about `n` comments (generated when absent): folder, manifest, and
    the generation's wall seconds (None when reused)."""
    from sim.synth.zendesk import MIN_CUSTOMERS, generate

    folder = cache / f"zendesk-{n}"
    if (folder / "manifest.json").is_file():
        return folder, json.loads((folder / "manifest.json").read_text(encoding="utf-8")), None
    cache.mkdir(parents=True, exist_ok=True)
    ignore = cache / ".gitignore"  # generated data never belongs in the repository
    if not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    tmp = cache / f".zendesk-{n}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    customers = max(MIN_CUSTOMERS, round(n / COMMENTS_PER_CUSTOMER))
    started = time.perf_counter()
    manifest = generate(tmp, customers=customers, days=DAYS, seed=SEED, end=END, export_comments="embedded")
    wall = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder, manifest, wall


def export_dir(dataset: Path) -> Path:
    from sim.synth.zendesk_dataset import ZendeskLayout

    return ZendeskLayout(dataset).plain_export("embedded", "tickets").parent


def days_of(manifest: dict) -> tuple[date, date]:
    """[first, end) UTC days holding every exported comment (the whole range, one run)."""
    days = sorted(manifest["counts"]["commentsPerDay"])
    return date.fromisoformat(days[0]), date.fromisoformat(days[-1]) + timedelta(days=1)


def warm(dataset: Path) -> None:
    """Read the export once so neither side pays for a cold page cache."""
    for name in EXPORT_FILES:
        with (export_dir(dataset) / name).open("rb") as fh:
            while fh.read(1 << 20):
                pass


# -- measuring ----------------------------------------------------------------------------------
def _rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


class TreeRss:
    """Peak of the summed RSS of this process and its descendants (the body renderer's workers),
    sampled every 20 ms from /proc while running. ru_maxrss cannot say it: a spawned child's
    peak starts at its parent's size (taken at fork, kept across exec), and children's peaks are
    not summed."""

    def __init__(self) -> None:
        import threading

        self.peak_kb, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return round(self.peak_kb / 1024, 1)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(pid) for pid in _tree(os.getpid())))


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except OSError:
                pass
    return found


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _own_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _cpu_s() -> float:
    return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


class Steps:
    """Wall seconds of named steps of one side."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 2)
        self._last = now


# -- ours ---------------------------------------------------------------------------------------
def run_ours(dataset: Path, work: Path) -> dict:
    from migration_pipeline.lib.staging.db import StagingDatabase
    from migration_pipeline.pairs.zendesk_to_gladly.bodies import MIN_PARALLEL, render_workers
    from migration_pipeline.pairs.zendesk_to_gladly.shaping import load_import_rules, write_range
    from migration_pipeline.vendors.zendesk.archive import ZendeskArchive
    from migration_pipeline.vendors.zendesk.staging import stage_delivery

    manifest = json.loads((dataset / "manifest.json").read_text(encoding="utf-8"))
    lo, hi = days_of(manifest)
    window = (datetime.combine(lo, datetime.min.time(), UTC), datetime.combine(hi, datetime.min.time(), UTC))
    landing = work / "data" / "landing" / "zendesk"
    landing.mkdir(parents=True)
    for name in EXPORT_FILES:  # the drop, as handed over (hard links: landing it is not measured)
        _link_or_copy(export_dir(dataset) / name, landing / name)
    # pyarrow imports pandas on its first array when pandas is installed (the bench extra installs
    # it; a production install does not): done before the clock starts, as the reference's import is.
    import pyarrow

    pyarrow.array([""])

    rules = load_import_rules()
    rss_before = _rss_mb()
    wall, cpu, steps = time.perf_counter(), _cpu_s(), Steps()
    delivery = ZendeskArchive(work / "data").archive_from_landing(landing).delivery
    steps.done("archive_s")
    db = StagingDatabase(f"sqlite:///{work / 'staging.db'}", namespace=NAMESPACE)
    db.create_schema()
    counts = stage_delivery(db, delivery, window)
    steps.done("stage_s")
    # as the gladly_import_files asset runs it: bodies rendered in one worker per CPU
    workers = render_workers(0) if counts.items >= MIN_PARALLEL else 0
    with TreeRss() as tree:
        result = write_range(db, work / "out", lo, hi, rules, render_workers=0)
    steps.done("write_s")
    db.dispose()
    return {
        "wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(_cpu_s() - cpu, 2), **steps.seconds,
        "peak_rss_mb": max(_own_rss_mb(), tree.peak_mb), "rss_after_imports_mb": rss_before, "render_workers": workers,
        "write_tree_peak_rss_mb": tree.peak_mb,
        "comments_staged": counts.items, "quarantined": counts.quarantined, "items": result.items,
        "skipped_by_rule": result.skipped_by_rule, "rejected_by_reason": result.rejected_by_reason,
        "written": result.written, "rows_written": result.rows_written,
        "staging_db_mb": round(sum(p.stat().st_size for p in work.glob("staging*.db*")) / 2**20),
    }


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


# -- the reference --------------------------------------------------------------------------------
def read_ndjson(path: Path):
    """pandas' read_json(lines=True) of `path`, its lines that are not JSON dropped first (read_json
    refuses a whole file for one truncated line); returns the frame and the lines dropped."""
    import pandas as pd

    good, dropped = [], 0
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                json.loads(line)
            except ValueError:
                dropped += 1
                continue
            good.append(line)
    text = "".join(good)
    del good
    return pd.read_json(io.StringIO(text), lines=True, dtype=False, convert_dates=False), dropped


def _text(value) -> str | None:
    """A cell as str or None (pandas fills absent keys with NaN)."""
    return value if isinstance(value, str) else None


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _one_line(value) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def _sender(via) -> str:
    """The ticket's `via.source.from.address`, stripped ("" when none)."""
    source = via.get("source") if isinstance(via, dict) else None
    sender = source.get("from") if isinstance(source, dict) else None
    address = sender.get("address") if isinstance(sender, dict) else None
    return address.strip() if isinstance(address, str) else ""


def _attachments(value) -> list[dict]:
    return [{"source_id": str(a.get("id")), "filename": a.get("file_name"), "url": a.get("content_url")}
            for a in _list(value)]


def run_reference(dataset: Path, work: Path) -> dict:
    import pandas as pd

    from migration_pipeline.pairs.zendesk_to_gladly.shaping import comment_content, load_import_rules
    from migration_pipeline.vendors.gladly.import_files import (
        EMPTY_BODY,
        GLADLY_MAX_BODY,
        GLADLY_MAX_ROWS_PER_FILE,
        GLADLY_MAX_TITLE,
        INVALID_EMAIL,
        INVALID_TEXT,
        MISSING_EMAIL,
        ColumnNames,
        ImportFileConfig,
        cut_title,
        fits,
        is_valid_email,
        join_tags,
        split_body,
        utf16_len,
    )

    rules = load_import_rules()
    rss_before = _rss_mb()
    wall, cpu, steps = time.perf_counter(), _cpu_s(), Steps()
    export = export_dir(dataset)
    tickets, bad_ticket_lines = read_ndjson(export / "tickets.json")
    users, bad_user_lines = read_ndjson(export / "users.json")
    steps.done("read_s")

    # tickets a record needs an id and a requester for; each requester's email, name and phone
    tickets = tickets.dropna(subset=["id", "requester_id"]).astype({"id": "int64", "requester_id": "int64"})
    people = users.dropna(subset=["id"]).astype({"id": "int64"})[["id", "email", "name", "phone"]]
    tickets = tickets.merge(people.rename(columns={"id": "requester_id"}), on="requester_id", how="left")
    status = tickets["status"].fillna("").str.lower()
    spam = status.isin({s.lower() for s in rules.skip.spam.statuses}) | tickets["tags"].map(
        lambda tags: any(str(t).lower() in {x.lower() for x in rules.skip.spam.tags} for t in _list(tags)))
    tickets["email"] = [(e.strip() if isinstance(e, str) else "") or _sender(v) or None
                        for e, v in zip(tickets["email"], tickets["via"], strict=True)]
    tickets["junk"] = tickets["email"].map(lambda e: bool(isinstance(e, str) and rules.skip.junk_customers.match(e)))
    tickets["spam"] = spam
    tickets["title"] = [_one_line(s if isinstance(s, str) else None) or rules.untitled.format(ticket=i)
                        for s, i in zip(tickets["subject"], tickets["id"], strict=True)]
    tickets["tags"] = tickets["tags"].map(lambda tags: join_tags([str(t) for t in _list(tags)]))
    tickets["name"] = tickets["name"].map(lambda n: _one_line(n if isinstance(n, str) else None) or None)
    tickets["phone"] = tickets["phone"].map(lambda p: p.strip() or None if isinstance(p, str) else None)
    rows = tickets[["id", "title", "email", "name", "phone", "tags", "spam", "junk", "comments"]].explode("comments")
    del tickets, users, people
    rows = rows[rows["comments"].notna()].reset_index(drop=True)
    comments = pd.DataFrame(rows.pop("comments").tolist())
    steps.done("frame_s")

    # the row mapping (shaping.py): body, private label, skip rules
    private = ~comments["public"].eq(True)  # absent or not true: private (canonical.py)
    call = comments["type"].eq("VoiceComment")
    content = [
        comment_content(None if c else _text(h), _text(p) if isinstance(p, str) else _text(b), _attachments(a), rules)
        for h, p, b, a, c in zip(comments["html_body"], comments["plain_body"], comments["body"], comments["attachments"],
                                 call, strict=True)
    ]
    rows["body"] = [f"{rules.private_notes.label}\n\n{t}" if t and p else t for t, p in zip(content, private, strict=True)]
    rows["says"] = [bool(t) for t in content]
    rows["source_item_id"] = comments["id"].astype("int64").astype(str)
    rows["ts"] = pd.to_datetime(comments["created_at"], utc=True)
    del comments, content
    steps.done("bodies_s")
    empty = ~rows.groupby("id")["says"].transform("any")
    skip_private = rules.private_notes.mode == "skip"
    rule = pd.Series(None, index=rows.index, dtype=object)
    rule[empty.astype(bool)] = "empty_conversation"  # the last assignment wins: the first rule that applies
    if skip_private:
        rule[private.astype(bool)] = "private_note"
    rule[rows["junk"].astype(bool)] = "junk_customer"
    rule[rows["spam"].astype(bool)] = "spam"
    skipped = rule.value_counts().to_dict()
    rows = rows[rule.isna()]

    # the writer's rules: reject reasons (first that applies), title cut, long bodies split
    email = rows["email"].fillna("").str.strip()
    surrogate = r"[\ud800-\udfff]"
    bad_text = rows["body"].str.contains(surrogate) | rows["title"].str.contains(surrogate) | \
        rows["name"].fillna("").str.contains(surrogate) | rows["tags"].str.contains(surrogate)
    reason = pd.Series(None, index=rows.index, dtype=object)  # the last assignment wins, as above
    reason[bad_text.astype(bool)] = INVALID_TEXT
    reason[rows["body"].str.strip() == ""] = EMPTY_BODY
    reason[(email != "") & ~email.map(is_valid_email)] = INVALID_EMAIL
    reason[email == ""] = MISSING_EMAIL
    rows = rows.assign(reason=reason, email=email)
    rows = rows.sort_values(["ts", "source_item_id"])  # as ours orders them (ts, id)
    rows["ts"] = rows["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:23] + "Z"
    rejected = rows[rows["reason"].notna()]
    ok = rows[rows["reason"].isna()].copy()
    del rows
    marker = ImportFileConfig().continuation_marker

    def cells(title: str, body: str) -> list[tuple[str, str]]:
        """(title, body) of each row an item becomes: the writer's title cut and body split."""
        if fits(body, GLADLY_MAX_BODY):
            return [(cut_title(title, GLADLY_MAX_TITLE)[0], body)]
        parts = split_body(body, GLADLY_MAX_BODY)
        n = len(parts)
        base = cut_title(title, GLADLY_MAX_TITLE - utf16_len(marker.format(part=n, parts=n)))[0]
        return [((base + marker.format(part=k, parts=n)).lstrip(), part) for k, part in enumerate(parts, 1)]

    ok["cells"] = [cells(t, b) for t, b in zip(ok["title"], ok["body"], strict=True)]
    ok = ok.explode("cells")
    ok["title"], ok["parts"] = ok["cells"].str[0], ok["cells"].str[1]
    ok["source"] = rules.source
    steps.done("rules_s")

    out = work / "out"
    out.mkdir(parents=True)
    columns = ["ts", "title", "parts", "source", "email", "name", "phone", "tags"]
    files = 0
    for files, start in enumerate(range(0, len(ok), GLADLY_MAX_ROWS_PER_FILE), 1):
        ok.iloc[start:start + GLADLY_MAX_ROWS_PER_FILE][columns].to_csv(
            out / f"reference-{files:04d}.csv", index=False, header=ColumnNames().header(), quoting=csv.QUOTE_NONNUMERIC,
            lineterminator="\n")
    rejected[["source_item_id", "reason"]].to_csv(out / "rejected.csv", index=False, lineterminator="\n")
    steps.done("csv_s")
    return {
        "wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(_cpu_s() - cpu, 2), **steps.seconds,
        "peak_rss_mb": _rss_mb(), "rss_after_imports_mb": rss_before,
        "dropped_lines": {"tickets.json": bad_ticket_lines, "users.json": bad_user_lines},
        "items": len(empty), "skipped_by_rule": dict(sorted(skipped.items())),
        "rejected_by_reason": dict(sorted(rejected["reason"].value_counts().to_dict().items())),
        "written": int(ok.index.nunique()), "rows_written": len(ok), "files": files,
    }


# -- the floor ------------------------------------------------------------------------------------
def run_floor(dataset: Path, work: Path) -> dict:
    """The work no way round avoids: every ticket line parsed (json.loads) and every comment's body
    rendered (`comment_content`); nothing kept, nothing written. Both sides pay at least this."""
    from migration_pipeline.pairs.zendesk_to_gladly.shaping import comment_content, load_import_rules

    rules = load_import_rules()
    rss_before = _rss_mb()
    wall, cpu, steps = time.perf_counter(), _cpu_s(), Steps()
    comments = chars = 0
    with (export_dir(dataset) / "tickets.json").open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                ticket = json.loads(line)
            except ValueError:
                continue
            for c in ticket.get("comments") or ():
                text = c.get("plain_body") if c.get("plain_body") is not None else c.get("body")
                html = None if c.get("type") == "VoiceComment" else c.get("html_body")
                chars += len(comment_content(html, text, _attachments(c.get("attachments")), rules))
                comments += 1
    steps.done("render_s")
    return {"wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(_cpu_s() - cpu, 2), "peak_rss_mb": _rss_mb(),
            "rss_after_imports_mb": rss_before, "items": comments, "body_chars": chars}


# -- comparing --------------------------------------------------------------------------------------
def rows_digest(paths: list[Path], keep: tuple[int, ...]) -> tuple[str, int]:
    """sha256 over the sorted digests of the data rows of `paths` (the cells at `keep`): the same
    multiset of rows gives the same digest, whatever their order or file; and the row count."""
    digests = []
    for path in paths:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, strict=True)
            next(reader)
            for row in reader:
                digests.append(hashlib.sha1("\x1f".join(row[k] for k in keep).encode("utf-8", "surrogatepass")).digest())
    digests.sort()
    return hashlib.sha256(b"".join(digests)).hexdigest(), len(digests)


def compare(ours: Path, reference: Path) -> dict:
    o_rows, o_n = rows_digest(sorted(ours.glob("gladly-import-*.csv")), COMPARED)
    r_rows, r_n = rows_digest(sorted(reference.glob("reference-*.csv")), COMPARED)
    o_rej, o_rej_n = rows_digest([ours / "rejected.csv"], (0, 1))
    r_rej, r_rej_n = rows_digest([reference / "rejected.csv"], (0, 1))
    return {"identical_rows": o_rows == r_rows, "rows_ours": o_n, "rows_reference": r_n,
            "identical_rejects": o_rej == r_rej, "rejects_ours": o_rej_n, "rejects_reference": r_rej_n}


# -- driver ---------------------------------------------------------------------------------------
SIDES = {"ours": run_ours, "reference": run_reference, "floor": run_floor}


def child(side: str, dataset: Path, work: Path, profile: bool) -> int:
    if not profile:
        print(json.dumps(SIDES[side](dataset, work)))
        return 0
    profiler = cProfile.Profile()
    result = profiler.runcall(SIDES[side], dataset, work)
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(45)
    print(json.dumps({**result, "profiled": True}))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--comments", "--items", type=int, default=1_000_000, dest="comments")
    ap.add_argument("--cache", type=Path, default=HERE / ".cache", help="generated datasets, one per size, reused")
    ap.add_argument("--work", type=Path, help="scratch for both sides' outputs (default: a temp folder, removed)")
    ap.add_argument("--sides", default="ours,reference,floor", help="floor: parsing and rendering only (no output)")
    ap.add_argument("--profile", choices=tuple(SIDES), help="run that side under cProfile (its figures are then slower)")
    ap.add_argument("--memory-cap-mb", type=float, help="stop the reference past this RSS (default: 85%% of the "
                    "memory available); its figures are then reported as not finished")
    ap.add_argument("--child", choices=tuple(SIDES), help=argparse.SUPPRESS)
    ap.add_argument("--dataset", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.dataset, args.work, args.profile == args.child)

    dataset, manifest, generated_s = dataset_for(args.comments, args.cache)
    comments = manifest["counts"]["comments"]
    export_mb = round(sum((export_dir(dataset) / n).stat().st_size for n in EXPORT_FILES) / 2**20)
    print(f"dataset {dataset}: {comments:,} comments in {manifest['counts']['tickets']:,} tickets, "
          f"{manifest['counts']['users']:,} users, {export_mb} MB of export "
          + (f"(generated in {generated_s:.0f} s)" if generated_s else "(cached)"), flush=True)
    warm(dataset)
    scratch = args.work or Path(tempfile.mkdtemp(prefix="bench-zendesk-import-"))
    results: dict[str, dict] = {}
    missing: dict[str, str] = {}
    try:
        for side in args.sides.split(","):
            work = scratch / side
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            if side == "reference" and importlib.util.find_spec("pandas") is None:
                missing[side] = "pandas is not installed: pip install -e '.[bench]' (make bench does)"
                print(f"  {side}: NOT RUN, {missing[side]}", flush=True)
                continue
            command = [sys.executable, __file__, "--child", side, "--dataset", str(dataset), "--work", str(work)]
            if args.profile:
                command += ["--profile", args.profile]
            if args.profile == side:
                proc_result = _run_profiled(command)
            elif side == "reference":  # it holds the whole export: at 1M comments about 24 GB
                proc_result, stop = run_capped(command, args.memory_cap_mb or memory_cap_mb(),
                                               "--memory-cap-mb" if args.memory_cap_mb else "85% of the memory available")
                if stop:
                    missing[side] = stop
                    print(f"  {side}: NOT FINISHED, {stop}", flush=True)
                    continue
            else:
                proc_result = run_json(command)
            if proc_result is None:
                print(f"  {side}: FAILED", flush=True)
                return 1
            results[side] = r = proc_result
            print(f"  {side}: {comments:,} comments in {r['wall_s']} s = {comments / r['wall_s']:,.0f} comments/s "
                  f"({comments / r['cpu_s']:,.0f} per CPU s), peak RSS {r['peak_rss_mb']} MB "
                  f"({r['rss_after_imports_mb']} MB after imports); "
                  + (f"{r['written']:,} written, {sum(r['rejected_by_reason'].values()):,} rejected, "
                     f"{sum(r['skipped_by_rule'].values()):,} skipped; " if "written" in r else "")
                  + ", ".join(f"{k} {v}" for k, v in r.items() if k.endswith("_s") and k not in ("wall_s", "cpu_s")),
                  flush=True)
        same = compare(scratch / "ours" / "out", scratch / "reference" / "out") if {"ours", "reference"} <= set(results) else {}
    finally:
        if args.work is None:
            shutil.rmtree(scratch, ignore_errors=True)
    summary: dict = {"comments": comments, "tickets": manifest["counts"]["tickets"], "export_mb": export_mb,
                     "generation_s": round(generated_s, 1) if generated_s else None, **same,
                     **{f"{side}_not_run": why for side, why in missing.items()}}
    for side, r in results.items():
        summary[f"{side}_comments_per_s"] = round(comments / r["wall_s"])
        summary[f"{side}_comments_per_cpu_s"] = round(comments / r["cpu_s"])
        summary[f"{side}_peak_rss_mb"] = r["peak_rss_mb"]
        summary[side] = r
    if {"ours", "reference"} <= set(results):
        ours, ref = results["ours"], results["reference"]
        summary["speed_ratio"] = round(ref["wall_s"] / ours["wall_s"], 2)
        summary["cpu_ratio"] = round(ref["cpu_s"] / ours["cpu_s"], 2)
        summary["memory_ratio"] = round(ours["peak_rss_mb"] / ref["peak_rss_mb"], 2)
        summary["same_counts"] = all(ours[k] == ref[k] for k in ("items", "skipped_by_rule", "rejected_by_reason", "written",
                                                                  "rows_written"))
        print(f"ours/reference: speed x{summary['speed_ratio']} (wall), x{summary['cpu_ratio']} (CPU), "
              f"peak RSS x{summary['memory_ratio']}; identical rows: {same.get('identical_rows')} "
              f"({same.get('rows_ours'):,} / {same.get('rows_reference'):,}), identical rejects: {same.get('identical_rejects')}")
    if "floor" in results:
        for side in ("ours", "reference"):
            if side in results:  # the share of a side's time the floor (parse + render) accounts for
                summary[f"floor_share_of_{side}"] = round(results["floor"]["wall_s"] / results[side]["wall_s"], 2)
    summary["note"] = ("speed/cpu ratio = reference seconds / ours (>1: ours faster); memory ratio = ours / reference "
                       "peak RSS (<1: ours lighter); generation not counted; identical_rows: the sorted multiset of "
                       "(timestamp, title, body, email) of every batch row, read back with the csv module")
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / f"zendesk_import-{comments}-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    not_finished = {side for side, why in missing.items() if why.startswith("stopped at")}
    return 1 if set(missing) - not_finished or (same and not (same["identical_rows"] and same["identical_rejects"])) else 0


def memory_cap_mb() -> float:
    """85% of the memory available now: a side that would need more is stopped, not left to the
    kernel's OOM killer (which may pick another process of the machine)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return round(int(line.split()[1]) * 0.85 / 1024)
    return float("inf")


def run_capped(command: list[str], cap_mb: float, cap_is: str) -> tuple[dict | None, str | None]:
    """run_json, the child stopped when its RSS passes `cap_mb`: (its JSON, None), (None, why it
    was stopped) or (None, None) when it failed."""
    import subprocess
    import threading

    out = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, text=True)
    stopped: list[str] = []

    def watch() -> None:
        while proc.poll() is None:
            rss = _rss_kb(proc.pid) / 1024
            if rss > cap_mb:
                stopped.append(f"stopped at {rss:,.0f} MB of RSS, past the {cap_mb:,.0f} MB cap ({cap_is})")
                proc.kill()
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    err = proc.stderr.read() if proc.stderr else ""
    proc.wait()
    watcher.join()
    if stopped:
        return None, stopped[0]
    out.seek(0)
    return last_json(out.read(), proc.returncode, err), None


def _run_profiled(command: list[str]) -> dict | None:
    """run_json, with the child's profile (its stderr) shown."""
    import subprocess

    proc = subprocess.run(command, capture_output=True, text=True)
    sys.stderr.write(proc.stderr)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if proc.returncode == 0 and lines else None


if __name__ == "__main__":
    raise SystemExit(main())
