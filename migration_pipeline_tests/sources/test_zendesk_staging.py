"""Zendesk's raw and staged layers (vendors/zendesk/archive.py, staging.py) on a generated messy
dataset: landing folder -> archive (byte for byte, sha256, refusals) -> staging on SQLite and
PostgreSQL (every valid comment once, every malformed line quarantined with its reason,
idempotent); the `absent` export's comments and a delta through the incremental export come from
the Zendesk emulator over real HTTP."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from migration_pipeline.lib.staging.db import (
    StagingDatabase,
    agents,
    conversation_items,
    conversations,
    customers,
    quarantine,
)
from migration_pipeline.vendors.zendesk.archive import COMMENTS_FILE, COMMENTS_PARTIAL, RESPONSES_DIR, ZendeskArchive
from migration_pipeline.vendors.zendesk.client import ZendeskClient
from migration_pipeline.vendors.zendesk.staging import CommentsNotArchived, StageCounts, stage_delivery
from migration_pipeline_tests.synth.zendesk_helpers import ZendeskDataset
from sim.emulators.common import RunningServer
from sim.emulators.zendesk import create_app
from sim.emulators.zendesk.store import epoch_seconds
from sim.synth.zendesk import generate

PAIR = "zendesk_to_gladly"
EMAIL, TOKEN = "migrator@example.com", "zd-staging-token"
END = date(2024, 6, 1)
DELTA_DAY = (datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 2, tzinfo=UTC))
REASONS = {"truncated_json": "malformed JSON", "missing_id": "no id", "invalid_utf8": "not valid UTF-8"}
KINDS = ("tickets", "users", "organizations")


@pytest.fixture(scope="module")
def zd(tmp_path_factory: pytest.TempPathFactory) -> ZendeskDataset:
    root = tmp_path_factory.mktemp("zendesk-staging")
    generate(root, customers=10, days=3, seed=23, end=END)
    return ZendeskDataset(root)


@pytest.fixture
def emulator(zd: ZendeskDataset) -> Iterator[Any]:
    """Start emulators of the dataset (no limits; the clock at the export unless `now`)."""
    running: list[tuple[RunningServer, ZendeskClient]] = []

    def start(now: datetime | None = None) -> tuple[RunningServer, ZendeskClient]:
        app = create_app(zd.root, email=EMAIL, api_token=TOKEN, rate_limit_per_minute=None,
                         incremental_limit_per_minute=None, now=now)
        server = RunningServer(app).start()
        client = ZendeskClient(server.url, EMAIL, TOKEN, requests_per_minute=None, incremental_requests_per_minute=None)
        running.append((server, client))
        return server, client

    yield start
    for server, client in running:
        client.close()
        server.stop()


@pytest.fixture
def db(zendesk_gladly_db: StagingDatabase) -> StagingDatabase:
    return zendesk_gladly_db


def api_requests(server: RunningServer) -> list[dict[str, Any]]:
    return [r for r in httpx.get(server.url + "/_emulator/requests").json() if r["path"].startswith("/api/")]


def landing_of(tmp_path: Path, *files: Path) -> Path:
    landing = tmp_path / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy(path, landing / path.name)
    return landing


def export_files(zd: ZendeskDataset, mode: str) -> list[Path]:
    return [zd.layout.plain_export(mode, kind) for kind in KINDS]


def rows(db: StagingDatabase, table: sa.Table, *columns: str) -> dict[str, tuple]:
    """Each row by source id, without staged_at (the one column a re-stage refreshes)."""
    picked = [table.c[c] for c in columns] if columns else [c for c in table.columns if c.name != "staged_at"]
    with db.engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(sa.select(table.c.source_id, *picked))}


def quarantined(db: StagingDatabase) -> dict[tuple[str, int], str]:
    with db.engine.connect() as conn:
        return {(r.file_name, r.line_no): r.reason for r in conn.execute(sa.select(quarantine))}


def ground_truth_comments(zd: ZendeskDataset) -> dict[str, dict[str, Any]]:
    return {str(c["id"]): c for _, c in zd.comments_of_export("embedded")}


def export_line_count(zd: ZendeskDataset, mode: str) -> int:
    return sum(len(zd.export_lines(mode, kind)) for kind in KINDS)


def assert_malformed_lines_quarantined(db: StagingDatabase, zd: ZendeskDataset, name_of: dict[str, str]) -> None:
    bad = quarantined(db)
    planted = zd.mess("malformed_lines")
    assert len(bad) == len(planted) == 4
    for entry in planted:
        reason = bad[(name_of[entry["file"]], entry["line"])]
        assert REASONS[entry["reason"]] in reason, (entry, reason)


# -- the raw layer ------------------------------------------------------------------------------


def test_landing_is_archived_byte_for_byte_once_and_refusals_are_named(tmp_path: Path, zd: ZendeskDataset) -> None:
    gz = [zd.layout.gz_export("embedded", kind) for kind in KINDS]
    landing = landing_of(tmp_path, *gz)
    (landing / "notes.txt").write_text("not an export")
    (landing / "more").mkdir()
    (landing / "linked.json").symlink_to(zd.layout.plain_export("embedded", "users"))
    with zipfile.ZipFile(landing / "evil.zip", "w") as zf:
        zf.writestr("../escape.json", "{}\n")
    (landing / ".uploading.json").write_text("{}")
    archive = ZendeskArchive(tmp_path / "data")

    result = archive.archive_from_landing(landing)
    delivery = result.delivery
    assert result.fresh and delivery is not None and delivery.kind == "export"
    assert set(delivery.files) == {p.name for p in gz}
    for path in gz:
        archived = delivery.file_path(path.name)
        assert archived.read_bytes() == path.read_bytes()
        assert delivery.files[path.name] == {"bytes": path.stat().st_size,
                                             "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    refused = dict(result.refused)
    assert set(refused) == {"notes.txt", "more", "linked.json", "evil.zip"}
    assert "symbolic link" in refused["linked.json"] and "folder" in refused["more"]
    assert "not an export file" in refused["notes.txt"] and "unsafe member path" in refused["evil.zip"]
    meta = json.loads((delivery.directory / "archive.json").read_text())
    assert meta["archivedAt"] and meta["origin"]["landedAs"] == {p.name: p.name for p in gz}
    assert {r["file"] for r in meta["refused"]} == set(refused)

    inodes = {n: delivery.file_path(n).stat().st_ino for n in delivery.files}
    again = archive.archive_from_landing(landing)
    assert not again.fresh and again.delivery is not None and again.delivery.delivery_id == delivery.delivery_id
    assert {n: delivery.file_path(n).stat().st_ino for n in delivery.files} == inodes  # nothing copied again
    assert [d.delivery_id for d in archive.deliveries()] == [delivery.delivery_id]

    (delivery.directory / "archive.json").unlink()  # an interrupted copy: redone
    assert archive.deliveries() == []
    redone = archive.archive_from_landing(landing)
    assert redone.fresh and redone.delivery is not None and archive.verify(redone.delivery)
    assert [d.delivery_id for d in archive.deliveries()] == [delivery.delivery_id]
    assert not any((archive.scratch_root).iterdir())

    other = landing_of(tmp_path / "second", *export_files(zd, "embedded"))
    second = archive.archive_from_landing(other).delivery
    assert second is not None and second.delivery_id != delivery.delivery_id
    assert len(archive.deliveries()) == 2


# -- the staged layer ---------------------------------------------------------------------------


def test_embedded_export_staged_once_with_quarantine_window_and_idempotence(
    db: StagingDatabase, tmp_path: Path, zd: ZendeskDataset
) -> None:
    delivery = ZendeskArchive(tmp_path / "data").archive_from_landing(landing_of(tmp_path, *export_files(zd, "embedded"))).delivery
    assert delivery is not None
    truth = ground_truth_comments(zd)
    day = (datetime(2024, 5, 30, tzinfo=UTC), datetime(2024, 5, 31, tzinfo=UTC))
    in_day = {i for i, c in truth.items() if c["created_at"].startswith("2024-05-30")}

    windowed = stage_delivery(db, delivery, day)
    assert set(rows(db, conversation_items)) == in_day and in_day
    assert (windowed.items, windowed.skipped_outside_window) == (len(in_day), len(truth) - len(in_day))

    counts = stage_delivery(db, delivery)
    staged = rows(db, conversation_items, "conversation_id", "author_type", "visibility", "job_id")
    assert set(staged) == set(truth) and len(truth) == zd.manifest["counts"]["comments"]
    assert counts.lines == export_line_count(zd, "embedded") and counts.items == len(truth)
    assert (counts.conversations, counts.ignored) == (zd.manifest["counts"]["tickets"], zd.manifest["counts"]["organizations"])
    assert counts.quarantined == 4 and counts.skipped_outside_window == 0 and counts.stale == 0
    assert_malformed_lines_quarantined(db, zd, {name: name for name in delivery.files})
    with db.engine.connect() as conn:
        jobs = set(conn.execute(sa.select(quarantine.c.job_id)).scalars())
    assert jobs == {delivery.delivery_id}

    # users: end users are customers, agents and admins agents; comments by agents say so
    users = zd.export_objects("embedded", "users")
    agent_ids = {str(i) for i, u in users.items() if u["role"] in ("agent", "admin")}
    assert set(rows(db, agents)) == agent_ids and len(agent_ids) == zd.manifest["counts"]["agents"]
    assert set(rows(db, customers)) == {str(i) for i, u in users.items() if u["role"] == "end-user"}
    for comment_id, (conversation_id, author_type, visibility, job) in staged.items():
        comment = truth[comment_id]
        assert author_type == ("agent" if str(comment["author_id"]) in agent_ids else "customer"), comment
        assert visibility == ("public" if comment["public"] else "private") and job == delivery.delivery_id

    before = {t.name: rows(db, t) for t in (conversation_items, conversations, customers, agents)}
    bad_before = quarantined(db)
    again = stage_delivery(db, delivery)
    assert again == counts
    assert {t.name: rows(db, t) for t in (conversation_items, conversations, customers, agents)} == before
    assert quarantined(db) == bad_before

    # A later day holds none of the export's comments: the export is not read again for it (a daily
    # delta run reads only its own delivery); a day inside the export's span reads it again.
    assert max(c["created_at"] for c in truth.values()) < "2024-06-01"
    assert stage_delivery(db, delivery, DELTA_DAY) == StageCounts(deliveries_skipped=1)
    assert stage_delivery(db, delivery, day).lines == counts.lines
    assert {t.name: rows(db, t) for t in (conversation_items, conversations, customers, agents)} == before


def test_absent_export_gets_its_comments_from_the_api_once(
    db: StagingDatabase, tmp_path: Path, zd: ZendeskDataset, emulator: Any
) -> None:
    zipped = zd.layout.zip_export("absent")
    archive = ZendeskArchive(tmp_path / "data")
    delivery = archive.archive_from_landing(landing_of(tmp_path, zipped)).delivery
    assert delivery is not None and delivery.comments is None
    with pytest.raises(CommentsNotArchived, match="archive_comments"):
        stage_delivery(db, delivery)

    server, client = emulator()
    fetched = archive.archive_comments(client, delivery)
    tickets = zd.export_objects("absent", "tickets")
    calls = api_requests(server)
    assert {r["path"] for r in calls} == {f"/api/v2/tickets/{i}/comments.json" for i in tickets}
    assert fetched.comments is not None and fetched.comments["tickets"] == len(tickets)
    assert fetched.comments["comments"] == zd.manifest["counts"]["comments"] and archive.verify(fetched)
    assert archive.archive_comments(client, fetched) == fetched and len(api_requests(server)) == len(calls)

    # an interrupted fetch resumes after the last ticket it finished, to the same bytes
    complete = (fetched.directory / COMMENTS_FILE).read_bytes()
    lines = complete.splitlines(keepends=True)
    cut = [n for n, line in enumerate(lines, 1) if b'"fetched"' in line][4]
    (fetched.directory / COMMENTS_PARTIAL).write_bytes(b"".join(lines[:cut]) + lines[cut][:9])
    (fetched.directory / COMMENTS_FILE).unlink()
    (fetched.directory / "comments.json").unlink()
    server2, client2 = emulator()
    resumed = archive.archive_comments(client2, archive.load(delivery.delivery_id))
    assert len(api_requests(server2)) == len(tickets) - 5
    assert (resumed.directory / COMMENTS_FILE).read_bytes() == complete

    counts = stage_delivery(db, resumed)
    truth = ground_truth_comments(zd)
    staged = rows(db, conversation_items, "file_name", "conversation_id")
    assert set(staged) == set(truth) and counts.items == len(truth)
    assert all(file == COMMENTS_FILE for file, _ in staged.values())
    assert counts.lines == export_line_count(zd, "absent") + len(lines)
    assert_malformed_lines_quarantined(db, zd, {f"{k}.json": f"{zipped.name}:{k}.json" for k in KINDS})
    assert stage_delivery(db, resumed) == counts and set(rows(db, conversation_items)) == set(truth)


def test_a_delta_through_the_incremental_export_is_archived_and_staged(
    db: StagingDatabase, tmp_path: Path, zd: ZendeskDataset, emulator: Any
) -> None:
    archive = ZendeskArchive(tmp_path / "data")
    export = archive.archive_from_landing(landing_of(tmp_path, *export_files(zd, "embedded"))).delivery
    assert export is not None
    stage_delivery(db, export)
    delta_at = datetime.fromtimestamp(epoch_seconds(zd.account["deltaAt"]), UTC)
    server, client = emulator(now=delta_at)

    delivery, fresh = archive.archive_incremental(client, *DELTA_DAY, per_page=5)
    assert fresh and delivery.delivery_id == "incremental-2024-06-01" and delivery.window == DELTA_DAY
    cutoff = epoch_seconds(zd.account["deltaAt"]) - 60
    lo, hi = (int(t.timestamp()) for t in DELTA_DAY)
    newest = {i: [v for v in vs if v["generated_timestamp"] <= cutoff][-1] for i, vs in zd.api_versions().items()
              if vs[0]["generated_timestamp"] <= cutoff}
    expected = {i for i, v in newest.items() if lo <= v["generated_timestamp"] < hi}
    delta = zd.where_ids("delta_new_tickets", "ticketId") | zd.where_ids("delta_updated_tickets", "ticketId")
    assert delta <= expected and delivery.meta["tickets"] == len(expected)
    assert delivery.comments is not None and archive.verify(delivery)
    # every page of the incremental export kept as sent: the tickets the delivery holds are in them
    responses = delivery.meta["responses"]
    assert [p["response"] for p in delivery.meta["pages"]] == sorted(responses) and len(responses) > 1
    pages = [delivery.directory / RESPONSES_DIR / name for name in sorted(responses)]
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == responses[p.name]["sha256"] for p in pages)
    assert expected <= {t["id"] for p in pages for t in json.loads(p.read_bytes())["tickets"]}
    original = pages[0].read_bytes()
    pages[0].write_bytes(original.replace(b'"tickets"', b'"Tickets"', 1))
    assert not archive.verify(delivery)
    pages[0].write_bytes(original)
    calls = len(api_requests(server))
    assert archive.archive_incremental(client, *DELTA_DAY) == (delivery, False) and len(api_requests(server)) == calls

    counts = stage_delivery(db, delivery, delivery.window)
    api_comments = zd.api_comments()
    in_window = {str(c["id"]) for i in expected for c in api_comments.get(i, []) if "2024-06-01" <= c["created_at"] < "2024-06-02"}
    new_comments = {str(i) for i in zd.where_ids("delta_new_comments", "commentId")}
    assert new_comments <= in_window and counts.items == len(in_window)
    assert set(rows(db, conversation_items)) == set(ground_truth_comments(zd)) | in_window
    assert counts.quarantined == 0 and counts.conversations == len(expected)
    staged = rows(db, conversations, "status", "updated_at", "job_id")
    (deleted,) = zd.where_ids("delta_deleted_tickets", "ticketId")
    assert staged[str(deleted)][0] == "deleted"
    for ticket_id in expected:
        assert staged[str(ticket_id)][1] == newest[ticket_id]["updated_at"].replace("Z", ".000000Z")
        assert staged[str(ticket_id)][2] == delivery.delivery_id
    newcomer = zd.where_ids("delta_new_users", "userId")
    assert {str(i) for i in newcomer} <= set(rows(db, customers))

    # the older export staged again changes no ticket the delta updated
    before = rows(db, conversations)
    older = stage_delivery(db, export)
    assert older.stale >= len(zd.where_ids("delta_updated_tickets", "ticketId"))
    assert rows(db, conversations) == before
    assert stage_delivery(db, delivery, delivery.window) == counts and rows(db, conversations) == before
    # the export (all of it before the delta's day) is not read for the delta's window
    assert stage_delivery(db, export, delivery.window) == StageCounts(deliveries_skipped=1)
    assert {d.delivery_id for d in archive.deliveries()} == {export.delivery_id, delivery.delivery_id}


def test_a_file_that_breaks_off_is_not_staged_and_refusals_are_quarantined(
    db: StagingDatabase, tmp_path: Path, zd: ZendeskDataset
) -> None:
    landing = landing_of(tmp_path, zd.layout.plain_export("embedded", "users"))
    gz = zd.layout.gz_export("embedded", "tickets").read_bytes()
    (landing / "tickets.json.gz").write_bytes(gz[: len(gz) * 2 // 3])  # a download cut off
    (landing / "notes.txt").write_text("not an export")
    delivery = ZendeskArchive(tmp_path / "data").archive_from_landing(landing).delivery
    assert delivery is not None and set(delivery.files) == {"users.json", "tickets.json.gz"}

    counts = stage_delivery(db, delivery)
    assert db.count(conversations) == db.count(conversation_items) == 0 and counts.items == 0
    assert counts.customers == zd.manifest["counts"]["endUsers"] and counts.agents == zd.manifest["counts"]["agents"]
    bad = quarantined(db)
    assert set(bad) == {("tickets.json.gz", 0), ("notes.txt", 0), ("users.json", 4)} and counts.quarantined == 3
    assert "cannot be read to its end" in bad[("tickets.json.gz", 0)]
    assert "nothing of tickets.json.gz is staged" in bad[("tickets.json.gz", 0)] and "rolled back" in bad[("tickets.json.gz", 0)]
    assert "refused when archived" in bad[("notes.txt", 0)] and "not an export file" in bad[("notes.txt", 0)]
    assert stage_delivery(db, delivery) == counts and len(quarantined(db)) == 3
