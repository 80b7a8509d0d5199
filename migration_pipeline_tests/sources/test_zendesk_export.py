"""Zendesk's full JSON export read from a landing folder (vendors/zendesk/export.py): every good
line of the plain, .gz and .zip deliveries of the messy dataset (sim/synth/zendesk.py) becomes
its typed record, exactly the manifest's malformed lines are quarantined with their reason,
embedded comments are read when present; hostile lines, files and ZIPs are refused with a
reason and never stop the rest."""

from __future__ import annotations

import gzip
import json
import shutil
import stat
import warnings
import zipfile
from datetime import date
from pathlib import Path

import pytest

from migration_pipeline.vendors.zendesk.export import (
    RAW_TEXT_LIMIT,
    ExportRecord,
    InflateLimits,
    QuarantinedLine,
    RefusedFile,
    read_export,
)
from migration_pipeline.vendors.zendesk.records import ZendeskOrganization, ZendeskTicket, ZendeskUser
from migration_pipeline_tests.synth.zendesk_helpers import ZendeskDataset, split_lines
from sim.synth.zendesk import generate
from sim.synth.zendesk_dataset import COMMENT_MODES, EXPORT_TYPES, ZIP_NAME

FORMATS = ("plain", "gz", "zip")
MODELS = {"tickets": ZendeskTicket, "users": ZendeskUser, "organizations": ZendeskOrganization}
# The manifest's kind of malformed line -> what the reason says.
REASONS = {"truncated_json": "malformed JSON", "missing_id": "no id", "invalid_utf8": "not valid UTF-8"}
HOST = "https://acme.zendesk.com/api/v2"


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> ZendeskDataset:
    root = tmp_path_factory.mktemp("zendesk-export")
    generate(root, customers=9, days=3, seed=5, end=date(2024, 6, 1))
    return ZendeskDataset(root)


def land(ds: ZendeskDataset, mode: str, fmt: str, landing: Path) -> Path:
    """One delivery of the export dropped in an empty landing folder, as handed over."""
    landing.mkdir()
    layout = ds.layout
    if fmt == "zip":
        shutil.copy(layout.zip_export(mode), landing)
    for kind in EXPORT_TYPES if fmt != "zip" else ():
        shutil.copy(layout.gz_export(mode, kind) if fmt == "gz" else layout.plain_export(mode, kind), landing)
    return landing


def file_of(fmt: str, kind: str) -> str:
    return {"plain": f"{kind}.json", "gz": f"{kind}.json.gz", "zip": f"{ZIP_NAME}:{kind}.json"}[fmt]


def split(entries: list) -> tuple[dict, dict, list[RefusedFile]]:
    records = {(e.file, e.line_no): e.record for e in entries if isinstance(e, ExportRecord)}
    quarantined = {(e.file, e.line_no): e for e in entries if isinstance(e, QuarantinedLine)}
    return records, quarantined, [e for e in entries if isinstance(e, RefusedFile)]


def api_line(kind: str, object_id: object, **fields: object) -> bytes:
    return json.dumps({"url": f"{HOST}/{kind}/{object_id}.json", "id": object_id, **fields}).encode()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", COMMENT_MODES)
def test_every_good_line_read_and_only_the_malformed_ones_quarantined(ds: ZendeskDataset, tmp_path: Path, mode: str, fmt: str) -> None:
    records, quarantined, refused = split(list(read_export(land(ds, mode, fmt, tmp_path / "landing"))))
    assert refused == []
    expected: dict[tuple[str, int], tuple[str, dict]] = {}
    lines = 0
    for kind in EXPORT_TYPES:
        for line in ds.export_lines(mode, kind):
            lines += 1
            if line.obj is not None:
                expected[(file_of(fmt, kind), line.number)] = (kind, line.obj)
    assert set(records) == set(expected) and len(records) + len(quarantined) == lines
    for key, (kind, obj) in expected.items():
        record = records[key]
        assert type(record) is MODELS[kind] and record.id == obj["id"]
        assert record.model_dump(include={"name", "email", "subject", "status", "tags"}) == {
            k: obj[k] for k in ("name", "email", "subject", "status", "tags") if k in obj}

    planted = {(file_of(fmt, m["file"].removesuffix(".json")), m["line"]): m["reason"] for m in ds.mess("malformed_lines")}
    assert set(quarantined) == set(planted) and len(planted) == 4
    for key, kind in planted.items():
        assert REASONS[kind] in quarantined[key].reason
    raw_lines = {kind: split_lines(ds.export_bytes(mode, kind)) for kind in EXPORT_TYPES}
    for (file, line_no), entry in quarantined.items():
        kind = next(k for k in EXPORT_TYPES if file.endswith(f"{k}.json") or file.endswith(f"{k}.json.gz"))
        assert entry.raw_text == raw_lines[kind][line_no - 1].decode("utf-8", "backslashreplace")


@pytest.mark.parametrize("mode", COMMENT_MODES)
def test_embedded_comments_are_read_when_the_export_has_them(ds: ZendeskDataset, tmp_path: Path, mode: str) -> None:
    records, _, _ = split(list(read_export(land(ds, mode, "plain", tmp_path / "landing"))))
    tickets = {r.id: r for r in records.values() if isinstance(r, ZendeskTicket)}
    if mode == "absent":
        assert tickets and all(t.comments is None for t in tickets.values())
        return
    exported = ds.export_objects("embedded", "tickets")
    assert {i: [c.id for c in t.comments or ()] for i, t in tickets.items()} == {
        i: [c["id"] for c in t["comments"]] for i, t in exported.items()}
    comments = {c.id: c for t in tickets.values() for c in t.comments or ()}
    raw = {c["id"]: c for t in exported.values() for c in t["comments"]}
    for comment_id, comment in comments.items():
        assert comment.public is raw[comment_id]["public"] and comment.created_at is not None
        assert [(a.id, a.inline) for a in comment.attachments] == [(a["id"], a["inline"]) for a in raw[comment_id]["attachments"]]
    assert ds.where_ids("private_comments", "commentId") & comments.keys()  # internal notes are among them
    assert ds.where_ids("inline_images", "attachmentId") & {a.id for c in comments.values() for a in c.attachments}
    (long_body,) = ds.mess("long_bodies")
    assert len(comments[long_body["commentId"]].plain_body or "") >= 40_000
    assert all(t.comments == [] for i, t in tickets.items() if i in ds.where_ids("tickets_without_comments", "ticketId"))


def test_each_unusable_line_has_its_reason_and_the_file_goes_on(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    comment = {"id": 11, "author_id": 5, "public": False, "plain_body": "internal", "created_at": "2024-05-01T10:00:00Z"}
    lines = [
        api_line("tickets", 1, subject="Fine", comments=[comment]),
        api_line("macros", 5),
        b"[1, 2, 3]",
        api_line("tickets", "7"),
        api_line("tickets", 8, tags="vip"),
        b"",
        api_line("tickets", 10, comments=[{"id": 12, "created_at": "yesterday"}]),
        json.dumps({"url": f"{HOST}/tickets/13.json", "subject": "x"}).encode(),
        b'{"url": "' + b"a" * (RAW_TEXT_LIMIT + 10),
        b'{"id": NaN, "url": "x"}',
        api_line("users", 9, email=None),
        api_line("organizations", 3, name="Acme"),
    ]
    (landing / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    records, quarantined, refused = split(list(read_export(landing)))
    assert refused == []
    assert {n: type(r).__name__ for (_, n), r in records.items()} == {1: "ZendeskTicket", 11: "ZendeskUser", 12: "ZendeskOrganization"}
    assert records[("mixed.jsonl", 1)].comments[0].public is False
    assert records[("mixed.jsonl", 11)].email is None
    reasons = {n: q.reason for (_, n), q in quarantined.items()}
    assert reasons.keys() == {2, 3, 4, 5, 7, 8, 9, 10}
    assert reasons[2].startswith("unknown type") and "macros" in reasons[2]
    assert "not a JSON object" in reasons[3]
    assert reasons[4].startswith("ticket '7': id:")
    assert reasons[5].startswith("ticket 8: tags:")
    assert reasons[7].startswith("ticket 10: comments.0.created_at:")
    assert reasons[8] == "no id"
    assert "malformed JSON" in reasons[9] and "not valid JSON" in reasons[10]
    long_raw = quarantined[("mixed.jsonl", 9)].raw_text
    assert long_raw.startswith('{"url": "aaa') and long_raw.endswith("the export file has the whole line]")
    assert len(long_raw) < RAW_TEXT_LIMIT + 200


def test_files_that_are_not_exports_are_refused_by_name(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (landing / "folder").mkdir(parents=True)
    (landing / "notes.txt").write_text("not an export")
    (landing / ".upload-in-progress.json").write_bytes(b"garbage\n")
    outside = tmp_path / "outside.json"
    outside.write_bytes(api_line("users", 1) + b"\n")
    (landing / "linked.json").symlink_to(outside)
    (landing / "users.json").write_bytes(api_line("users", 2) + b"\n")
    records, quarantined, refused = split(list(read_export(landing)))
    assert [(f, r.id) for (f, _), r in records.items()] == [("users.json", 2)] and quarantined == {}
    reasons = {r.file: r.reason for r in refused}
    assert reasons.keys() == {"folder", "notes.txt", "linked.json"}
    assert "symbolic link" in reasons["linked.json"] and "not a plain file" in reasons["folder"]
    assert "not an export file" in reasons["notes.txt"]


def _zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # zipfile warns about a name written twice: that is the test
        for info, data in members:
            zf.writestr(info, data)
    return path


def _link_member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(("member", "says"), [
    ("../escape.json", "unsafe member path"),
    ("/etc/export.json", "unsafe member path"),
    ("C:/export.json", "unsafe member path"),
    (_link_member("linked.json"), "symbolic link"),
    ("users.json", "appears twice"),
])
def test_an_unsafe_zip_is_refused_whole_before_any_line(tmp_path: Path, member: zipfile.ZipInfo | str, says: str) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    good = api_line("users", 1) + b"\n"
    _zip(landing / "export.zip", [("users.json", good), (member, good)])
    assert [(type(e).__name__, e.file) for e in read_export(landing)] == [("RefusedFile", "export.zip")]
    (refused,) = read_export(landing)
    assert says in refused.reason and "refused as a whole" in refused.reason


def test_zip_and_gzip_bombs_are_refused_and_other_members_read(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    limits = InflateLimits(max_ratio=50, ratio_floor_bytes=64 * 1024)
    bomb = b"\n" * (2 * 1024 * 1024)  # compresses about a thousandfold
    _zip(landing / "bomb.zip", [("users.json", api_line("users", 1) + b"\n"), ("tickets.json", bomb)])
    _zip(landing / "mixed.zip", [("users.json", api_line("users", 2) + b"\n"), ("readme.txt", b"hello")])
    (landing / "tickets.json.gz").write_bytes(gzip.compress(api_line("tickets", 3) + b"\n" + bomb))
    entries = list(read_export(landing, limits))
    records, _, refused = split(entries)
    # The .gz may be refused at its first read already (it inflates a megabyte at a time).
    assert [(f, r.id) for (f, _), r in records.items() if f.endswith(".zip:users.json")] == [("mixed.zip:users.json", 2)]
    reasons = {r.file: r.reason for r in refused}
    assert reasons.keys() == {"bomb.zip", "mixed.zip:readme.txt", "tickets.json.gz"}
    assert "ZIP bomb" in reasons["bomb.zip"] and "refused as a whole" in reasons["bomb.zip"]
    assert "gzip bomb" in reasons["tickets.json.gz"] and "read no further" in reasons["tickets.json.gz"]
    assert "not an export file" in reasons["mixed.zip:readme.txt"]


def test_a_gzip_cut_short_keeps_its_lines_and_says_where_it_broke(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    body = b"".join(api_line("users", i, name="x" * 200) + b"\n" for i in range(1, 200))
    packed = gzip.compress(body)
    (landing / "users.json.gz").write_bytes(packed[: len(packed) - 40])
    (landing / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    records, quarantined, refused = split(list(read_export(landing)))
    assert records and [r.id for r in records.values()] == list(range(1, len(records) + 1))
    reasons = {r.file: r.reason for r in refused}
    assert reasons.keys() == {"users.json.gz", "broken.zip"}
    assert "cannot be read to its end" in reasons["users.json.gz"] and "not a readable ZIP" in reasons["broken.zip"]
    assert all(q.file == "users.json.gz" for q in quarantined.values()) and len(quarantined) <= 1
