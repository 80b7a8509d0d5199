"""Fuzzing the two doors hostile input comes through (issue 12): the landing folder and staging.

Hypothesis throws random bytes, random JSON and random ZIPs (clashing, absolute, `..` and link
members, bombs in miniature, garbage instead of a ZIP) at `ExportArchive.archive_from_landing` and
`stage_job_file`, and asserts what a user relies on: nothing crashes, every input line is either
staged or quarantined with a reason, and nothing is written outside `MIGRATION_DATA_DIR`.
Both engines; each example works in its own job so examples never see each other's rows.
"""

from __future__ import annotations

import json
import shutil
import stat
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migration_pipeline.vendors.gladly.archive import EXPORT_FILE_NAMES, ArchivedJob, ExportArchive, ZipLimits
from migration_pipeline.vendors.gladly.staging import stage_job_file
from migration_pipeline.lib.staging.db import StagingDatabase, conversation_items, customers, quarantine

# Clashing member names are part of the fuzz: zipfile warns when writing them.
pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")

DAY = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies ---------------------------------------------------------------------------------
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
timestamps = st.one_of(
    st.datetimes(min_value=datetime(2026, 2, 28), max_value=datetime(2026, 3, 4), timezones=st.just(UTC)).map(
        lambda d: d.isoformat()
    ),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-03-01T10:00:00", "", "yesterday"]),
    json_values,
)


@st.composite
def item_like(draw) -> dict:
    """Something shaped like a conversation item, each field valid, absent or hostile."""
    content = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "type": st.one_of(st.sampled_from(["EMAIL", "SMS", "CHAT_MESSAGE", "PHONE_CALL", "TOPIC_CHANGE"]), json_values,
                                  st.text(min_size=60, max_size=80)),
                "body": st.one_of(st.text(max_size=200), json_values),
                "content": st.one_of(st.text(max_size=200), json_values),
                "attachments": st.one_of(
                    st.lists(st.fixed_dictionaries({"id": st.text(max_size=70)}, optional={"fileSize": json_values}), max_size=3),
                    json_values,
                ),
            },
        )
    )
    item = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "customerId": st.one_of(st.text(min_size=1, max_size=70), json_values),
                "conversationId": st.one_of(st.text(max_size=70), json_values),
                "timestamp": timestamps,
                "initiator": st.one_of(st.fixed_dictionaries({"id": st.text(max_size=70), "type": st.text(max_size=10)}), json_values),
                "extra": json_values,
            },
        )
    )
    item["content"] = draw(st.one_of(st.just(content), json_values))
    return item


def _item_line(item: dict, line_id: str) -> bytes:
    return json.dumps({"id": line_id, **item}).encode("utf-8", "surrogatepass")


lines = st.one_of(
    item_like().map(lambda item: ("item", item)),
    json_values.map(lambda v: ("raw", json.dumps(v).encode("utf-8", "surrogatepass"))),
    st.binary(max_size=120).map(lambda b: ("raw", b.replace(b"\n", b" "))),
    st.sampled_from([b"NaN", b'{"id": "n", "x": NaN}', b'{"id": "i", "x": 1e400}', b"[" * 5000, b'{"id": "caf\xe9"}',
                     b'{"id": "nul\\u0000"}', b"\xef\xbb\xbf{}", b"\x00\x00"]).map(lambda b: ("raw", b)),
)


def _write_lines(path: Path, drawn: list[tuple[str, object]], prefix: str) -> dict[int, str | None]:
    """Write the drawn lines; items get ids unique to this example. Returns {line number: item id
    or None} for every line that is not blank (blank lines are not records)."""
    out, numbered = [], {}
    for n, (kind, value) in enumerate(drawn, start=1):
        if kind == "item":
            line_id = f"{prefix}-{n}"
            out.append(_item_line(value, line_id))  # type: ignore[arg-type]
        else:
            line_id = None
            out.append(value)  # type: ignore[arg-type]
        if out[-1].strip(b" \t\r"):
            numbered[n] = line_id
    path.write_bytes(b"\n".join(out) + b"\n")
    return numbered


def _assert_every_line_accounted_for(db: StagingDatabase, job_id: str, numbered: dict[int, str | None], counts, table) -> None:
    with db.engine.connect() as conn:
        bad = {
            r.line_no: r.reason
            for r in conn.execute(sa.select(quarantine.c.line_no, quarantine.c.reason).where(quarantine.c.job_id == job_id))
        }
        if table is conversation_items:
            staged = {r.line_no for r in conn.execute(sa.select(table.c.line_no).where(table.c.job_id == job_id))}
        else:
            staged = {r.source_id for r in conn.execute(sa.select(table.c.source_id).where(table.c.job_id == job_id))}
    assert all(reason.strip() for reason in bad.values()), bad
    assert counts.lines == len(numbered)
    assert counts.lines == counts.staged + counts.quarantined + counts.skipped_outside_window
    assert counts.quarantined == len(bad)
    assert set(bad) <= set(numbered)
    if table is conversation_items:
        # Every line is staged (by its line number), quarantined, or outside the window.
        assert not staged & set(bad)
        assert len(staged) + len(bad) + counts.skipped_outside_window == len(numbered)


def _stage_twice(db: StagingDatabase, tmp_path: Path, drawn, file_name: str, table, window=None) -> None:
    """Write the drawn lines as one job's file, stage it, check every line, stage it again."""
    job_id = f"fuzz-{uuid.uuid4().hex[:12]}"
    directory = tmp_path / job_id
    directory.mkdir()
    numbered = _write_lines(directory / file_name, drawn, job_id)
    job = ArchivedJob(job_id, DAY[0], DAY[1], DAY[1], "api", directory, {})
    counts = stage_job_file(db, job, file_name, window)
    _assert_every_line_accounted_for(db, job_id, numbered, counts, table)
    assert stage_job_file(db, job, file_name, window) == counts
    shutil.rmtree(directory)


@FUZZ
@given(drawn=st.lists(lines, min_size=1, max_size=25))
def test_random_item_lines_are_staged_or_quarantined_never_crash(staging_db, tmp_path, drawn):
    _stage_twice(staging_db, tmp_path, drawn, "conversation_items.jsonl", conversation_items, DAY)


customer_like = st.dictionaries(
    st.sampled_from(["id", "name", "emailAddresses", "phoneNumbers", "emails", "customAttributes", "externalCustomerId"]),
    json_values,
).map(lambda d: ("raw", json.dumps(d).encode("utf-8", "surrogatepass")))


@FUZZ
@given(drawn=st.lists(st.one_of(customer_like, lines), min_size=1, max_size=20))
def test_random_customer_lines_are_staged_or_quarantined_never_crash(staging_db, tmp_path, drawn):
    _stage_twice(staging_db, tmp_path, drawn, "customers.jsonl", customers)


# -- random ZIPs in the landing folder ------------------------------------------------------------
member_names = st.one_of(
    st.sampled_from(EXPORT_FILE_NAMES),
    st.tuples(st.sampled_from(["", "day1/", "day2/", "a/b/", "../", "../../", "/", "/tmp/", "C:/", "..\\", "./"]),
              st.sampled_from(EXPORT_FILE_NAMES + ("job.json", "notes.txt", "x"))).map("".join),
    st.text(max_size=30),
)


@st.composite
def member_data(draw) -> bytes:
    kind = draw(st.sampled_from(["items", "bytes", "job", "zeros"]))
    if kind == "items":
        drawn = draw(st.lists(lines, max_size=8))
        return b"\n".join(_item_line(v, f"z{n}") if k == "item" else v for n, (k, v) in enumerate(drawn)) + b"\n"
    if kind == "job":
        return json.dumps({"parameters": draw(st.dictionaries(st.sampled_from(["startAt", "endAt"]), timestamps))}).encode(
            "utf-8", "surrogatepass")
    if kind == "zeros":
        return bytes(draw(st.integers(min_value=0, max_value=3_000_000)))
    return draw(st.binary(max_size=300))


@st.composite
def landing_zip(draw) -> tuple[bytes | None, list[tuple[str, bytes, bool]]]:
    """(garbage instead of a ZIP, or None) and the members: (name, data, is a symlink)."""
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return draw(st.binary(max_size=200)), []
    members = draw(st.lists(st.tuples(member_names, member_data(), st.integers(min_value=0, max_value=9).map(lambda n: n == 0)),
                            min_size=1, max_size=6))
    return None, members


def _write_zip(path: Path, garbage: bytes | None, members: list[tuple[str, bytes, bool]]) -> None:
    if garbage is not None:
        path.write_bytes(garbage)
        return
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, link in members:
            info = zipfile.ZipInfo(name or "empty")
            info.compress_type = zipfile.ZIP_DEFLATED
            if link:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                data = b"/etc/passwd"
            archive.writestr(info, data)


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@FUZZ
@given(zips=st.lists(landing_zip(), min_size=1, max_size=3))
def test_random_landing_zips_never_crash_or_write_outside_the_data_dir(staging_url, tmp_path, zips):
    sandbox = tmp_path / f"sandbox-{uuid.uuid4().hex[:8]}"
    data_dir = sandbox / "data"
    landing = data_dir / "landing" / "gladly"
    landing.mkdir(parents=True)
    for n, (garbage, members) in enumerate(zips):
        _write_zip(landing / f"export-{n}.zip", garbage, members)
    archive = ExportArchive(data_dir, ZipLimits(max_unzipped_bytes=8 << 20, max_ratio=50.0, ratio_floor_bytes=1 << 16))

    scan = archive.archive_from_landing(landing)

    assert all(r.reason.strip() for r in scan.rejected)
    outside = {p for p in _files_under(sandbox) if not p.is_relative_to(data_dir)}
    assert outside == set(), outside
    scratch = archive.scratch_root
    assert not scratch.exists() or not any(scratch.iterdir()), "a refused or finished export left scratch files"
    db = StagingDatabase(staging_url)
    db.create_schema()
    try:
        for job, _new in scan.archived:
            assert archive.verify(job)
            for name in job.files:
                counts = stage_job_file(db, job, name, (job.start_at, job.end_at))
                assert counts.lines == counts.staged + counts.quarantined + counts.skipped_outside_window
    finally:
        db.dispose()
    shutil.rmtree(sandbox)
