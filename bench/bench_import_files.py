"""Benchmark writing Gladly import files for ~1,000,000 rows against the straightforward reference.

    python bench/bench_import_files.py [--rows 1000000] [--work /tmp/bench-import-files]

Outputs go to `<work>/import-files-<rows>/` (about 0.5 KB a row per side), removed afterwards.

The same synthetic stream of `ImportRow`s (deterministic; messy: quotes, commas, CR/LF and
non-Latin text in bodies, 2% invalid and 1% missing emails, 0.5% empty bodies, 1% titles over
100 characters, one body in 2,000 over 25,000 characters) goes, each side in its own process (so
its peak RSS, ru_maxrss, is its own), through:

- ours: `write_import_files`, streamed: batch files, rejected.csv, index.csv and the manifest;
- reference: the straightforward way: every row in a list, one pandas DataFrame, the reject
  rules as column expressions, long bodies exploded into parts, `to_csv` per 500,000 rows and
  for the rejects. It applies the same title and body rules through the module's own helpers
  (`cut_title`, `split_body`), so the comparison is the approach (all in memory + pandas vs
  streamed + pyarrow), not the text rules;
- generator only: the stream consumed and dropped, the cost both sides include.

Both outputs are read back with Python's csv module: the data rows of every batch file in order
and the rejected rows (id, reason) must be the same. Prints one JSON summary line: rows/s and peak
RSS side by side with the ratios (RSS after imports shown too: pandas and pyarrow weigh on both).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import resource
import shutil
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import run_json  # noqa: E402

from migration_pipeline.vendors.gladly.import_files import (  # noqa: E402
    EMAIL_RE,
    EMPTY_BODY,
    GLADLY_MAX_BODY,
    GLADLY_MAX_ROWS_PER_FILE,
    GLADLY_MAX_TITLE,
    INVALID_EMAIL,
    MISSING_EMAIL,
    MISSING_TIMESTAMP,
    ColumnNames,
    ImportFileConfig,
    ImportRow,
    cut_title,
    split_body,
    write_import_files,
)

FIRST, LAST = date(2025, 1, 1), date(2025, 1, 31)
START = datetime(2025, 1, 1, tzinfo=UTC)
FRAGMENTS = (
    'Hi team, my order #{n} arrived damaged. "Fragile" was printed on the box, yet it was crushed.',
    "Could you check the refund?\r\nThanks,\r\nAna",
    "Bonjour, la commande n'est pas arrivée; pouvez-vous vérifier ?",
    "ご注文ありがとうございます。配送状況を確認いたします。",
    "Здравствуйте! Посылка задерживается, подскажите, пожалуйста, сроки.",
    "Quoted reply:\n> On Monday, \"Support\" <help@example.com> wrote:\n> we are on it, sorry",
    "Price list: 10,00 €, 12,50 €, 99,99 € (VAT incl.)",
    "مرحبا، لم يصل طلبي بعد 🙏",
)


def synthetic_rows(n: int):
    """`n` deterministic rows; bodies are new strings each row (as a real source makes them)."""
    bodies = ["\n\n".join(FRAGMENTS[(k + j) % len(FRAGMENTS)] for j in range(1 + k % 6)) for k in range(101)]
    long_body = ("A very long log paste, line after line, " * 30 + "\n") * 40  # ~49,000 characters
    titles = [f"Order problem #{k}, \"urgent\"" for k in range(50)] + ["Réclamation — " + "très long sujet " * 9]
    for i in range(n):
        if i % 2000 == 1999:
            body = f"{long_body}-- ref {i}"
        elif i % 200 == 7:
            body = " \n "
        else:
            body = f"{bodies[i % 101]}\n-- ref {i}"
        if i % 100 == 3:
            email = None
        elif i % 50 == 11:
            email = f"user{i}.example.com"
        else:
            email = f"user{i % 50_000}@example{i % 7}.com"
        yield ImportRow(
            source_item_id=f"zd-{i}", timestamp=START + timedelta(seconds=2 * i), title=titles[i % len(titles)],
            body=body, source="Zendesk", customer_email=email, customer_name=f"Customer {i % 50_000}",
            customer_phone=None if i % 3 else f"+1555{i % 10_000_000:07d}", tags=("vip", "billing") if i % 4 else (),
        )


# -- the contenders (each in a child process) ------------------------------------------------
class Measured:
    """Wall and CPU seconds of a block, and the process's RSS before it and at its peak."""

    def __enter__(self) -> Measured:
        self.rss_before, self.wall, self.cpu = _rss_mb(), time.perf_counter(), _cpu_s()
        return self

    def __exit__(self, *exc) -> None:
        self.figures = {"wall_s": time.perf_counter() - self.wall, "cpu_s": _cpu_s() - self.cpu,
                        "peak_rss_mb": _rss_mb(), "rss_after_imports_mb": self.rss_before}


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_generator(n: int, _out: Path) -> dict:
    with Measured() as m:
        count = sum(1 for _ in synthetic_rows(n))
    return {"rows": count, **m.figures}


def run_ours(n: int, out: Path) -> dict:
    with Measured() as m:
        result = write_import_files(synthetic_rows(n), out, FIRST, LAST, source_counts={"comments": n})
    return {"rows": result.rows_in, **m.figures, "files": len(result.files), "written": result.rows_written,
            "rejected": sum(result.rejected_by_reason.values())}


def run_reference(n: int, out: Path) -> dict:
    import pandas  # noqa: F401  (loaded before the measured block, as ours loads pyarrow)

    with Measured() as m:
        counts = write_reference(n, out)
    return {"rows": n, **m.figures, **counts}


def write_reference(n: int, out: Path) -> dict:
    """All rows in memory, one DataFrame, column expressions and `to_csv`."""
    import pandas as pd

    fields = ("source_item_id", "timestamp", "title", "body", "source", "customer_email", "customer_name",
              "customer_phone", "tags")
    df = pd.DataFrame([tuple(getattr(r, f) for f in fields) for r in synthetic_rows(n)], columns=fields)
    email = df["customer_email"].fillna("").str.strip()
    local = email.str.split("@").str[0]
    valid = email.str.fullmatch(EMAIL_RE.pattern) & (email.str.len() <= 254) & (local.str.len() <= 64)
    df["reason"] = None
    df.loc[~df["body"].str.strip().astype(bool), "reason"] = EMPTY_BODY
    df.loc[~valid, "reason"] = INVALID_EMAIL
    df.loc[email == "", "reason"] = MISSING_EMAIL
    df.loc[df["timestamp"].isna(), "reason"] = MISSING_TIMESTAMP
    df["ts"] = df["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:23] + "Z"
    df["tags"] = df["tags"].map(",".join)
    names = ColumnNames().header()
    out.mkdir(parents=True, exist_ok=True)
    rejected = df[df["reason"].notna()]
    rejected[["source_item_id", "reason", "ts", "title", "body", "source", "customer_email", "customer_name",
              "customer_phone", "tags"]].to_csv(out / "rejected.csv", index=False, header=["source_item_id", "reason", *names],
                                                quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    ok = df[df["reason"].isna()].copy()
    del df, rejected
    ok["customer_email"] = ok["customer_email"].str.strip()
    ok["part_body"] = ok["body"].map(lambda b: split_body(b, GLADLY_MAX_BODY))
    ok = ok.explode("part_body")
    ok["part"] = ok.groupby(level=0).cumcount() + 1
    ok["parts"] = ok.groupby(level=0)["part"].transform("size")

    marker = ImportFileConfig().continuation_marker

    def title(t: str, part: int, parts: int) -> str:
        if parts == 1:
            return cut_title(t, GLADLY_MAX_TITLE)[0]
        room = GLADLY_MAX_TITLE - len(marker.format(part=parts, parts=parts))
        return (cut_title(t, room)[0] + marker.format(part=part, parts=parts)).lstrip()

    ok["title"] = [title(t, p, k) for t, p, k in zip(ok["title"], ok["part"], ok["parts"], strict=True)]
    columns = ["ts", "title", "part_body", "source", "customer_email", "customer_name", "customer_phone", "tags"]
    files = 0
    for files, start in enumerate(range(0, len(ok), GLADLY_MAX_ROWS_PER_FILE), 1):
        ok.iloc[start:start + GLADLY_MAX_ROWS_PER_FILE][columns].to_csv(
            out / f"reference-{files:04d}.csv", index=False, header=names, quoting=csv.QUOTE_NONNUMERIC,
            lineterminator="\n")
    return {"files": files, "written": len(ok), "rejected": n - int(ok.index.nunique())}


# -- comparing the outputs ---------------------------------------------------------------------
def rows_digest(paths: list[Path], keep=slice(None)) -> tuple[str, int]:
    """sha256 over the data rows of `paths` in order (the cells in `keep`), and their count."""
    digest, count = hashlib.sha256(), 0
    for path in paths:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, strict=True)
            next(reader)
            for row in reader:
                digest.update("\x1f".join(row[keep]).encode() + b"\x1e")
                count += 1
    return digest.hexdigest(), count


def outputs(folder: Path, batch_glob: str) -> dict:
    data, written = rows_digest(sorted(folder.glob(batch_glob)))
    rejected, rejected_count = rows_digest([folder / "rejected.csv"], slice(0, 2))
    return {"data": data, "written": written, "rejected": rejected, "rejected_count": rejected_count}


MODES = {"generator": run_generator, "ours": run_ours, "reference": run_reference}


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        mode, n, out = argv[1:]
        print(json.dumps(MODES[mode](int(n), Path(out))))
        return {}
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-import-files"))
    args = ap.parse_args(argv)
    run_dir = args.work / f"import-files-{args.rows}"  # only this folder is cleared and removed
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    try:
        results = {}
        for mode in MODES:
            result = run_json([sys.executable, __file__, "--child", mode, str(args.rows), str(run_dir / mode)])
            if result is None:
                raise SystemExit(f"{mode} failed")
            results[mode] = result
            print(f"  {mode}: {args.rows / result['wall_s']:,.0f} rows/s, peak RSS {result['peak_rss_mb']} MB",
                  file=sys.stderr, flush=True)
        ours_out = outputs(run_dir / "ours", f"gladly-import-{FIRST}_{LAST}-*.csv")
        reference_out = outputs(run_dir / "reference", "reference-*.csv")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    ours, reference, generator = results["ours"], results["reference"], results["generator"]
    summary = {
        "rows": args.rows,
        "rows_written": ours["written"],
        "rejected": ours["rejected"],
        "files": ours["files"],
        "ours_rows_per_s": round(args.rows / ours["wall_s"]),
        "ours_peak_rss_mb": ours["peak_rss_mb"],
        "ours_rss_after_imports_mb": ours["rss_after_imports_mb"],
        "baseline_rows_per_s": round(args.rows / reference["wall_s"]),
        "baseline_peak_rss_mb": reference["peak_rss_mb"],
        "baseline_rss_after_imports_mb": reference["rss_after_imports_mb"],
        "ours_rows_per_cpu_s": round(args.rows / ours["cpu_s"]),
        "baseline_rows_per_cpu_s": round(args.rows / reference["cpu_s"]),
        "speed_ratio": round(reference["wall_s"] / ours["wall_s"], 2),
        "cpu_ratio": round(reference["cpu_s"] / ours["cpu_s"], 2),
        "memory_ratio": round(ours["peak_rss_mb"] / reference["peak_rss_mb"], 2),
        "generator_only_rows_per_s": round(args.rows / generator["wall_s"]),
        "generator_only_rows_per_cpu_s": round(args.rows / generator["cpu_s"]),
        "identical_rows": ours_out == reference_out,
        "note": "speed ratio = baseline wall time / ours, cpu ratio the same in CPU seconds (the machine may be shared) (>1: ours faster); memory ratio = ours / baseline peak RSS "
                "(<1: ours lighter); both include generating the rows (generator_only_rows_per_s); baseline = "
                "every row in a pandas DataFrame + to_csv; identical_rows: the same data rows in order and the "
                "same rejects (id, reason), read back with the csv module",
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
