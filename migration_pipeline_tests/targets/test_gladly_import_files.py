"""Gladly's historical import files: CSV batches, rejected.csv, index and manifest, read back
from disk with Python's csv module (an independent RFC 4180 reader)."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from migration_pipeline.lib.rule_files import RulesFileError, validate_rules
from migration_pipeline.vendors.gladly.import_files import (
    EMPTY_BODY,
    INDEX_FILE,
    INVALID_EMAIL,
    INVALID_TEXT,
    MANIFEST_FILE,
    MISSING_EMAIL,
    MISSING_TIMESTAMP,
    REJECTED_FILE,
    ColumnNames,
    ImportFileConfig,
    ImportRow,
    write_import_files,
)

FIRST, LAST = date(2024, 3, 1), date(2024, 3, 31)
LABEL = "2024-03-01_2024-03-31"
T0 = datetime(2024, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)


def row(i: int, **changes) -> ImportRow:
    values = dict(source_item_id=f"c{i}", timestamp=T0 + timedelta(minutes=i), title=f"Ticket {i}", body=f"Comment {i}",
                  source="Zendesk", customer_email=f"customer{i}@example.com", customer_name=f"Customer {i}",
                  customer_phone="+15550100", tags=["vip", "billing"])
    return ImportRow(**{**values, **changes})


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh, strict=True))


def batch_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"gladly-import-{LABEL}-*.csv"))


def data_rows(folder: Path) -> list[list[str]]:
    return [r for path in batch_files(folder) for r in read_csv(path)[1:]]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def mixed_rows(n: int = 40) -> list[ImportRow]:
    """Accepted rows, a long title, a split body and a reject, in one stream."""
    rows = [row(i) for i in range(n)]
    rows[3] = row(3, title="T" * 150)
    rows[5] = row(5, body="word " * 6000)  # 30,000 characters: two parts
    rows[7] = row(7, customer_email="nobody")
    return rows


def test_rerun_writes_byte_identical_files_and_drops_stale_batches(tmp_path):
    config = ImportFileConfig(rows_per_file=7)
    first = write_import_files(iter(mixed_rows()), tmp_path / "a", FIRST, LAST, source_counts={"comments": 40}, config=config)
    write_import_files(iter(mixed_rows()), tmp_path / "b", FIRST, LAST, source_counts={"comments": 40}, config=config)
    assert len(first.files) == 6
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    # Re-materializing the same folder: same bytes; a smaller range later leaves no old batch behind.
    before = snapshot(tmp_path / "a")
    write_import_files(iter(mixed_rows()), tmp_path / "a", FIRST, LAST, source_counts={"comments": 40}, config=config)
    assert snapshot(tmp_path / "a") == before
    smaller = write_import_files(iter(mixed_rows(10)), tmp_path / "a", FIRST, LAST, config=config)
    assert [p.name for p in batch_files(tmp_path / "a")] == [f.name for f in smaller.files]
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]  # no temp file left


def test_rfc4180_round_trip_keeps_quotes_commas_line_breaks_and_non_latin_text(tmp_path):
    bodies = [
        'She said "hello", then left',
        "line one\r\nline two\nline three\rend",
        '"""quoted""" ,,, "',
        "日本語のテキスト, Ελληνικά, العربية, emoji 🎉👍",
        "trailing newline\n",
        "  leading spaces",
    ]
    rows = [row(i, body=body, title=f'Re: "{i}", ünïcode') for i, body in enumerate(bodies)]
    rows.append(row(9, timestamp=datetime(2024, 3, 2, 1, 2, 3), customer_name=None, customer_phone=None, tags=[]))
    rows.append(row(10, timestamp=datetime(2024, 3, 2, 1, 2, 3, 999999, tzinfo=timezone(timedelta(hours=2)))))
    write_import_files(iter(rows), tmp_path, FIRST, LAST)
    [path] = batch_files(tmp_path)
    header, *data = read_csv(path)
    assert header == ColumnNames().header()
    assert [r[2] for r in data[: len(bodies)]] == bodies
    assert [r[1] for r in data[: len(bodies)]] == [f'Re: "{i}", ünïcode' for i in range(len(bodies))]
    assert data[0] == ["2024-03-01T09:30:00.123Z", 'Re: "0", ünïcode', bodies[0], "Zendesk", "customer0@example.com",
                       "Customer 0", "+15550100", "vip,billing"]
    assert data[-2][0] == "2024-03-02T01:02:03.000Z"  # naive: taken as UTC
    assert data[-2][5:] == ["", "", ""]
    assert data[-1][0] == "2024-03-01T23:02:03.999Z"  # converted to UTC
    # Every value is quoted, an absent one is an empty unquoted field; pyarrow ends records in LF.
    assert path.read_bytes().splitlines()[1].startswith(b'"2024-03-01T09:30:00.123Z","Re: ""0"", ')
    assert b'"+15550100","vip,billing"\n' in path.read_bytes()
    assert b',"Zendesk","customer9@example.com",,,""\n' in path.read_bytes()


def test_batches_hold_at_most_n_rows_and_keep_one_items_parts_together(tmp_path):
    config = ImportFileConfig(rows_per_file=4, max_body_chars=100)
    rows = [row(i) for i in range(10)]
    rows[2] = row(2, body="x" * 250)  # three parts: rows 3-5 would straddle the first file
    result = write_import_files(iter(rows), tmp_path, FIRST, LAST, config=config)
    names = [f"gladly-import-{LABEL}-{n:04d}.csv" for n in (1, 2, 3, 4)]
    assert [p.name for p in batch_files(tmp_path)] == [f.name for f in result.files] == names
    assert [len(read_csv(tmp_path / name)) - 1 for name in names] == [2, 4, 4, 2]
    assert [r[2] for r in read_csv(tmp_path / names[1])[1:4]] == ["x" * 100, "x" * 100, "x" * 50]
    assert result.rows_in == 10 and result.rows_written == 12 and result.continuation_rows == 2
    index = read_csv(tmp_path / INDEX_FILE)
    assert index[0] == ["source_item_id", "file", "row", "part", "parts"]
    assert index[3:6] == [["c2", names[1], str(k), str(k), "3"] for k in (1, 2, 3)]
    assert index[-1] == ["c9", names[3], "2", "1", "1"]


def test_rejected_rows_are_written_with_their_reason_and_counted(tmp_path):
    rejects = {
        "no-ts": (row(0, timestamp=None), MISSING_TIMESTAMP),
        "no-email": (row(1, customer_email=None), MISSING_EMAIL),
        "blank-email": (row(2, customer_email="   "), MISSING_EMAIL),
        "bad-1": (row(3, customer_email="not-an-email"), INVALID_EMAIL),
        "bad-2": (row(4, customer_email="a@localhost"), INVALID_EMAIL),
        "bad-3": (row(5, customer_email="two words@example.com"), INVALID_EMAIL),
        "bad-4": (row(6, customer_email="a..b@example.com"), INVALID_EMAIL),
        "bad-5": (row(7, customer_email="josé@example.com"), INVALID_EMAIL),
        "bad-6": (row(8, customer_email=f"{'x' * 65}@example.com"), INVALID_EMAIL),
        "empty": (row(9, body=""), EMPTY_BODY),
        "spaces": (row(10, body=" \r\n\t "), EMPTY_BODY),
        "surrogate": (row(11, body="broken \ud800 text"), INVALID_TEXT),
    }
    good_emails = ["first.last+tag@sub.example.co.uk", " padded@example.com ", "o'brien@xn--bcher-kva.example"]
    rows = [row(100 + i, customer_email=e) for i, e in enumerate(good_emails)]
    rows += [replace(r, source_item_id=key) for key, (r, _) in rejects.items()]
    result = write_import_files(iter(rows), tmp_path, FIRST, LAST)
    header, *rejected = read_csv(tmp_path / REJECTED_FILE)
    assert header == ["source_item_id", "reason", *ColumnNames().header()]
    assert {r[0]: r[1] for r in rejected} == {key: reason for key, (_, reason) in rejects.items()}
    by_id = {r[0]: r for r in rejected}
    assert by_id["bad-1"][2:] == ["2024-03-01T09:33:00.123Z", "Ticket 3", "Comment 3", "Zendesk", "not-an-email",
                                  "Customer 3", "+15550100", "vip,billing"]
    assert by_id["no-ts"][2] == "" and by_id["surrogate"][4] == "broken \\ud800 text"
    assert [r[4] for r in data_rows(tmp_path)] == [e.strip() for e in good_emails]
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert manifest["rejected"]["by_reason"] == {
        MISSING_TIMESTAMP: 1, MISSING_EMAIL: 2, INVALID_EMAIL: 6, EMPTY_BODY: 2, INVALID_TEXT: 1}
    assert manifest["rows"] == {"in": 15, "written": 3, "continuation": 0, "rejected": 12}
    assert sum(result.rejected_by_reason.values()) == 12


def test_long_title_is_cut_with_an_ellipsis_and_long_body_split_in_order(tmp_path):
    body = "".join(f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 20 + "\n" for i in range(110))[:60_000]
    assert len(body) == 60_000
    rows = [row(0, title="A" * 150), row(1, title="😀" * 60), row(2, title="Billing question " * 8, body=body)]
    result = write_import_files(iter(rows), tmp_path, FIRST, LAST)
    data = data_rows(tmp_path)
    assert data[0][1] == "A" * 99 + "…"
    assert data[1][1] == "😀" * 49 + "…"  # UTF-16: 98 units + the ellipsis
    parts = data[2:]
    assert len(parts) == 3
    assert "".join(p[2] for p in parts) == body
    assert all(len(p[2]) <= 25_000 for p in parts)
    assert all(p[2].endswith("\n") for p in parts[:2])  # cut at a line break, not mid-word
    assert [p[1][-len(" (part 1/3)"):] for p in parts] == [" (part 1/3)", " (part 2/3)", " (part 3/3)"]
    assert all(len(p[1]) <= 100 and p[1].startswith("Billing question Billing") for p in parts)
    assert (result.titles_cut, result.bodies_split, result.continuation_rows) == (3, 1, 2)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert (manifest["titles_cut"], manifest["bodies_split"]) == (3, 1)


def test_manifest_matches_the_files_on_disk(tmp_path):
    result = write_import_files(iter(mixed_rows()), tmp_path, FIRST, LAST,
                                source_counts={"comments_read": 41, "skipped_spam": 1}, config=ImportFileConfig(rows_per_file=9))
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert manifest == result.manifest()
    assert manifest["range"] == {"first_day": "2024-03-01", "last_day": "2024-03-31"}
    assert manifest["source_counts"] == {"comments_read": 41, "skipped_spam": 1}
    listed = [*manifest["files"], manifest["rejected"], manifest["index"]]
    assert {f["name"] for f in listed} == {p.name for p in tmp_path.iterdir()} - {MANIFEST_FILE}
    for f in listed:
        path = tmp_path / f["name"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == f["sha256"]
        assert len(read_csv(path)) - 1 == f["rows"]
    assert sum(f["rows"] for f in manifest["files"]) == manifest["rows"]["written"] == 40


def test_custom_column_names_change_the_header_and_timestamp_format_the_time(tmp_path):
    names = ["created_at", "subject", "comment", "channel", "email", "name", "phone", "labels"]
    columns = ColumnNames(**dict(zip(ColumnNames.model_fields, names, strict=True)))
    config = ImportFileConfig(columns=columns)
    write_import_files(iter([row(0), row(1, customer_email=None)]), tmp_path, FIRST, LAST, config=config)
    [path] = batch_files(tmp_path)
    assert read_csv(path)[0] == names
    assert read_csv(tmp_path / REJECTED_FILE)[0] == ["source_item_id", "reason", *names]
    config = ImportFileConfig(columns=columns, header=False, timestamp_format="%d/%m/%Y %H:%M")
    write_import_files(iter([row(0)]), tmp_path, FIRST, LAST, config=config)
    assert read_csv(path)[0][:2] == ["01/03/2024 09:30", "Ticket 0"]


def test_a_failed_run_leaves_no_manifest_and_no_temp_file(tmp_path):
    write_import_files(iter(mixed_rows()), tmp_path, FIRST, LAST, config=ImportFileConfig(rows_per_file=7))
    assert (tmp_path / MANIFEST_FILE).exists()

    def source_fails_midway():
        yield from mixed_rows()[:10]
        raise ConnectionError("source went away")

    with pytest.raises(ConnectionError):
        write_import_files(source_fails_midway(), tmp_path, FIRST, LAST, config=ImportFileConfig(rows_per_file=7))
    assert not (tmp_path / MANIFEST_FILE).exists()  # the folder reads as incomplete
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("document, message", [
    ({"columns": {"title": "Body", "body": "body"}}, "columns: Value error, column names must be unique (ignoring case): title and body are both 'body'"),
    ({"columns": {"tags": "  "}}, "columns.tags: String should have at least 1 character"),
    ({"columns": {"tags": "a\nb"}}, "columns.tags: String should match pattern"),
    ({"columns": {"subject": "x"}}, "columns.subject: Extra inputs are not permitted"),
    ({"rows_per_file": 500_001}, "rows_per_file: Input should be less than or equal to 500000"),
    ({"max_body_chars": 30_000}, "max_body_chars: Input should be less than or equal to 25000"),
    ({"continuation_marker": " (more)"}, "continuation_marker: Value error, must contain {part} and {parts}"),
    ({"continuation_marker": " {part}/{parts} {n}"}, "continuation_marker: Value error, the only placeholder allowed"),
])
def test_invalid_config_is_refused_with_the_field_and_reason(document, message):
    with pytest.raises(RulesFileError) as exc:
        validate_rules(ImportFileConfig, document, "import file config", "settings")
    assert str(exc.value).startswith("import file config settings: ")
    assert message in str(exc.value)
    with pytest.raises(ValidationError):
        ImportFileConfig.model_validate(document)


def test_range_must_not_end_before_it_starts(tmp_path):
    with pytest.raises(ValueError, match="ends"):
        write_import_files(iter([]), tmp_path, LAST, FIRST)
