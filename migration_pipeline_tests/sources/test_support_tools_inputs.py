"""Gladly Support Tools Portal exports as landing inputs: the GET File Export ZIP, the Customer
conversations ZIP, the Single conversation CSV and the Topics CSV are archived like export jobs
and staged through the same quarantine, giving the rows the JSONL export gives."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from migration_pipeline.pairs.gladly_to_unthread.checks.reconciliation import recount_source
from migration_pipeline.pairs.gladly_to_unthread.mappings import load_mappings
from migration_pipeline.vendors.gladly import support_tools as reader
from migration_pipeline.vendors.gladly.archive import ExportArchive, coverage_gaps
from migration_pipeline.vendors.gladly.staging import stage_job_file
from migration_pipeline.lib.staging.db import conversation_items, item_columns, quarantine, topics
from migration_pipeline.vendors.gladly.parse import parse_item
from sim.synth import support_tools as layouts
from sim.synth.dataset import DatasetLayout, read_json
from migration_pipeline_tests.synth.helpers import Dataset

ITEMS_FILE = "conversation_items.jsonl"
MESS_TO_COVER = ("attachments", "inline_base64_images", "bodies_over_25000_chars", "unicode_emoji_rtl",
                 "items_without_conversation", "recording_duration_as_string", "sidekick_items", "html_with_quoted_reply")
# Columns that say where a row came from, not what it is.
PROVENANCE = ("job_id", "file_name", "line_no", "staged_at")


# -- the synthetic items -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def source(small_dataset) -> dict[str, Any]:
    """Items of a few customers chosen to hold every content type of the dataset, with their REST
    conversations and the org's topics."""
    data = Dataset(small_dataset)
    items = list(data.items().values())
    by_customer: dict[str, list[dict]] = {}
    for item in sorted(items, key=lambda i: (i["timestamp"], i["id"])):
        by_customer.setdefault(item["customerId"], []).append(item)
    wanted, chosen = {i["content"]["type"] for i in items}, []
    small = sorted((kv for kv in by_customer.items() if len(kv[1]) <= 150), key=lambda kv: len(kv[1]))  # no mega conversation
    customer_of = {i["id"]: i["customerId"] for i in items}
    for kind in MESS_TO_COVER:  # the mess a CSV cell must carry unchanged
        item_ids = [w["itemId"] for w in data.mess(kind) if customer_of.get(w["itemId"]) in dict(small)]
        if item_ids and customer_of[item_ids[0]] not in chosen:
            chosen.append(customer_of[item_ids[0]])
    for customer, mine in small:
        new = {i["content"]["type"] for i in mine} - {i["content"]["type"] for c in chosen for i in by_customer[c]}
        if new:
            chosen.append(customer)
    picked = [i for c in chosen for i in by_customer[c]]
    assert {i["content"]["type"] for i in picked} == wanted
    assert all(any(w["itemId"] in {i["id"] for i in picked} for w in data.mess(kind)) for kind in MESS_TO_COVER)
    layout = DatasetLayout(small_dataset)
    conversations = [c for c in data.rest(layout.gladly / "conversations.jsonl") if c["customerId"] in chosen]
    return {"customers": chosen, "items": picked, "conversations": conversations,
            "topics": read_json(layout.gladly / "topics.json")}


def _landing(root: Path) -> Path:
    landing = root / "landing" / "gladly"
    landing.mkdir(parents=True, exist_ok=True)
    return landing


def _archive(root: Path):
    scan = ExportArchive(root).archive_from_landing(_landing(root))
    assert not scan.rejected, scan.rejected
    return scan


def _stage_all(db, root: Path) -> None:
    for job in ExportArchive(root).all_jobs():
        for name in sorted(job.files):
            stage_job_file(db, job, name)


def _staged_items(db) -> dict[str, dict[str, Any]]:
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(conversation_items)).mappings().all()
    return {r["source_id"]: {k: v for k, v in r.items() if k not in PROVENANCE} for r in rows}


def _quarantined(db) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(quarantine).order_by(quarantine.c.line_no)).mappings()]


def _clear(db) -> None:
    with db.begin() as conn:
        for table in (conversation_items, quarantine, topics):
            conn.execute(table.delete())


# -- 1. GET File Export ZIP: the existing ZIP path, with the window's origin said ------------------
def test_get_file_export_zip_is_an_export_job_with_its_window_from_the_items(source, tmp_path):
    landing = _landing(tmp_path)
    items = source["items"]
    zip_path = layouts.write_get_file_export_zip(landing / "export-job.zip", items, topics=source["topics"])
    [(job, fresh)] = _archive(tmp_path).archived

    days = sorted(i["timestamp"][:10] for i in items)
    assert fresh and job.layout == "export-jsonl" and "items' timestamps" in job.window_from
    assert job.start_at == datetime.fromisoformat(days[0]).replace(tzinfo=UTC)
    assert job.end_at == datetime.fromisoformat(days[-1]).replace(tzinfo=UTC) + timedelta(days=1)
    assert "no job.json" in job.describe() and job.origin == str(zip_path)
    assert set(job.files) == set(layouts.EXPORT_FILES)

    # Dropped again: the same job, nothing archived twice. With a job.json, the window is its own.
    assert [fresh for _, fresh in _archive(tmp_path).archived] == [False]
    other = tmp_path / "other"
    window = {"parameters": {"startAt": "2026-10-01T00:00:00Z", "endAt": "2026-12-01T00:00:00Z"}}
    layouts.write_get_file_export_zip(_landing(other) / "with-job.zip", items, job=window)
    [(job, _)] = _archive(other).archived
    assert job.window_from == "job.json" and job.start_at == datetime(2026, 10, 1, tzinfo=UTC)


# -- 2 + 3. CSV layouts stage the rows the JSONL export stages --------------------------------------
def _write_customer_zips(landing: Path, source: dict[str, Any]) -> None:
    for n, customer in enumerate(source["customers"]):
        mine = [i for i in source["items"] if i["customerId"] == customer]
        conversations = [c for c in source["conversations"] if c["customerId"] == customer]
        # One in a folder inside the ZIP, as a re-zipped download would be.
        layouts.write_customer_conversations_zip(landing / f"customer-{n}.zip", conversations, mine,
                                                 folder="export" if n == 0 else "")


def _write_single_conversations(landing: Path, source: dict[str, Any]) -> list[dict[str, Any]]:
    by_conversation: dict[str, list[dict]] = {}
    for item in source["items"]:
        if item.get("conversationId"):  # an item outside any conversation has no such export
            by_conversation.setdefault(item["conversationId"], []).append(item)
    for n, (conversation, mine) in enumerate(sorted(by_conversation.items())):
        layouts.write_single_conversation_csv(landing / f"Conversation {conversation}.csv", mine, bom=n % 2 == 0,
                                              line_end="\r\n" if n % 3 else "\n")
    return [i for mine in by_conversation.values() for i in mine]


@pytest.mark.parametrize("layout", ["customer conversations ZIP", "single conversation CSV"])
def test_each_csv_layout_stages_the_rows_of_the_jsonl_export(source, staging_db, tmp_path, layout):
    landing = _landing(tmp_path / "csv")
    if layout == "customer conversations ZIP":
        _write_customer_zips(landing, source)
        items = source["items"]
    else:
        items = _write_single_conversations(landing, source)
    scan = _archive(tmp_path / "csv")
    layouts_seen = {job.layout for job, _ in scan.archived}
    assert layouts_seen == ({"customer-conversations-csv"} if layout.startswith("customer") else {"conversation-items-csv"})
    assert all("items' timestamps" in job.window_from for job, _ in scan.archived)

    layouts.write_get_file_export_zip(_landing(tmp_path / "jsonl") / "export.zip", items)
    _archive(tmp_path / "jsonl")
    _stage_all(staging_db, tmp_path / "jsonl")
    expected = _staged_items(staging_db)
    assert len(expected) == len(items) and not _quarantined(staging_db)
    _clear(staging_db)

    _stage_all(staging_db, tmp_path / "csv")
    staged = _staged_items(staging_db)
    assert not _quarantined(staging_db)
    assert set(staged) == set(expected)
    for item_id, row in expected.items():
        got = staged[item_id]
        view = layouts.csv_view(row["payload"])
        assert got["payload"] == view, item_id
        # Staged as the parser stages the record the CSV holds (a call's recording status, a chat
        # quick reply's options are not in a CSV row) ...
        content = {k: v for k, v in item_columns(parse_item(view)).items() if k != "payload"}
        assert {k: got[k] for k in content} == content, item_id
        # ... and who, when, where and what kind of item it is are the export's exactly.
        same = ("ts", "customer_id", "conversation_id", "kind", "source_kind", "visibility", "author_type", "author_id", "channel",
                "subject", "split_change", "attachments")
        assert {k: got[k] for k in same} == {k: row[k] for k in same}, item_id

    # Every CSV is archived byte for byte with its sha256, and reconciliation's recount of the
    # archived lines finds every item without knowing CSVs exist.
    jobs = ExportArchive(tmp_path / "csv").all_jobs()
    for job in jobs:
        meta = job.files["conversation-items.csv"]
        assert hashlib.sha256(job.file_path("conversation-items.csv").read_bytes()).hexdigest() == meta["sha256"]
    recount = recount_source(jobs, "2000-01-01T00:00:00.000000Z", "2100-01-01T00:00:00.000000Z")
    assert set(recount.days) == set(expected) and not recount.unplaceable
    if layout.startswith("customer"):
        assert len(jobs) == len(source["customers"])
        metas = [json.loads((j.directory / "archive.json").read_text()) for j in jobs]
        assert sum(m["conversations"]["rows"] for m in metas) == len(source["conversations"])


# -- a bad CSV row ------------------------------------------------------------------------------------
def _good(item_id: str, ts: str, body: str = "hello") -> dict[str, Any]:
    return {"id": item_id, "customerId": "cust-1", "conversationId": "conv-1", "timestamp": ts,
            "initiator": {"id": "cust-1", "type": "CUSTOMER"},
            "content": {"type": "CHAT_MESSAGE", "sessionId": "s1", "messageType": "TEXT", "content": body}}


def test_bad_csv_rows_are_quarantined_with_row_number_and_reason(staging_db, tmp_path):
    landing = _landing(tmp_path)
    header_and_good = layouts.items_csv_text([
        _good("ok-1", "2026-11-02T10:00:00.000Z", "two\nlines"),  # row 1, lines 2-3
        _good("bad-json", "2026-11-02T10:01:00.000Z"),  # row 2: its attachments cell is broken below
        _good("bad-ts", "yesterday"),  # row 3: parse.py refuses the timestamp
        _good("bad-bool", "2026-11-02T10:03:00.000Z"),  # row 4: expandByDefault broken below
    ]).encode()
    column = layouts.ITEM_COLUMNS.index
    lines = header_and_good.split(b"\r\n")  # header, rows 1-4 (row 1 holds a line break), ""
    cells = lines[2].split(b",")
    cells[column("content.attachments")] = b'"[{""id"": ""a1"""'  # JSON cut short
    lines[2] = b",".join(cells)
    cells = lines[4].split(b",")
    cells[column("content.expandByDefault")] = b"maybe"
    lines[4] = b",".join(cells)
    short = b"only,three,cells"  # row 5
    not_utf8 = lines[1].replace(b"ok-1", b"bad-utf8").replace(b"two", b"tw\xff")  # row 6, lines 8-9
    good_after = layouts.items_csv_text([_good("ok-2", "2026-11-02T11:00:00.000Z")]).encode().split(b"\r\n")[1]
    data = b"\r\n".join([*lines[:5], short, not_utf8, good_after, b""])  # good_after: row 7
    (landing / "conversation.csv").write_bytes(data)

    [(job, _)] = _archive(tmp_path).archived
    assert job.converted[ITEMS_FILE]["badRows"] == 4 and job.converted[ITEMS_FILE]["rows"] == 7
    counts = stage_job_file(staging_db, job, ITEMS_FILE)
    assert (counts.lines, counts.staged, counts.quarantined) == (7, 2, 5)
    assert set(_staged_items(staging_db)) == {"ok-1", "ok-2"}
    assert _staged_items(staging_db)["ok-1"]["text"] == "two\nlines"

    bad = {r["line_no"]: r for r in _quarantined(staging_db)}
    assert sorted(bad) == [2, 3, 4, 5, 6]
    assert {r["file_name"] for r in bad.values()} == {ITEMS_FILE}
    for row_no, row in bad.items():
        assert row["reason"].startswith(f"conversation-items.csv row {row_no}: "), row["reason"]
    assert "content.attachments" in bad[2]["reason"] and "(CSV line 4)" in bad[2]["reason"]
    assert "RFC3339" in bad[3]["reason"]
    assert "expandByDefault" in bad[4]["reason"] and "'maybe'" in bad[4]["reason"]
    assert "3 cells" in bad[5]["reason"] and "(CSV line 7)" in bad[5]["reason"]
    assert "UTF-8" in bad[6]["reason"] and "0xff" in bad[6]["reason"] and "line 8" in bad[6]["reason"]
    assert '"bad-json"' in bad[2]["raw_text"]  # the row's cells are kept for review

    # Reconciliation places a lost row whose id and timestamp could be read, and names the rest.
    recount = recount_source([job], "2026-11-01T00:00:00.000000Z", "2026-11-03T00:00:00.000000Z")
    assert set(recount.days) == {"ok-1", "ok-2", "bad-json", "bad-bool"}
    assert [line for _, line in recount.unplaceable] == [3, 5, 6]


# -- BOM, CRLF and a line break inside a quoted body ----------------------------------------------
def test_csv_with_bom_crlf_and_newlines_inside_quoted_cells(staging_db, tmp_path):
    bodies = {"nl": "first line\nsecond, \"quoted\" line", "crlf": "a\r\nb\r\n\r\nc", "plain": "Zoë 👋 مرحبا"}
    items = [_good(k, f"2026-11-02T10:0{n}:00.000Z", v) for n, (k, v) in enumerate(bodies.items())]
    path = layouts.write_single_conversation_csv(_landing(tmp_path) / "export.csv", items, bom=True, line_end="\r\n")
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfid,customerId,") and b"first line\nsecond" in raw and raw.count(b"\r\n") >= 5

    [(job, _)] = _archive(tmp_path).archived
    assert job.file_path("conversation-items.csv").read_bytes() == raw  # archived byte for byte
    assert json.loads((job.directory / "archive.json").read_text())["landedAs"] == {"conversation-items.csv": "export.csv"}
    stage_job_file(staging_db, job, ITEMS_FILE)
    staged = _staged_items(staging_db)
    assert not _quarantined(staging_db)
    assert {k: staged[k]["text"] for k in bodies} == bodies
    assert staged["nl"]["payload"] == items[0]


# -- list cells: JSON array or comma-separated ------------------------------------------------------
def test_list_cells_accept_json_arrays_and_comma_separated_values():
    header = ["id", "customerId", "timestamp", "content.type", "content.to", "content.cc",
              "content.addedTopicIds", "content.attachments", "content.expandByDefault", "content.recordingDuration"]
    comma = ["e1", "c1", "2026-11-02T10:00:00Z", "EMAIL", "a@x.com, b@y.com", "c@z.com", "t1,t2", "att1, att2", "TRUE", "42"]
    as_json = ["e1", "c1", "2026-11-02T10:00:00Z", "EMAIL", '["a@x.com","b@y.com"]', '["c@z.com"]', '["t1", "t2"]',
               '[{"id": "att1"}, {"id": "att2"}]', "true", "42"]
    expected = {"id": "e1", "customerId": "c1", "timestamp": "2026-11-02T10:00:00Z",
                "content": {"type": "EMAIL", "to": ["a@x.com", "b@y.com"], "cc": ["c@z.com"], "addedTopicIds": ["t1", "t2"],
                            "attachments": [{"id": "att1"}, {"id": "att2"}], "expandByDefault": True, "recordingDuration": 42}}
    assert reader.item_from_cells(header, comma) == expected
    assert reader.item_from_cells(header, as_json) == expected
    # An SMS (or call) goes to one number; empty cells are absent.
    sms = reader.item_from_cells(header, ["s1", "c1", "2026-11-02T10:00:00Z", "SMS", "+15550100", "", "", "", "", ""])
    assert sms == {"id": "s1", "customerId": "c1", "timestamp": "2026-11-02T10:00:00Z",
                   "content": {"type": "SMS", "to": "+15550100"}}
    with pytest.raises(reader.CsvRowError, match="lost the objects"):
        reader.item_from_cells(header, [*comma[:7], "[object Object]", "", ""])


# -- Topics CSV ------------------------------------------------------------------------------------
@pytest.mark.parametrize("separator", [" > ", "/"])
def test_topics_csv_seeds_hierarchy_names_without_duplicating_export_topics(source, staging_db, tmp_path, separator):
    api_topics = source["topics"]
    assert any(t.get("parentId") for t in api_topics)
    # A top-level topic with the separator in its own name (no topic is called "Gift Cards").
    extra = {"id": "gift-vouchers", "name": f"Gift Cards{separator}Vouchers", "disabled": False}
    landing = _landing(tmp_path)
    layouts.write_topics_csv(landing / "Topics.csv", [*api_topics, extra], separator=separator, bom=True)
    [(config, _)] = _archive(tmp_path).archived
    assert config.configuration and config.layout == "topics-csv"

    # It covers no window, yet every window stages it.
    day = (datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    archive = ExportArchive(tmp_path)
    assert [j.job_id for j in archive.jobs_overlapping(*day)] == [config.job_id]
    assert coverage_gaps([(config.start_at, config.end_at)], *day) == [day]

    stage_job_file(staging_db, config, "topics.jsonl")
    with staging_db.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.select(topics)).mappings()]
    assert {r["source_id"]: (r["name"], r["parent_id"], r["disabled"]) for r in rows} == {
        **{t["id"]: (t["name"], t.get("parentId"), t["disabled"]) for t in api_topics},
        "gift-vouchers": (f"Gift Cards{separator}Vouchers", None, False),
    }
    mappings = load_mappings()
    api_names = mappings.topic_names([{"source_id": t["id"], "name": t["name"], "parent_id": t.get("parentId")} for t in api_topics])
    staged_names = mappings.topic_names(rows)
    assert {k: staged_names[k] for k in api_names} == api_names  # tags named as from Gladly's API
    child = next(t for t in api_topics if t.get("parentId"))
    parent = next(t for t in api_topics if t["id"] == child["parentId"])
    assert staged_names[child["id"]] == f"{parent['name']}{mappings.topic_separator}{child['name']}"

    # An export's topics.jsonl for the same ids: one row each, the export's own line kept,
    # whichever is staged first.
    renamed = [{**t, "name": t["name"] + " (export)"} for t in api_topics[:3]]
    layouts.write_get_file_export_zip(landing / "export.zip", [_good("i1", "2026-11-02T10:00:00.000Z")], topics=renamed)
    export = next(j for j, _ in _archive(tmp_path).archived if not j.configuration)
    for order in ([config, export], [export, config]):
        _clear(staging_db)
        for job in order:
            stage_job_file(staging_db, job, "topics.jsonl")
        with staging_db.engine.connect() as conn:
            names = dict(conn.execute(sa.select(topics.c.source_id, topics.c.name)).all())
        assert len(names) == len(api_topics) + 1
        assert all(names[t["id"]] == t["name"] for t in renamed)


def test_topic_names_split_only_at_a_known_parent():
    known = {"Billing": "b", "Billing > Refunds": "br", "A/B": "ab"}
    assert reader.split_topic_name("Billing > Refunds > Late", known) == ("br", "Late")
    assert reader.split_topic_name("Billing/Refunds", known) == ("b", "Refunds")
    assert reader.split_topic_name("A/B > C", known) == ("ab", "C")
    assert reader.split_topic_name("Returns/Exchanges", known) == (None, "Returns/Exchanges")


# -- layouts that are refused, each with its reason; the good one still archived ------------------
def test_unusable_support_tools_files_are_refused_with_their_reason(tmp_path):
    landing = _landing(tmp_path)
    (landing / "inboxes.csv").write_text("id,name,disabled\r\ni1,Email,false\r\n")
    (landing / "conversations.csv").write_text("id,topicIds,customAttributes,customerId,createdAt,agentId,inboxId,status\r\n")
    (landing / "empty.csv").write_bytes(b"")
    (landing / "both").mkdir()
    (landing / "both" / "conversation_items.jsonl").write_text(json.dumps(_good("j1", "2026-11-02T10:00:00Z")) + "\n")
    layouts.write_single_conversation_csv(landing / "both" / "conversation-items.csv", [_good("c1", "2026-11-02T10:00:00Z")])
    layouts.write_single_conversation_csv(landing / "good.csv", [_good("g1", "2026-11-02T10:00:00Z")])

    scan = ExportArchive(tmp_path).archive_from_landing(landing)
    refused = {Path(r.source).name: r.reason for r in scan.rejected}
    assert set(refused) == {"inboxes.csv", "conversations.csv", "empty.csv", "both"}
    assert "not a Support Tools export" in refused["inboxes.csv"]
    assert "holds no items" in refused["conversations.csv"]
    assert "empty" in refused["empty.csv"]
    assert "both conversation_items.jsonl and conversation-items.csv" in refused["both"]
    [(good, _)] = scan.archived
    assert good.layout == "conversation-items-csv" and good.origin == str(landing / "good.csv")
    assert sorted(p.name for p in ExportArchive(tmp_path).root.iterdir()) == [good.job_id]
