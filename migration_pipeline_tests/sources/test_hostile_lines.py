"""Hostile export lines (issue 12, items 4 and 5): each one becomes exactly one quarantined line
with a reason naming the problem, the rest of the file is staged, identically on SQLite and
PostgreSQL, and staging the file again changes nothing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import sqlalchemy as sa

from migration_pipeline.lib import jsonl
from migration_pipeline.vendors.gladly import staging
from migration_pipeline.vendors.gladly.archive import ArchivedJob
from migration_pipeline.vendors.gladly.staging import stage_job_file
from migration_pipeline.lib.staging.db import (
    StagingDatabase,
    agents,
    conversation_items,
    customers,
    quarantine,
    topics,
)

DAY = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
TS = "2026-03-01T10:00:00.000Z"
NON_ASCII = "café – naïve 日本語 😀 \u2028 end"
LATIN1 = b'{"id": "latin1", "customerId": "c1", "timestamp": "' + TS.encode() + b'", "content": {"type": "SMS", "content": "caf\xe9"}}'
LATIN1_OFFSET = LATIN1.index(b"\xe9")


def _item(item_id: str, *, content: dict | None = None, **top) -> dict:
    obj = {
        "id": item_id,
        "customerId": "c1",
        "conversationId": "conv1",
        "timestamp": TS,
        "initiator": {"id": "c1", "type": "CUSTOMER"},
        "content": content or {"type": "SMS", "content": f"hello {item_id}"},
    }
    obj.update(top)
    return obj


def _line(obj, ascii_only: bool = False) -> bytes:
    return json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8")


def _attachment_item(item_id: str, size_json: str) -> bytes:
    """An item whose attachment's fileSize is `size_json` written verbatim (NaN, Infinity, 1e400)."""
    text = json.dumps(_item(item_id, content={"type": "EMAIL", "body": "x", "attachments": [{"id": "a1", "fileSize": 7}]}))
    return text.replace('"fileSize": 7', f'"fileSize": {size_json}').encode()


# (line bytes, None for a good line with that id / a regex the quarantine reason must match)
def _item_lines() -> list[tuple[bytes, str | None]]:
    nested = b'{"id": "deep", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    return [
        (_line(_item("good-1")), "good-1"),
        (_attachment_item("nan", "NaN"), re.compile(r"NaN")),
        (_line(_item("good-2")), "good-2"),
        (_attachment_item("inf", "Infinity"), re.compile(r"Infinity")),
        (_attachment_item("neginf", "-Infinity"), re.compile(r"Infinity")),
        (_attachment_item("huge-float", "1e400"), re.compile(r"1e400.*(range|finite)")),
        (_attachment_item("neg-size", "-5"), re.compile(r"fileSize")),
        (_line(_item("old", timestamp="0001-01-01T00:00:00+14:00")), re.compile(r"timestamp.*range")),
        (_line(_item("late", timestamp="9999-12-31T23:59:59-14:00")), re.compile(r"timestamp.*range")),
        (b"[" * 100_000, re.compile(r"nested")),
        (nested, re.compile(r"nested")),
        (_line(_item("deep-ok-for-python", extra=json.loads("[" * 300 + "]" * 300))), re.compile(r"nested")),
        (_line(_item("nul-body", content={"type": "SMS", "content": "a\x00b"})), re.compile(r"NUL")),
        (_line(_item("nul-key", payload={"k\x00": 1})), re.compile(r"NUL")),
        (_line({**_item("surrogate"), "content": {"type": "SMS", "content": "\ud800x"}}, ascii_only=True), re.compile(r"surrogate")),
        (_line(_item("x" * 80)), re.compile(r"record x{64}…: id is 80 characters.*64")),
        (_line(_item("long-customer", customerId="c" * 65)), re.compile(r"customerId is 65 characters.*64")),
        (_line(_item("long-conv", conversationId="v" * 70)), re.compile(r"conversationId is 70 characters")),
        (_line(_item("long-author", initiator={"id": "a" * 90, "type": "AGENT"})), re.compile(r"initiator.id is 90 characters")),
        (_line(_item("long-type", content={"type": "T" * 70, "body": "x"})), re.compile(r"content.type is 70 characters.*64.*kind")),
        (LATIN1, re.compile(rf"UTF-8.*byte 0xe9 at byte offset {LATIN1_OFFSET}\b")),
        (b'{"id": "raw-nul", "x": "a\x00b"}', re.compile(r"malformed")),
        (b"[1, 2]", re.compile(r"not a JSON object")),
        (b'"just a string"', re.compile(r"not a JSON object")),
        (b"null", re.compile(r"not a JSON object")),
        (b"\x1c", re.compile(r"malformed")),  # not JSON whitespace: a line, not a blank
        (_line(_item("non-ascii", content={"type": "SMS", "content": NON_ASCII})), "non-ascii"),
        (_line(_item("non-ascii-escaped", content={"type": "SMS", "content": NON_ASCII}), ascii_only=True), "non-ascii-escaped"),
        (_line(_item("crlf")) + b"\r", "crlf"),  # a CRLF line ending
        (_line(_item("good-3")), "good-3"),
    ]


def _write(path, lines: list[bytes], bom: bool = False, blanks: bool = True) -> dict[int, bytes]:
    """Write the lines with a blank line (and a whitespace-only one) after every third; returns
    {physical line number: line}."""
    out, numbered = [], {}
    for index, line in enumerate(lines):
        out.append(line)
        numbered[len(out)] = line
        if blanks and index % 3 == 2:
            out += [b"", b" \t"]
    data = b"\n".join(out) + b"\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return numbered


def _job(tmp_path, files: dict[str, list[bytes]], bom: bool = False) -> tuple[ArchivedJob, dict[str, dict[int, bytes]]]:
    directory = tmp_path / "job-h"
    directory.mkdir(exist_ok=True)
    numbered = {name: _write(directory / name, lines, bom=bom) for name, lines in files.items()}
    return ArchivedJob("job-h", DAY[0], DAY[1], DAY[1], "api", directory, {}), numbered


def _snapshot(db: StagingDatabase) -> dict[str, list]:
    """Every staged and quarantined row without the time it was written."""
    out = {}
    with db.engine.connect() as conn:
        for table in (conversation_items, customers, agents, topics, quarantine):
            cols = [c for c in table.columns if c.name not in ("staged_at", "quarantined_at")]
            out[table.name] = [tuple(r) for r in conn.execute(sa.select(*cols).order_by(*table.primary_key.columns))]
    return out


def _quarantined(db: StagingDatabase, file_name: str) -> dict[int, dict]:
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(quarantine).where(quarantine.c.file_name == file_name)).mappings().all()
    return {r["line_no"]: dict(r) for r in rows}


def _check_file(db, job, file_name, numbered, expectations, table, window=None):
    counts = stage_job_file(db, job, file_name, window)
    bad = _quarantined(db, file_name)
    good_ids = {e for e in expectations if isinstance(e, str)}
    with db.engine.connect() as conn:
        staged = {r[0] for r in conn.execute(sa.select(table.c.source_id))}
    assert staged == good_ids
    for (line_no, _), expected in zip(numbered.items(), expectations, strict=True):
        if isinstance(expected, str):
            assert line_no not in bad, (line_no, bad.get(line_no))
        else:
            assert line_no in bad, f"line {line_no} ({expected.pattern}) was not quarantined"
            assert expected.search(bad[line_no]["reason"]), (line_no, bad[line_no]["reason"])
    assert set(bad) == {n for n, e in zip(numbered, expectations) if not isinstance(e, str)}
    assert counts.lines == len(numbered)
    assert counts.lines == counts.staged + counts.quarantined + counts.skipped_outside_window
    assert (counts.staged, counts.quarantined) == (len(good_ids), len(bad))
    return counts, bad


def test_each_hostile_item_line_is_one_quarantined_line_and_the_rest_is_staged(staging_url, tmp_path):
    db = StagingDatabase(staging_url)
    db.create_schema()
    lines = _item_lines()
    job, numbered = _job(tmp_path, {"conversation_items.jsonl": [line for line, _ in lines]}, bom=True)
    expectations = [e for _, e in lines]
    counts, bad = _check_file(db, job, "conversation_items.jsonl", numbered["conversation_items.jsonl"], expectations, conversation_items, DAY)

    # The quarantined raw text is storable and still shows the problem.
    by_reason = {n: r for n, r in bad.items()}
    latin1 = next(r for r in by_reason.values() if "UTF-8" in r["reason"])
    assert "caf\\xe9" in latin1["raw_text"]
    raw_nul = next(r for r in by_reason.values() if '"raw-nul"' in r["raw_text"])
    assert "a\\x00b" in raw_nul["raw_text"] and "\x00" not in raw_nul["raw_text"]

    # Valid non-ASCII text is staged unchanged, written raw or as \u escapes.
    with db.engine.connect() as conn:
        texts = dict(conn.execute(sa.select(conversation_items.c.source_id, conversation_items.c.text).where(
            conversation_items.c.source_id.in_(["non-ascii", "non-ascii-escaped"]))).all())
    assert texts == {"non-ascii": NON_ASCII, "non-ascii-escaped": NON_ASCII}

    before = _snapshot(db)
    again = stage_job_file(db, job, "conversation_items.jsonl", DAY)
    assert again == counts
    assert _snapshot(db) == before
    db.dispose()


def test_hostile_entity_lines_are_quarantined_and_the_rest_staged(staging_url, tmp_path):
    db = StagingDatabase(staging_url)
    db.create_schema()
    files = {
        "customers.jsonl": [
            (_line({"id": "c1", "name": "Ann", "emailAddresses": ["ann@x.com"]}), "c1"),
            (_line({"id": "c" * 65, "name": "Long"}), re.compile(r"id is 65 characters.*source_id")),
            (_line({"id": "c2", "name": "N\x00ul"}), re.compile(r"NUL")),
            (_line({"id": "c3", "emailAddresses": [{"original": 5}], "emails": [{"original": 7}]}), "c3"),
            (b"[]", re.compile(r"not a JSON object")),
            (b'{"id": "c4", "name": "Jos\xe9"}', re.compile(r"UTF-8.*byte 0xe9 at byte offset 25\b")),
            (_line({"id": "c5", "name": ["not", "a", "string"], "customAttributes": {"a": NON_ASCII}}), "c5"),
        ],
        "agents.jsonl": [
            (_line({"id": "ag1", "name": "Bo", "emailAddress": "bo@x.com"}), "ag1"),
            (_line({"id": "ag2", "name": {"first": "Bo"}, "emailAddress": 5}), "ag2"),
            (_line({"id": "g" * 80, "name": "Long"}), re.compile(r"id is 80 characters")),
            (_line({"id": "ag3", "name": "\ud800"}, ascii_only=True), re.compile(r"surrogate")),
            (b"42", re.compile(r"not a JSON object")),
        ],
        "topics.jsonl": [
            (_line({"id": "t1", "name": "Billing"}), "t1"),
            (_line({"id": "t2", "name": "Sub", "parentId": "p" * 70}), re.compile(r"parentId is 70 characters")),
            (_line({"id": "t3", "name": "N\x00"}), re.compile(r"NUL")),
            (_line({"id": "t4", "name": 5}), re.compile(r"topic t4 has no name")),
            (b'{"id": "t5", "name": NaN}', re.compile(r"NaN")),
        ],
    }
    job, numbered = _job(tmp_path, {name: [line for line, _ in rows] for name, rows in files.items()})
    tables = {"customers.jsonl": customers, "agents.jsonl": agents, "topics.jsonl": topics}
    all_counts = {}
    for name, rows in files.items():
        all_counts[name], _ = _check_file(db, job, name, numbered[name], [e for _, e in rows], tables[name])
    with db.engine.connect() as conn:
        c3 = conn.execute(sa.select(customers).where(customers.c.source_id == "c3")).mappings().one()
        c5 = conn.execute(sa.select(customers).where(customers.c.source_id == "c5")).mappings().one()
        ag2 = conn.execute(sa.select(agents).where(agents.c.source_id == "ag2")).mappings().one()
    assert c3["primary_email"] is None and c3["emails"] == []  # non-string addresses are not addresses
    assert c5["name"] is None and c5["custom_attributes"] == {"a": NON_ASCII}
    assert ag2["name"] is None and ag2["email"] is None

    before = _snapshot(db)
    for name in files:
        assert stage_job_file(db, job, name) == all_counts[name]
    assert _snapshot(db) == before
    db.dispose()


def test_an_unexpected_mapper_error_quarantines_its_line_only(staging_url, tmp_path, monkeypatch):
    """A bug in a mapper for one odd line costs that line (named as unexpected), not the file."""
    real = staging.parse_item

    def flaky(obj):
        if obj["id"] == "boom":
            raise KeyError("surprise")
        return real(obj)

    monkeypatch.setattr(staging, "parse_item", flaky)
    db = StagingDatabase(staging_url)
    db.create_schema()
    job, numbered = _job(tmp_path, {"conversation_items.jsonl": [_line(_item(i)) for i in ("a", "boom", "b")]})
    counts = stage_job_file(db, job, "conversation_items.jsonl", DAY)
    assert (counts.lines, counts.staged, counts.quarantined) == (3, 2, 1)
    (row,) = _quarantined(db, "conversation_items.jsonl").values()
    assert row["line_no"] == 2 and row["reason"].startswith("unexpected: KeyError") and "surprise" in row["reason"]
    db.dispose()


def test_an_over_long_line_is_quarantined_without_holding_it_and_long_raw_text_is_capped(staging_url, tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 10_000)
    monkeypatch.setattr(staging, "RAW_TEXT_LIMIT", 500)
    db = StagingDatabase(staging_url)
    db.create_schema()
    huge = _line(_item("huge", content={"type": "SMS", "content": "z" * 50_000}))
    long_bad = _line(_item("long-bad", timestamp="nope", content={"type": "SMS", "content": "y" * 5_000}))
    job, numbered = _job(tmp_path, {"conversation_items.jsonl": [_line(_item("a")), huge, long_bad, _line(_item("b"))]})
    counts = stage_job_file(db, job, "conversation_items.jsonl", DAY)
    assert (counts.lines, counts.staged, counts.quarantined) == (4, 2, 2)
    bad = _quarantined(db, "conversation_items.jsonl")
    assert set(bad) == {2, 3}
    assert re.search(r"line is \d+ bytes.*10000", bad[2]["reason"])
    assert re.search(r"RFC3339", bad[3]["reason"])
    for row in bad.values():
        assert len(row["raw_text"]) < 700 and "truncated" in row["raw_text"]
        assert row["raw_text"].startswith('{"id": "')
    db.dispose()


def test_read_jsonl_numbers_physical_lines_and_names_each_problem(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n{"b": "caf\xe9"}\r\n  \n{"c": 2}\r\n{"d": "x\r"}\n[1]\n{"e": 3}')
    got = [(line.line_no, line.obj, line.error) for line in jsonl.read_jsonl(path)]
    assert [g[0] for g in got] == [1, 3, 5, 6, 7, 8]
    assert got[0][1] == {"a": 1} and got[2][1] == {"c": 2} and got[5][1] == {"e": 3}
    assert "UTF-8" in got[1][2] and got[1][1] is None
    assert "malformed" in got[3][2]  # a raw CR inside a string is a control character, not a line break
    assert "not a JSON object" in got[4][2]
    # the three-field form keeps working for its existing users
    assert [t[:2] for t in jsonl.iter_jsonl(path)][0] == (1, {"a": 1})
    from sim.synth.dataset import iter_jsonl as reexported

    assert reexported is jsonl.iter_jsonl


def test_read_jsonl_of_a_missing_file_yields_nothing(tmp_path):
    assert list(jsonl.read_jsonl(tmp_path / "absent.jsonl")) == []
