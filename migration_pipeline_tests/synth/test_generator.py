"""Tests for the messy-data generator: determinism, manifest truth, job windows and retention,
content-type shapes, REST/export consistency. Mess presence is in test_mess.py.

One standard dataset (60 customers, 16 days, fixed `end`) is generated once per module; the
few tests that need other parameters generate small ones of their own.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.synth.dataset import EXPORT_FILES, FORMAT_VERSION, RETENTION_DAYS, read_json
from sim.synth.generator import CONTENT_TYPES, REQUIRED_CONTENT_FIELDS, UNKNOWN_CONTENT_TYPE, generate
from migration_pipeline_tests.synth.helpers import Dataset, parse_ts, tree_digest

END = date(2024, 6, 1)
STANDARD = dict(customers=60, days=16, seed=7, end=END)
TS_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TS_ANY = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("standard")
    generate(root, **STANDARD)
    return Dataset(root)


# --------------------------------------------------------------------------- determinism


def test_same_arguments_give_identical_bytes(ds: Dataset, tmp_path: Path) -> None:
    generate(tmp_path / "again", **STANDARD)
    assert tree_digest(tmp_path / "again") == tree_digest(ds.root)


def test_different_seed_gives_different_data(ds: Dataset, tmp_path: Path) -> None:
    generate(tmp_path / "other", **{**STANDARD, "seed": 8})
    a, b = tree_digest(ds.root), tree_digest(tmp_path / "other")
    assert a["gladly/customers.jsonl"] != b["gladly/customers.jsonl"]
    assert a["manifest.json"] != b["manifest.json"]


def test_refuses_to_write_over_an_existing_dataset(ds: Dataset) -> None:
    with pytest.raises(FileExistsError):
        generate(ds.root, **STANDARD)


def test_progress_reports_items_written_up_to_the_total(tmp_path: Path) -> None:
    seen: list[int] = []
    manifest = generate(tmp_path / "p", customers=30, days=5, seed=1, end=END, progress=seen.append)
    assert seen and seen == sorted(seen)
    assert seen[-1] == manifest["counts"]["items"]


# --------------------------------------------------------------------------- manifest truth


def test_manifest_params(ds: Dataset) -> None:
    p = ds.manifest["params"]
    assert ds.manifest["formatVersion"] == FORMAT_VERSION
    assert (p["seed"], p["end"], p["days"], p["customers"], p["frequency"]) == (7, "2024-06-01", 16, 60, "daily")
    assert p["startAt"] == "2024-05-16T00:00:00.000Z" and p["endAt"] == "2024-06-01T00:00:00.000Z"


def test_item_counts_match_files(ds: Dataset) -> None:
    items = ds.items()
    counts = ds.manifest["counts"]
    assert counts["items"] == len(items)
    assert counts["itemsByContentType"] == dict(Counter(i["content"]["type"] for i in items.values()))
    assert counts["itemsPerDay"] == dict(Counter(i["timestamp"][:10] for i in items.values()))
    assert sum(counts["itemsPerDay"].values()) == counts["items"]


def test_rest_counts_match_files(ds: Dataset) -> None:
    counts = ds.manifest["counts"]
    lay = ds.layout
    merges = read_json(lay.merges)
    assert len(ds.rest(lay.customers)) == counts["survivingCustomers"] == counts["customers"] - len(merges)
    assert len(ds.rest(lay.conversations)) == counts["conversations"]
    assert len(ds.rest(lay.transcripts)) == counts["transcripts"]
    assert len(read_json(lay.topics)) == counts["topics"]
    assert len(read_json(lay.agents)) == counts["currentAgents"] < counts["agents"]
    attachments = sorted(lay.attachments_dir.iterdir())
    assert len(attachments) == counts["attachments"]
    assert sum(p.stat().st_size for p in attachments) == counts["attachmentBytes"]
    assert len(list(lay.recordings_dir.iterdir())) == counts["recordings"]
    # every customer (merged-away ones too) appears in some job's customers.jsonl
    assert len(ds.export_customers()) == counts["customers"]


def test_job_lines_and_hashes_match_files(ds: Dataset) -> None:
    on_disk = {j["id"]: j for j in ds.jobs()}
    assert sorted(on_disk) == sorted(j["id"] for j in ds.manifest["jobs"])
    for mj in ds.manifest["jobs"]:
        job = on_disk[mj["id"]]
        assert job["files"] == mj["files"] and job["status"] == mj["status"] and job["updatedAt"] == mj["updatedAt"]
        assert (job["parameters"]["startAt"], job["parameters"]["endAt"]) == (mj["startAt"], mj["endAt"])
        present = sorted(p.name for p in ds.layout.job_dir(job["id"]).iterdir() if p.name != "job.json")
        assert present == sorted(job["files"])
        for name in job["files"]:
            data = ds.layout.job_file(job["id"], name).read_bytes()
            assert data.count(b"\n") == mj["lines"][name]
            assert hashlib.sha256(data).hexdigest() == mj["sha256"][name]
            assert data.endswith(b"\n") and b"\r" not in data


# --------------------------------------------------------------------------- jobs and windows


def test_job_shapes(ds: Dataset) -> None:
    schedule = read_json(ds.layout.schedule)
    assert len(schedule) == 1 and schedule[0]["frequency"] == "DAILY" and schedule[0]["type"] == "CONVERSATIONS"
    for job in ds.jobs():
        assert set(job) == {"id", "scheduleId", "status", "updatedAt", "parameters", "files"}
        assert job["scheduleId"] == schedule[0]["id"]
        assert job["parameters"]["type"] == "CONVERSATIONS"
        assert TS_ANY.match(job["updatedAt"]) and len(job["id"]) == 22
        assert job["status"] in ("COMPLETED", "FAILED", "IN_PROGRESS")
    assert any(len(j["updatedAt"]) > len("2024-05-16T00:00:00.000Z") for j in ds.jobs()), "no nanosecond updatedAt"


def test_scheduled_jobs_tile_history_and_land_two_hours_late(ds: Dataset) -> None:
    scheduled = [j for j in ds.manifest["jobs"] if j["kind"] == "scheduled"]
    starts = sorted(parse_ts(j["startAt"]) for j in scheduled)
    assert len(scheduled) == 16
    assert starts == [parse_ts("2024-05-16T00:00:00Z") + timedelta(days=k) for k in range(16)]
    for j in scheduled:
        lag = parse_ts(j["updatedAt"]) - parse_ts(j["endAt"])
        assert timedelta(hours=2) <= lag < timedelta(hours=3)
        assert j["status"] == "COMPLETED"


def test_items_fall_inside_their_job_window(ds: Dataset) -> None:
    windows = {j["id"]: (parse_ts(j["startAt"]), parse_ts(j["endAt"])) for j in ds.manifest["jobs"]}
    for ln in ds.lines("conversation_items.jsonl"):
        if ln.obj is None or "timestamp" not in ln.obj:
            continue
        start, end = windows[ln.job]
        assert start <= parse_ts(ln.obj["timestamp"]) < end, (ln.job, ln.lineno)


def test_each_item_is_in_exactly_one_scheduled_job(ds: Dataset) -> None:
    kinds = {j["id"]: j["kind"] for j in ds.manifest["jobs"]}
    per_item = Counter(ln.obj["id"] for ln in ds.lines("conversation_items.jsonl")
                       if ln.is_valid_item and kinds[ln.job] == "scheduled")
    assert set(per_item.values()) == {1}
    assert len(per_item) == ds.manifest["counts"]["items"]


def test_fourteen_day_retention_and_the_one_time_job(ds: Dataset) -> None:
    as_of = parse_ts(ds.manifest["params"]["asOf"])
    jobs = ds.manifest["jobs"]
    for j in jobs:
        assert j["expired"] == (parse_ts(j["updatedAt"]) <= as_of - timedelta(days=RETENTION_DAYS))
        assert parse_ts(j["updatedAt"]) <= as_of
    scheduled = sorted((j for j in jobs if j["kind"] == "scheduled"), key=lambda j: j["startAt"])
    expired = [j for j in scheduled if j["expired"]]
    visible = [j for j in scheduled if not j["expired"]]
    assert expired == scheduled[: len(expired)] and len(expired) == 16 - 14  # oldest first
    (ot,) = [j for j in jobs if j["kind"] == "one_time"]
    assert not ot["expired"] and ot["status"] == "COMPLETED"
    assert ot["startAt"] == scheduled[0]["startAt"]
    assert ot["endAt"] == visible[0]["endAt"], "one-time job must overlap the first visible daily job by one day"
    assert timedelta(hours=12) < parse_ts(ds.manifest["params"]["endAt"]) - parse_ts(ot["updatedAt"]) < timedelta(days=2)
    # the overlap really duplicates items: the pipeline must dedupe
    overlap_ids = {ln.obj["id"] for ln in ds.lines("conversation_items.jsonl") if ln.job == visible[0]["id"] and ln.is_valid_item}
    ot_ids = {ln.obj["id"] for ln in ds.lines("conversation_items.jsonl") if ln.job == ot["id"] and ln.is_valid_item}
    assert overlap_ids and overlap_ids <= ot_ids


def test_failed_and_in_progress_jobs_carry_no_unique_data(ds: Dataset) -> None:
    jobs = ds.manifest["jobs"]
    newest = max(jobs, key=lambda j: parse_ts(j["updatedAt"]))
    assert newest["status"] == "IN_PROGRESS" and newest["files"] == []
    failed = [j for j in jobs if j["status"] == "FAILED"]
    assert len(failed) == 1 and failed[0]["files"] == []
    for j in (newest, failed[0]):
        assert any(s["status"] == "COMPLETED" and s["kind"] == "scheduled" and s["startAt"] == j["startAt"]
                   for s in jobs)


def test_one_time_job_defaults(tmp_path: Path) -> None:
    short = generate(tmp_path / "short", customers=5, days=6, seed=1, end=END)
    assert not any(j["kind"] == "one_time" for j in short["jobs"])
    forced = generate(tmp_path / "forced", customers=5, days=6, seed=1, end=END, one_time_job=True)
    assert sum(j["kind"] == "one_time" for j in forced["jobs"]) == 1


# --------------------------------------------------------------------------- item shapes


def test_every_item_has_the_envelope_and_content_fields(ds: Dataset) -> None:
    items = ds.items()
    types = Counter(i["content"]["type"] for i in items.values())
    assert set(CONTENT_TYPES) <= set(types), set(CONTENT_TYPES) - set(types)
    assert set(types) <= {*CONTENT_TYPES, UNKNOWN_CONTENT_TYPE}
    for item in items.values():
        assert len(item["id"]) == 22 and TS_MS.match(item["timestamp"])
        assert set(item["initiator"]) == {"id", "type"}
        assert item["initiator"]["type"] in ("AGENT", "API", "AUTOMATION", "CUSTOMER", "INTERNAL", "EXTERNAL", "SYSTEM")
        c = item["content"]
        for f in REQUIRED_CONTENT_FIELDS.get(c["type"], ("type",)):
            assert f in c, (c["type"], f, item["id"])
        for att in c.get("attachments", []):
            assert set(att) == {"id", "contentType", "filename", "fileSize"}


def test_content_type_details(ds: Dataset) -> None:
    items = list(ds.items().values())
    by_type: dict[str, list[dict]] = {}
    for i in items:
        by_type.setdefault(i["content"]["type"], []).append(i["content"])
    message_types = {c["messageType"] for c in by_type["CHAT_MESSAGE"]}
    assert message_types == {"TEXT", "QUICK_REPLY_REQUEST", "QUICK_REPLY_RESPONSE"}
    for c in by_type["CHAT_MESSAGE"]:
        if c["messageType"] == "QUICK_REPLY_REQUEST":
            assert c["messageData"]["options"]
        if c["messageType"] == "QUICK_REPLY_RESPONSE":
            md = c["messageData"]
            assert md["selectedOptionId"] in {o["id"] for o in md["quickReplyRequest"]["options"]}
            assert md["requestMessageId"] in {i["id"] for i in items}
    recorded = [c for c in by_type["PHONE_CALL"] if c.get("recordingStatus") == "AVAILABLE"]
    assert recorded and all({"recordingUrl", "recordingDuration", "recordingSummary"} <= set(c) for c in recorded)
    assert all(c["recordingUrl"].startswith("/api/v1/conversation-items/") for c in recorded)
    assert {c["status"] for c in by_type["CONVERSATION_STATUS_CHANGE"]} == {"OPEN", "CLOSED"}
    assert all(isinstance(c["to"], list) for c in by_type["EMAIL"])
    e164 = re.compile(r"^\+\d{8,15}$")
    assert all(e164.match(c["from"]) and e164.match(c["to"]) for c in by_type["SMS"] + by_type["PHONE_CALL"])
    assert all(c["activityType"] in ("EMAIL", "ISSUE", "SMS", "SURVEY") for c in by_type["CUSTOMER_ACTIVITY"])


# --------------------------------------------------------------------------- REST consistency


def test_rest_files_agree_with_export_files(ds: Dataset) -> None:
    lay = ds.layout
    profiles = {p["id"]: p for p in ds.rest(lay.customers)}
    merges = read_json(lay.merges)
    conversations = {c["id"]: c for c in ds.rest(lay.conversations)}
    assert not set(merges) & set(profiles) and set(merges.values()) <= set(profiles)
    for item in ds.items().values():
        assert item["customerId"] in profiles or item["customerId"] in merges
        if "conversationId" in item:
            conv = conversations[item["conversationId"]]
            assert conv["customerId"] == merges.get(item["customerId"], item["customerId"])
    for conv in conversations.values():
        assert conv["customerId"] in profiles
        assert conv["status"] in ("OPEN", "WAITING", "CLOSED")
        assert ("closedAt" in conv) == (conv["status"] == "CLOSED")
    for profile in profiles.values():
        assert {"id", "name", "emails", "phones", "customAttributes", "createdAt", "updatedAt"} <= set(profile)
        for e in profile["emails"]:
            assert set(e) == {"original", "normalized", "primary"} and e["normalized"] == e["original"].strip().lower()
        assert parse_ts(profile["createdAt"]) <= parse_ts(profile["updatedAt"])
    export = ds.export_customers()
    for cid, line in export.items():
        assert set(line) <= {"id", "name", "address", "emailAddresses", "phoneNumbers", "externalCustomerIds"}
        assert all(isinstance(e, str) for e in line["emailAddresses"] + line["phoneNumbers"])


def test_export_customers_are_only_those_the_job_references(ds: Dataset) -> None:
    for job in ds.jobs():
        if "customers.jsonl" not in job["files"]:
            continue
        referenced = {ln.obj["customerId"] for ln in ds.lines("conversation_items.jsonl")
                      if ln.job == job["id"] and ln.is_valid_item}
        listed = {ln.obj["id"] for ln in ds.lines("customers.jsonl") if ln.job == job["id"] and ln.obj}
        assert listed == referenced


def test_transcripts_recordings_and_attachments_point_at_real_items(ds: Dataset) -> None:
    items = ds.items()
    for t in ds.rest(ds.layout.transcripts):
        assert items[t["itemId"]]["content"]["type"] == "PHONE_CALL"
    for p in ds.layout.recordings_dir.iterdir():
        assert items[p.stem]["content"]["recordingStatus"] == "AVAILABLE"
    referenced = {a["id"]: a for i in items.values() for a in i["content"].get("attachments", [])}
    stored = {p.name: p.stat().st_size for p in ds.layout.attachments_dir.iterdir()}
    assert stored == {k: a["fileSize"] for k, a in referenced.items()}


# --------------------------------------------------------------------------- other parameters


def test_hourly_schedule(tmp_path: Path) -> None:
    m = generate(tmp_path / "h", customers=12, days=2, seed=3, end=END, frequency="hourly")
    d = Dataset(tmp_path / "h")
    scheduled = [j for j in m["jobs"] if j["kind"] == "scheduled"]
    assert len(scheduled) == 48 and read_json(d.layout.schedule)[0]["frequency"] == "HOURLY"
    for j in scheduled:
        assert parse_ts(j["endAt"]) - parse_ts(j["startAt"]) == timedelta(hours=1)
    windows = {j["id"]: (parse_ts(j["startAt"]), parse_ts(j["endAt"])) for j in m["jobs"]}
    n = 0
    for ln in d.lines("conversation_items.jsonl"):
        if ln.is_valid_item:
            start, end = windows[ln.job]
            assert start <= parse_ts(ln.obj["timestamp"]) < end
            n += 1
    assert n == m["counts"]["items"] > 0


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(customers=st.integers(0, 8), days=st.integers(1, 6), seed=st.integers(0, 2**32),
       ipc=st.sampled_from([1.0, 5.0, 25.0]))
def test_small_runs_keep_the_invariants(tmp_path_factory: pytest.TempPathFactory, customers: int, days: int,
                                        seed: int, ipc: float) -> None:
    root = tmp_path_factory.mktemp("small")
    m = generate(root, customers=customers, days=days, seed=seed, end=END, items_per_customer=ipc)
    d = Dataset(root)
    items = d.items()
    assert m["counts"]["items"] == len(items) >= customers  # every customer has at least one item
    start, end = parse_ts(m["params"]["startAt"]), parse_ts(m["params"]["endAt"])
    assert all(start <= parse_ts(i["timestamp"]) < end for i in items.values())
    for j in d.jobs():
        present = {p.name for p in d.layout.job_dir(j["id"]).iterdir()} - {"job.json"}
        assert present == set(j["files"]) and set(j["files"]) <= set(EXPORT_FILES)
