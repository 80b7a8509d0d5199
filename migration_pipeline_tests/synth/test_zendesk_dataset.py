"""The messy Zendesk dataset: determinism, the export files as the facts describe them (NDJSON,
API-shaped lines, plain/.gz/.zip, comments embedded or not), every planted mess present where the
manifest says and counted, and the delta only on the API side.

One small dataset (12 end users, 5 days, fixed `end`) is generated once per module."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from migration_pipeline.cli import app
from migration_pipeline_tests.synth.helpers import tree_digest
from migration_pipeline_tests.synth.zendesk_helpers import ZendeskDataset, split_lines
from sim.synth.content import is_valid_email
from sim.synth.zendesk import LONG_BODY_CHARS, MESS_KINDS, MIN_CUSTOMERS, generate
from sim.synth.zendesk_dataset import COMMENT_MODES, EXPORT_TYPES

STANDARD = dict(customers=12, days=5, seed=3, end=date(2024, 6, 1))
URL = re.compile(r'^\{"url":"https://northwind\.zendesk\.com/api/v2/(tickets|users|organizations)/(\d+)\.json"')
NON_LATIN = re.compile("[\u0400-\u04ff\u0590-\u06ff\u3040-\u9fff\uac00-\ud7af]")


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> ZendeskDataset:
    root = tmp_path_factory.mktemp("zendesk")
    generate(root, **STANDARD)
    return ZendeskDataset(root)


def _seconds(ds: ZendeskDataset, key: str) -> int:
    from sim.emulators.zendesk.store import epoch_seconds

    return epoch_seconds(ds.account[key])


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_other_seed_other_data(ds: ZendeskDataset, tmp_path: Path) -> None:
    generate(tmp_path / "again", **STANDARD)
    assert tree_digest(tmp_path / "again") == tree_digest(ds.root)
    generate(tmp_path / "other", **{**STANDARD, "seed": 4})
    other = tree_digest(tmp_path / "other")
    assert other["zendesk/exports/embedded/tickets.json"] != tree_digest(ds.root)["zendesk/exports/embedded/tickets.json"]


def test_refuses_an_existing_dataset_and_too_few_customers(ds: ZendeskDataset, tmp_path: Path) -> None:
    with pytest.raises(FileExistsError):
        generate(ds.root, **STANDARD)
    with pytest.raises(ValueError, match="customers"):
        generate(tmp_path / "small", **{**STANDARD, "customers": MIN_CUSTOMERS - 1})


# --------------------------------------------------------------------------- the export files


def test_every_delivery_is_listed_with_its_bytes(ds: ZendeskDataset) -> None:
    listed = {f["path"]: f for f in ds.manifest["exports"]}
    on_disk = {str(p.relative_to(ds.root)) for p in ds.layout.exports_dir.rglob("*") if p.is_file()}
    assert set(listed) == on_disk
    assert {(f["comments"], f["format"]) for f in listed.values()} == {
        (mode, fmt) for mode in COMMENT_MODES for fmt in ("plain", "gz", "zip")}
    digest = tree_digest(ds.root)
    assert all(digest[path] == f["sha256"] for path, f in listed.items())


@pytest.mark.parametrize("mode", COMMENT_MODES)
def test_gz_and_zip_hold_the_plain_bytes(ds: ZendeskDataset, mode: str) -> None:
    for kind in EXPORT_TYPES:
        plain = ds.export_bytes(mode, kind)
        assert ds.export_bytes(mode, kind, "gz") == plain
        assert ds.export_bytes(mode, kind, "zip") == plain


@pytest.mark.parametrize("mode", COMMENT_MODES)
def test_export_lines_are_api_shaped_ndjson(ds: ZendeskDataset, mode: str) -> None:
    for kind in EXPORT_TYPES:
        lines = ds.export_lines(mode, kind)
        valid = [ln for ln in lines if ln.obj is not None]
        assert valid
        for ln in valid:
            match = URL.match(ln.raw.decode())
            assert match and match.group(1) == kind and int(match.group(2)) == ln.obj["id"]
            assert f".zendesk.com/api/v2/{kind}/" in ln.raw[:99].decode()  # where the facts' validator looks
        ids = [ln.obj["id"] for ln in valid]
        assert ids == sorted(ids)


def test_malformed_lines_are_exactly_those_the_manifest_lists(ds: ZendeskDataset) -> None:
    listed = {(m["file"], m["line"]): m["reason"] for m in ds.mess("malformed_lines")}
    assert set(listed.values()) == {"truncated_json", "missing_id", "invalid_utf8"}
    for mode in COMMENT_MODES:
        bad = {(f"{kind}.json", ln.number) for kind in EXPORT_TYPES for ln in ds.export_lines(mode, kind) if ln.obj is None}
        assert bad == set(listed)
    for (file, number), reason in listed.items():
        raw = split_lines(ds.export_bytes("absent", file.removesuffix(".json")))[number - 1]
        if reason == "invalid_utf8":
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
        elif reason == "missing_id":
            assert b'"id":' not in raw[:120] and raw.startswith(b'{"url":')


def test_comment_modes_differ_only_by_embedded_comments(ds: ZendeskDataset) -> None:
    embedded, absent = ds.export_objects("embedded", "tickets"), ds.export_objects("absent", "tickets")
    assert embedded.keys() == absent.keys()
    api = ds.api_comments()
    exported_at = ds.account["exportedAt"]
    for ticket_id, ticket in embedded.items():
        comments = ticket.pop("comments")
        assert ticket == absent[ticket_id] and "comments" not in absent[ticket_id]
        assert comments == [c for c in api.get(ticket_id, []) if c["created_at"] <= exported_at]


def test_export_comments_switch_writes_one_mode(tmp_path: Path) -> None:
    manifest = generate(tmp_path / "absent", **STANDARD, export_comments="absent")
    assert {f["comments"] for f in manifest["exports"]} == {"absent"}
    assert not (tmp_path / "absent/zendesk/exports/embedded").exists()
    tickets = ZendeskDataset(tmp_path / "absent").export_objects("absent", "tickets")
    assert tickets and not any("comments" in t for t in tickets.values())


# --------------------------------------------------------------------------- manifest truth


def test_every_planted_mess_is_present_and_counted(ds: ZendeskDataset) -> None:
    assert set(ds.manifest["mess"]) == set(MESS_KINDS)
    for kind, entry in ds.manifest["mess"].items():
        assert entry["count"] >= 1, kind
        assert entry["complete"] and entry["count"] == len(entry["where"]), kind


def test_counts_match_the_export(ds: ZendeskDataset) -> None:
    counts = ds.manifest["counts"]
    users = ds.export_objects("embedded", "users")
    assert counts["tickets"] == len(ds.export_objects("embedded", "tickets"))
    assert counts["users"] == len(users)
    assert counts["endUsers"] == sum(u["role"] == "end-user" for u in users.values())
    assert counts["organizations"] == len(ds.export_objects("embedded", "organizations"))
    comments = [c for _, c in ds.comments_of_export()]
    assert counts["comments"] == len(comments)
    assert counts["privateComments"] == sum(not c["public"] for c in comments)
    assert counts["attachments"] == sum(len(c["attachments"]) for c in comments)
    assert counts["commentsPerDay"] == dict(Counter(c["created_at"][:10] for c in comments))


def test_user_mess_is_in_the_files(ds: ZendeskDataset) -> None:
    users = ds.export_objects("embedded", "users")
    tickets = ds.export_objects("embedded", "tickets")
    api_users = {u["id"]: u for u in ds.api(ds.layout.api_users)}
    for entry in ds.mess("requesters_without_email"):
        assert users[entry["userId"]]["email"] is None
        assert all(tickets[t]["requester_id"] == entry["userId"] for t in entry["ticketIds"] if t in tickets)
    senders = [e for e in ds.mess("requesters_without_email") if e["senderAddress"]]
    assert senders and any(
        c["via"]["source"]["from"].get("address") == e["senderAddress"]
        for e in senders for t, c in ds.comments_of_export() if t["requester_id"] == e["userId"])
    assert all(not is_valid_email(users[e["userId"]]["email"]) for e in ds.mess("invalid_emails"))
    for entry in ds.mess("shared_emails"):
        written = [users[u]["email"] for u in entry["userIds"]]
        assert len(written) == 2 and len(set(written)) == 2 and {w.lower() for w in written} == {entry["email"]}
    deletions = {e["deletion"]: e for e in ds.mess("deleted_users")}
    soft, permanent = deletions["soft"]["userId"], deletions["permanent"]["userId"]
    assert users[soft]["active"] is False and api_users[soft]["active"] is False
    assert permanent not in users and permanent not in api_users
    assert any(t["requester_id"] == permanent for t in tickets.values())


def test_ticket_and_comment_mess_is_in_the_files(ds: ZendeskDataset) -> None:
    tickets = ds.export_objects("embedded", "tickets")
    comments = {c["id"]: c for _, c in ds.comments_of_export()}
    api_comments = {c["id"]: c for cs in ds.api_comments().values() for c in cs}
    assert all(api_comments[e["commentId"]]["public"] is False for e in ds.mess("private_comments"))
    assert any(c["public"] is False for c in comments.values())
    for entry in ds.mess("html_bodies_with_links"):
        html = api_comments[entry["commentId"]]["html_body"]
        assert all(f'href="{link}"'.replace("&", "&amp;") in html for link in entry["links"])
    (long,) = ds.mess("long_bodies")
    assert len(comments[long["commentId"]]["body"]) >= LONG_BODY_CHARS == 40_000
    assert all(len(tickets[e["ticketId"]]["subject"]) > 100 for e in ds.mess("long_subjects"))
    assert all(NON_LATIN.search(tickets[e["ticketId"]]["subject"]) for e in ds.mess("non_latin_subjects"))
    assert all(tickets[e["ticketId"]]["subject"] == "" for e in ds.mess("empty_subjects"))
    assert all(tickets[e["ticketId"]]["raw_subject"].startswith("{{dc.") for e in ds.mess("dynamic_content_subjects"))
    for entry in ds.mess("tickets_without_comments"):
        assert tickets[entry["ticketId"]]["comments"] == [] and entry["ticketId"] not in ds.api_comments()
    assert all(api_comments[e["commentId"]]["body"].startswith("Chat started:") for e in ds.mess("chat_transcripts"))
    assert all(api_comments[e["commentId"]]["metadata"]["flags"] == [4] for e in ds.mess("automatic_comments"))
    assert all(api_comments[e["commentId"]]["plain_body"].endswith("&nbsp;") for e in ds.mess("literal_nbsp_in_plain_body"))
    for kind, inline in (("attachments", False), ("inline_images", True)):
        for entry in ds.mess(kind):
            comment = api_comments[entry["commentId"]]
            (attachment,) = [a for a in comment["attachments"] if a["id"] == entry["attachmentId"]]
            assert attachment["inline"] is inline and attachment["file_name"] == entry["fileName"]
            if inline:
                assert f'src="{attachment["content_url"]}"' in comment["html_body"]


def test_the_delta_is_only_in_the_api(ds: ZendeskDataset) -> None:
    exported, delta = _seconds(ds, "exportedAt"), _seconds(ds, "deltaAt")
    export_tickets = ds.export_objects("embedded", "tickets")
    versions = ds.api_versions()
    new = ds.where_ids("delta_new_tickets", "ticketId")
    updated = ds.where_ids("delta_updated_tickets", "ticketId")
    assert new and updated and not new & export_tickets.keys() and updated <= export_tickets.keys()
    for ticket_id, ticket_versions in versions.items():
        stamps = [v["generated_timestamp"] for v in ticket_versions]
        assert stamps == sorted(stamps) and stamps[-1] <= delta - 60
        changed = [s for s in stamps if s > exported]
        assert bool(changed) == (ticket_id in new | updated), ticket_id
    embedded_ids = {c["id"] for _, c in ds.comments_of_export()}
    for entry in ds.mess("delta_new_comments"):
        assert entry["commentId"] not in embedded_ids and entry["createdAt"] > ds.account["exportedAt"]
    for entry in ds.mess("delta_deleted_tickets"):
        assert versions[entry["ticketId"]][-1]["status"] == "deleted"
        assert export_tickets[entry["ticketId"]]["status"] != "deleted"
    users = ds.export_objects("embedded", "users")
    api_users = {u["id"]: u for u in ds.api(ds.layout.api_users)}
    for entry in ds.mess("delta_new_users"):
        assert entry["userId"] not in users and api_users[entry["userId"]]["created_at"] > ds.account["exportedAt"]
        assert any(versions[t][0]["requester_id"] == entry["userId"] for t in new)


# --------------------------------------------------------------------------- the CLI


def test_generate_command_writes_a_zendesk_dataset(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["generate", "--source", "zendesk", "--customers", "10", "--days", "2", "--end", "2024-06-01"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "zd"), "--export-comments", "embedded"])
    assert result.exit_code == 0, result.output
    assert "tickets" in result.output and ZendeskDataset(tmp_path / "zd").manifest["params"]["exportComments"] == "embedded"
    refused = runner.invoke(app, [*args, "--out", str(tmp_path / "no"), "--frequency", "hourly"])
    assert refused.exit_code == 2 and "--source gladly only" in refused.output
    assert not (tmp_path / "no").exists()
