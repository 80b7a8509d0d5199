"""The reconciliation's lists in full as Parquet (lib/reconcile/full_lists.py): every row of every list the
reports cut is in its file, typed, and the JSON, markdown, HTML and metadata say where; a write
that fails half way leaves the previous file whole. A Reconciliation with more rows than any
report shows is built directly: no migration is needed to make one."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from migration_pipeline.pairs.gladly_to_unthread.assets.reconciliation_report import check_metadata, metadata_tables, render_markdown, report_json
from migration_pipeline.lib.reconcile.full_lists import copy_full_lists, write_full_lists, write_list
from migration_pipeline.pairs.gladly_to_unthread.checks.reconciliation import FULL_LISTS as LISTS
from migration_pipeline.pairs.gladly_to_unthread.checks.reconciliation import MAX_LISTED, Reconciliation
from migration_pipeline.lib.reconcile.report_html import MAX_ROWS
from migration_pipeline.pairs.gladly_to_unthread.checks.report_html import render_html

ROWS = MAX_ROWS + 234  # past every cap: JSON 500, HTML 1000, markdown 200, metadata 100
JOB = "job-1"


def _row(columns, i: int) -> dict:
    """A row with every declared column, its ids unique (`<column>-<i>`)."""
    values = {pa.string(): lambda name: f"{name}-{i}", pa.int64(): lambda name: i, pa.bool_(): lambda name: i % 2 == 0,
              pa.list_(pa.string()): lambda name: [f"{name}-{i}-a", f"{name}-{i}-b"]}
    return {name: values[kind](name) for name, kind in columns}


def _big_reconciliation() -> Reconciliation:
    rec = Reconciliation(window=("2026-03-01T00:00:00.000000Z", "2026-03-03T00:00:00.000000Z"))
    for name, columns in LISTS.items():
        setattr(rec, name, [_row(columns, i) for i in range(ROWS)])
    rec.stale_acceptances = [f"item:stale-{i}" for i in range(ROWS)]
    # losses as the reconciliation makes them: each kind with its own keys, half accepted
    rec.losses = [
        [{"key": f"item:i{i}", "kind": "item", "item_id": f"i{i}", "day": "2026-03-01", "stage": "load: failed",
          "reason": "refused", "lines": [f"line:{JOB}/conversation_items.jsonl:{i}"]},
         {"key": f"line:{JOB}/conversation_items.jsonl:{i}", "kind": "line", "job_id": JOB,
          "file": "conversation_items.jsonl", "line": i, "stage": "staging", "reason": "malformed", "unplaceable": True},
         {"key": f"ledger:tags:{i}", "kind": "write", "stage": "load: failed", "reason": "refused by Unthread: 400"},
         ][i % 3] | {"accepted": "reviewed" if i % 2 else None}
        for i in range(ROWS)
    ]
    # dead letters straight from SQL: a timestamp object, and a column no list declares on some rows
    when = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
    rec.dead_letters = [
        {"source_key": f"message:m{i}", "entity_type": "message", "parent_key": None, "attempts": 1, "reason": "400",
         "updated_at": when, **({"vendor_status": 400} if i % 5 == 0 else {})}
        for i in range(ROWS)
    ]
    rec.dead_letter_reasons = Counter(d["reason"] for d in rec.dead_letters)
    rec.missing = [{"item_id": f"m{i}", "day": f"2026-03-0{1 + i % 2}", "stage": "target", "reason": "gone"}
                   for i in range(ROWS)]
    return rec


def test_every_row_of_every_list_the_reports_cut_is_in_its_parquet_file(tmp_path):
    rec = _big_reconciliation()
    as_dict = rec.as_dict()
    cut = {k for k, v in as_dict.items() if isinstance(v, list) and len(v) < len(getattr(rec, k, v))}
    assert cut == set(LISTS), "every list the JSON report cuts has a Parquet file, and no other"

    full = write_full_lists(rec, LISTS, tmp_path / "reports" / "reconciliation-x")
    assert set(full) == set(LISTS)
    for name, written in full.items():
        table = pq.read_table(written.path)
        assert table.num_rows == written.rows == ROWS, name
    missing = pq.read_table(full["missing"].path)
    assert missing.schema.field("item_id").type == pa.string()
    assert missing.column("item_id").to_pylist() == [m["item_id"] for m in rec.missing]

    # heterogeneous rows: the union of their keys, typed; absent keys are nulls
    losses = pq.read_table(full["losses"].path)
    assert losses.schema.field("line").type == pa.int64() and losses.schema.field("lines").type == pa.list_(pa.string())
    assert losses.to_pylist() == [{name: loss.get(name) for name in losses.schema.names} for loss in rec.losses]
    dead = pq.read_table(full["dead_letters"].path)
    assert dead.schema.names[-1] == "vendor_status" and dead.schema.field("vendor_status").type == pa.int64()
    assert dead.column("vendor_status").to_pylist()[:2] == [400, None]
    assert set(dead.column("updated_at").to_pylist()) == {"2026-03-02T08:30:00+00:00"}
    assert pq.read_table(full["stale_acceptances"].path).column("key").to_pylist() == rec.stale_acceptances
    duplicates = pq.read_table(full["duplicate_customers"].path).to_pylist()
    assert duplicates[7]["unthread_ids"] == ["unthread_ids-7-a", "unthread_ids-7-b"]

    # the run's copy: the same files in another folder
    copies = copy_full_lists(full, tmp_path / "runs" / "r1" / "reconciliation-x")
    assert all(copies[n].path.read_bytes() == full[n].path.read_bytes() for n in LISTS)

    # every report says how many it lists and where all of them are
    links = {name: f"reconciliation-x/{name}.parquet" for name in LISTS}
    data = json.loads(report_json(rec, links))
    assert len(data["missing"]) == MAX_LISTED
    assert data["full_lists"]["missing"] == {"file": links["missing"], "rows": ROWS, "listed": MAX_LISTED,
                                             "note": f"{MAX_LISTED} listed here, all {ROWS} in {links['missing']}"}
    assert data["full_lists"]["losses"]["note"] == f"{2 * MAX_LISTED} listed here, all {ROWS} in {links['losses']}"
    markdown = render_markdown(rec, None, links)
    for name in ("missing", "dead_letters", "unmatched_agents", "losses"):
        assert f"200 listed here, all {ROWS} in `{links[name]}`." in markdown, name
    html = render_html(rec, full_lists=links)
    for name in LISTS:
        if name != "stale_acceptances":  # a list of keys, in no HTML table
            assert f'{MAX_ROWS} listed here, all {ROWS} in <a href="{links[name]}">' in html, name
    assert "see the JSON report" not in html

    tables = metadata_tables(rec, full)
    assert tables["missing_listed"].value == f"100 listed here, all {ROWS} in {full['missing'].path}"
    assert tables["full_list_missing"].value == str(full["missing"].path)
    order, duplicates_check, attribution = check_metadata(rec, None, full)[1:4]
    assert order["out_of_order_listed"].value == f"50 listed here, all {ROWS} in {full['out_of_order'].path}"
    assert duplicates_check["full_list_duplicates"].value == str(full["duplicates"].path)
    # the examples are the first 50 of two lists: the second shows none of its rows
    assert attribution["conversation_customer_mismatches_listed"].value.startswith(f"0 listed here, all {ROWS} in")


def test_a_short_list_is_not_said_to_be_cut_and_an_empty_one_is_a_file_with_no_rows(tmp_path):
    rec = Reconciliation(window=("2026-03-01T00:00:00.000000Z", "2026-03-02T00:00:00.000000Z"))
    rec.missing = [{"item_id": "m1", "day": "2026-03-01", "stage": "target", "reason": "gone"}]
    full = write_full_lists(rec, LISTS, tmp_path)
    assert pq.read_table(full["duplicates"].path).num_rows == 0
    assert pq.read_table(full["duplicates"].path).schema.names == ["item_id", "conversation_id", "copies"]
    links = {name: f"x/{name}.parquet" for name in LISTS}
    assert "listed here" not in render_markdown(rec, None, links) + render_html(rec, full_lists=links)
    assert "note" not in json.loads(report_json(rec, links))["full_lists"]["missing"]
    assert "missing_listed" not in metadata_tables(rec, full)


def test_a_write_that_fails_half_way_leaves_the_previous_file_whole(tmp_path):
    path = tmp_path / "duplicates.parquet"
    rows = [{"item_id": f"i{i}", "conversation_id": "c", "copies": 2} for i in range(3000)]
    write_list(path, "duplicates", rows[:10], LISTS["duplicates"])
    before = path.read_bytes()

    broken = rows[:2500] + [{"item_id": "bad", "copies": "many"}] + rows[2500:]
    with pytest.raises(ValueError):
        write_list(path, "duplicates", broken, LISTS["duplicates"], batch_rows=500)  # fails in the sixth batch
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path], "no temp file left behind"

    write_list(path, "duplicates", rows, LISTS["duplicates"], batch_rows=500)
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_row_groups == 6 and parquet.metadata.num_rows == 3000  # written batch by batch
