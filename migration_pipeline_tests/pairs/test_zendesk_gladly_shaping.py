"""Zendesk -> Gladly shaping: staged contract rows (real SQLite / PostgreSQL staging, the pair's
namespace) into Gladly's import files, read back from disk with Python's csv module, and every
item's outcome in imported_items."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from migration_pipeline.contract import (
    Attachment,
    Conversation,
    Customer,
    Envelope,
    Item,
)
from migration_pipeline.lib.rule_files import RulesFileError
from migration_pipeline.lib.staging.db import (
    StagingDatabase,
    conversation_columns,
    conversation_items,
    conversations,
    customer_columns,
    customers,
    imported_items,
    item_columns,
    now_text,
)
from migration_pipeline.pairs.zendesk_to_gladly import bodies
from migration_pipeline.pairs.zendesk_to_gladly.shaping import (
    EMPTY_CONVERSATION,
    JUNK_CUSTOMER,
    NOT_A_COMMENT,
    PRIVATE_NOTE,
    SPAM,
    html_to_text,
    import_rules_from_mapping,
    load_import_rules,
    write_range,
)
from migration_pipeline.vendors.gladly.import_files import (
    EMPTY_BODY,
    INVALID_EMAIL,
    MANIFEST_FILE,
    MISSING_EMAIL,
    REJECTED_FILE,
    ImportFileConfig,
)

D1 = date(2024, 3, 1)
T = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
RULES = load_import_rules()
LABEL = RULES.private_notes.label
HEADING = RULES.attachments.heading


@pytest.fixture
def db(staging_url):
    db = StagingDatabase(staging_url, namespace="zendesk_to_gladly")
    db.create_schema()
    yield db
    db.dispose()


# -- staged contract rows ------------------------------------------------------------------------
def person(cid: str, email: str | None = None, name: str | None = None, phones: tuple[str, ...] = ()) -> Customer:
    return Customer("zendesk", cid, name, emails=(email,) if email else (), phones=phones)


def ticket(tid: str, cid: str, subject: str | None = "Order question", status: str = "open",
           tags: tuple[str, ...] = ("vip", "billing"), sender: str | None = None) -> Conversation:
    return Conversation("zendesk", tid, cid, T, subject=subject, status=status, tags=tags, channel="email",
                        envelope=Envelope(sender=sender))


def comment(iid: str, tid: str, cid: str, at: datetime, html: str | None = None, text: str | None = None,
            private: bool = False, attachments: tuple[Attachment, ...] = (), kind: str | None = None,
            subject: str | None = None) -> Item:
    return Item("zendesk", iid, cid, tid, at, kind or ("note" if private else "message"),
                "private" if private else "public", "Comment", "customer", cid, "email",
                subject=subject, text=text, html=html, attachments=attachments)


def stage(db: StagingDatabase, people=(), tickets=(), items=()) -> None:
    stamp = now_text()
    with db.begin() as conn:
        db.upsert(conn, customers, [{**customer_columns(c), "staged_at": stamp} for c in people])
        db.upsert(conn, conversations, [{**conversation_columns(t), "staged_at": stamp} for t in tickets])
        db.upsert(conn, conversation_items, [
            {**item_columns(it), "job_id": "job-1", "file_name": "tickets.json", "line_no": n, "staged_at": stamp}
            for n, it in enumerate(items, 1)])


# -- reading the files back ----------------------------------------------------------------------
def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, strict=True))


def batches(folder: Path) -> list[Path]:
    return sorted(folder.glob("gladly-import-*.csv"))


def rows_of(folder: Path) -> list[dict[str, str]]:
    return [r for path in batches(folder) for r in read_csv(path)]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def outcomes(db: StagingDatabase) -> dict[str, tuple]:
    m = imported_items.c
    with db.engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(sa.select(
            m.item_id, m.import_range, m.outcome, m.file_name, m.row_number, m.parts, m.reason))}


def assert_each_item_once(db: StagingDatabase) -> dict[str, tuple]:
    """Every staged item has exactly one outcome (the primary key makes 'one'; this proves 'every')."""
    recorded = outcomes(db)
    with db.engine.connect() as conn:
        staged = {r[0] for r in conn.execute(sa.select(conversation_items.c.source_id))}
    assert set(recorded) == staged
    assert {o[1] for o in recorded.values()} <= {"row", "rejected", "skipped"}
    return recorded


# -- mapping -------------------------------------------------------------------------------------
def test_maps_every_field_with_fallback_email_private_label_and_attachments(db, tmp_path):
    invoice = Attachment("a1", "invoice.pdf", "application/pdf", 1234, "https://acme.zendesk.com/attachments/a1/invoice.pdf")
    stage(db,
          people=[person("u1", "ann@example.com", "Ann Lee", ("+1 555 0100",)), person("u2")],
          tickets=[ticket("t1", "u1", subject="Where is\n my  order?"),
                   ticket("t2", "u2", subject=None, tags=(), sender="bob@example.org")],
          items=[
              comment("c1", "t1", "u1", T, html='<div class="zd-comment"><p>Hello <b>team</b>,</p>'
                      '<p>see <a href="https://shop.example.com/o/1">my order</a><br>thanks</p></div>'),
              comment("c2", "t1", "u1", T + timedelta(minutes=5), html="<p>Refund approved.</p>", private=True,
                      attachments=(invoice, Attachment("a2", None, None, None))),
              comment("c3", "t2", "u2", T + timedelta(hours=1), text="Plain body\r\nsecond line", subject="Item subject"),
              comment("c4", "t2", "u2", T + timedelta(hours=2), text="Call summary: 3 min", kind="call"),
          ])
    result = write_range(db, tmp_path / "r", D1, D1 + timedelta(days=1), RULES)

    rows = rows_of(tmp_path / "r")
    assert rows == [
        {"Conversation Item Timestamp": "2024-03-01T09:00:00.000Z", "Conversation Item Title": "Where is my order?",
         "Conversation Item Body": "Hello team,\n\nsee my order (https://shop.example.com/o/1)\nthanks",
         "Conversation Item Source": "Zendesk", "Customer Email": "ann@example.com", "Customer Name": "Ann Lee",
         "Customer Phone": "+1 555 0100", "Tags": "vip,billing"},
        {"Conversation Item Timestamp": "2024-03-01T09:05:00.000Z", "Conversation Item Title": "Where is my order?",
         "Conversation Item Body": f"{LABEL}\n\nRefund approved.\n\n{HEADING}\n"
                                   "- invoice.pdf (https://acme.zendesk.com/attachments/a1/invoice.pdf)\n- attachment a2",
         "Conversation Item Source": "Zendesk", "Customer Email": "ann@example.com", "Customer Name": "Ann Lee",
         "Customer Phone": "+1 555 0100", "Tags": "vip,billing"},
        # No ticket subject: the item's; no requester email: the ticket's sender; no name, phone, tags.
        {"Conversation Item Timestamp": "2024-03-01T10:00:00.000Z", "Conversation Item Title": "Item subject",
         "Conversation Item Body": "Plain body\nsecond line", "Conversation Item Source": "Zendesk",
         "Customer Email": "bob@example.org", "Customer Name": "", "Customer Phone": "", "Tags": ""},
        {"Conversation Item Timestamp": "2024-03-01T11:00:00.000Z", "Conversation Item Title": "Zendesk ticket t2",
         "Conversation Item Body": "Call summary: 3 min", "Conversation Item Source": "Zendesk",
         "Customer Email": "bob@example.org", "Customer Name": "", "Customer Phone": "", "Tags": ""},
    ]
    recorded = assert_each_item_once(db)
    name = batches(tmp_path / "r")[0].name
    assert name == "gladly-import-2024-03-01_2024-03-01-0001.csv"
    assert recorded == {f"c{n}": ("2024-03-01_2024-03-01", "row", name, n, 1, None) for n in range(1, 5)}
    assert (result.items, result.rows_in, result.written, result.rejected, result.skipped) == (4, 4, 4, 0, 0)
    manifest = json.loads((tmp_path / "r" / MANIFEST_FILE).read_text())
    assert manifest["source_counts"] == {"items": 4, "late_arrivals": 0, "rows_in": 4}
    assert [f.name for f in result.files] == [name, REJECTED_FILE, "index.csv", MANIFEST_FILE]
    assert result.files[0].sha256 == manifest["files"][0]["sha256"]


def test_html_rendering_keeps_links_and_drops_markup():
    text = html_to_text('<h2>Hi <i>there</i></h2><p>A <a href="https://x.io/a">guide</a>, <a href="https://x.io/b">'
                        'https://x.io/b</a>, <a href="mailto:a@b.co">a@b.co</a> *not bold*</p><ul><li>one</li></ul>'
                        '<img alt="logo" src="https://x.io/l.png"> <img src="data:image/png;base64,AAAA">'
                        '<style>p{color:red}</style><script>alert(1)</script>')
    assert text == ("Hi there\n\nA guide (https://x.io/a), https://x.io/b, a@b.co *not bold*\n\n- one\n\n"
                    "[image: logo] (https://x.io/l.png) [image]")


def test_private_notes_skipped_and_attachments_unlisted_by_config(db, tmp_path):
    rules = import_rules_from_mapping({"version": "t1", "private_notes": {"mode": "skip"},
                                       "attachments": {"list_in_body": False}})
    stage(db, people=[person("u1", "ann@example.com")], tickets=[ticket("t1", "u1")], items=[
        comment("c1", "t1", "u1", T, html="<p>Public</p>", attachments=(Attachment("a1", "x.png", "image/png", 1, "https://z/x.png"),)),
        comment("c2", "t1", "u1", T + timedelta(minutes=1), html="<p>Secret</p>", private=True),
    ])
    result = write_range(db, tmp_path / "r", D1, D1 + timedelta(days=1), rules)
    assert [r["Conversation Item Body"] for r in rows_of(tmp_path / "r")] == ["Public"]
    assert result.skipped_by_rule == {PRIVATE_NOTE: 1}
    assert assert_each_item_once(db)["c2"][1:] == ("skipped", None, None, None, PRIVATE_NOTE)


# -- skips and rejects ---------------------------------------------------------------------------
def test_each_skip_rule_counted_and_bad_emails_rejected_with_reason(db, tmp_path):
    rules = import_rules_from_mapping({"version": "t2", "skip": {"junk_customers": {
        "email_patterns": [{"name": "mailer_daemon", "pattern": "^mailer-daemon@"}], "domains": ["bounces.example.net"]}}})
    later = T + timedelta(days=3)  # outside the range written
    stage(db,
          people=[person("u1", "ann@example.com"), person("daemon", "MAILER-DAEMON@mx.example.com"),
                  person("bouncer", "x@eu.bounces.example.net"), person("bad", "ann at example"), person("none")],
          tickets=[ticket("ok", "u1"), ticket("deleted", "u1", status="deleted"), ticket("tagged", "u1", tags=("SPAM",)),
                   ticket("junk1", "daemon"), ticket("junk2", "bouncer"), ticket("empty", "u1"), ticket("mixed", "u1"),
                   ticket("bad", "bad"), ticket("none", "none")],
          items=[
              comment("ok1", "ok", "u1", T, html="<p>Fine</p>"),
              comment("sys1", "ok", "u1", T + timedelta(minutes=1), kind="status_change"),
              comment("del1", "deleted", "u1", T, html="<p>Buy now</p>"),
              comment("tag1", "tagged", "u1", T, html="<p>Buy now</p>"),
              comment("junk1", "junk1", "daemon", T, text="Delivery failed"),
              comment("junk2", "junk2", "bouncer", T, text="Bounce"),
              comment("empty1", "empty", "u1", T, html="<p>&nbsp;</p>"),
              comment("empty2", "empty", "u1", T + timedelta(minutes=1), html="<div><br></div>", text="  "),
              # An empty comment of a ticket that has content elsewhere (even in another range): rejected, not skipped.
              comment("mixed1", "mixed", "u1", T, html="<p> </p>"),
              comment("mixed2", "mixed", "u1", later, html="<p>Real content</p>"),
              comment("bad1", "bad", "bad", T, text="Hello"),
              comment("none1", "none", "none", T, text="Hello"),
          ])
    result = write_range(db, tmp_path / "r", D1, D1 + timedelta(days=1), rules)

    assert result.skipped_by_rule == {NOT_A_COMMENT: 1, SPAM: 2, JUNK_CUSTOMER: 2, EMPTY_CONVERSATION: 2}
    assert result.rejected_by_reason == {EMPTY_BODY: 1, INVALID_EMAIL: 1, MISSING_EMAIL: 1}
    assert (result.items, result.rows_in, result.written) == (11, 4, 1)
    rejected = read_csv(tmp_path / "r" / REJECTED_FILE)
    assert [(r["source_item_id"], r["reason"], r["Customer Email"]) for r in rejected] == [
        ("bad1", INVALID_EMAIL, "ann at example"), ("mixed1", EMPTY_BODY, "ann@example.com"), ("none1", MISSING_EMAIL, "")]
    manifest = json.loads((tmp_path / "r" / MANIFEST_FILE).read_text())
    assert manifest["source_counts"] == {"items": 11, "late_arrivals": 0, "rows_in": 4, "skipped:empty_conversation": 2,
                                         "skipped:junk_customer": 2, "skipped:not_a_comment": 1, "skipped:spam": 2}
    recorded = outcomes(db)
    assert recorded["bad1"][1:] == ("rejected", REJECTED_FILE, 1, None, INVALID_EMAIL)
    assert recorded["none1"][1:] == ("rejected", REJECTED_FILE, 3, None, MISSING_EMAIL)
    assert {k: v[5] for k, v in recorded.items() if v[1] == "skipped"} == {
        "sys1": NOT_A_COMMENT, "del1": SPAM, "tag1": SPAM, "junk1": JUNK_CUSTOMER, "junk2": JUNK_CUSTOMER,
        "empty1": EMPTY_CONVERSATION, "empty2": EMPTY_CONVERSATION}
    assert "mixed2" not in recorded  # after the range
    write_range(db, tmp_path / "next", D1 + timedelta(days=3), D1 + timedelta(days=4), rules)
    assert assert_each_item_once(db)["mixed2"][:2] == ("2024-03-04_2024-03-04", "row")


# -- Gladly's limits -----------------------------------------------------------------------------
def test_long_body_continues_and_long_or_non_latin_titles_are_cut(db, tmp_path):
    body = "".join(f"Line {n:05d}: the customer explains the problem again, at length.\n" for n in range(700))
    assert len(body) > 40_000
    non_latin = "Заказ не доставлен " * 4 + "配達されていません 📦" * 3  # Cyrillic, CJK, an emoji (2 UTF-16 units)
    stage(db, people=[person("u1", "ann@example.com")],
          tickets=[ticket("long", "u1", subject="S" * 120), ticket("nl", "u1", subject=non_latin)],
          items=[comment("big", "long", "u1", T, text=body), comment("nl1", "nl", "u1", T + timedelta(minutes=1), text="Hi")])
    result = write_range(db, tmp_path / "r", D1, D1 + timedelta(days=1), RULES)

    rows = rows_of(tmp_path / "r")
    parts = [r for r in rows if r["Conversation Item Title"].startswith("S")]
    assert len(parts) == 2 and "".join(p["Conversation Item Body"] for p in parts) == body.strip()
    assert all(len(p["Conversation Item Body"]) <= 25_000 for p in parts)
    assert [p["Conversation Item Title"].lstrip("S") for p in parts] == ["… (part 1/2)", "… (part 2/2)"]
    assert all(len(p["Conversation Item Title"]) <= 100 for p in parts)
    title = rows[-1]["Conversation Item Title"]
    assert title.endswith("…") and non_latin.startswith(title[:-1].rstrip())
    assert len(title.encode("utf-16-le")) // 2 <= 100
    assert (result.bodies_split, result.continuation_rows, result.titles_cut, result.written, result.rows_written) == (1, 1, 2, 2, 3)
    assert assert_each_item_once(db)["big"][1:] == ("row", batches(tmp_path / "r")[0].name, 1, 2, None)


# -- ranges, deltas, late arrivals ---------------------------------------------------------------
def test_rerun_is_byte_identical_delta_holds_only_new_items_and_late_arrivals_go_to_the_next_range(db, tmp_path):
    config = ImportFileConfig(rows_per_file=2)
    day = timedelta(days=1)
    people = [person("u1", "ann@example.com", "Ann")]
    stage(db, people=people, tickets=[ticket(f"t{n}", "u1", subject=f"Ticket {n}") for n in range(1, 6)], items=[
        comment("a1", "t1", "u1", T, html="<p>one</p>"),
        comment("a2", "t2", "u1", T + day, html="<p>two</p>"),
        comment("a0", "t2", "u1", T + day, html="<p>two, same second</p>"),  # ties on ts: ordered by id
        comment("a3", "t3", "u1", T + 2 * day, html="<p>three</p>"),  # after range A
    ])
    first = write_range(db, tmp_path / "A", D1, D1 + 2 * day, RULES, config)
    a_files = snapshot(tmp_path / "A")
    assert [r["Conversation Item Title"] for r in rows_of(tmp_path / "A")] == ["Ticket 1", "Ticket 2", "Ticket 2"]
    assert [r["Conversation Item Body"] for r in rows_of(tmp_path / "A")] == ["one", "two, same second", "two"]
    a_recorded = {k: v for k, v in outcomes(db).items()}
    assert set(a_recorded) == {"a0", "a1", "a2"}
    # Each recorded row points at its place in the batch files.
    for item_id, (_, _, file_name, row_number, _, _) in a_recorded.items():
        assert read_csv(tmp_path / "A" / file_name)[row_number - 1]["Conversation Item Body"] == {
            "a1": "one", "a2": "two", "a0": "two, same second"}[item_id]

    again = write_range(db, tmp_path / "A", D1, D1 + 2 * day, RULES, config)
    assert snapshot(tmp_path / "A") == a_files
    assert again.summary() == first.summary()
    assert {k: v for k, v in outcomes(db).items()} == a_recorded

    # Staged later: one new item in the next range, a late arrival in A's days, one before any range.
    stage(db, people=people, items=[
        comment("b1", "t4", "u1", T + 2 * day + timedelta(hours=1), html="<p>new</p>"),
        comment("late", "t5", "u1", T + timedelta(hours=3), html="<p>late</p>"),
        comment("old", "t5", "u1", T - 30 * day, html="<p>before every range</p>"),
    ])
    delta = write_range(db, tmp_path / "B", D1 + 2 * day, D1 + 3 * day, RULES, config)
    assert [r["Conversation Item Body"] for r in rows_of(tmp_path / "B")] == ["late", "three", "new"]
    assert (delta.items, delta.late_arrivals, delta.written) == (3, 1, 3)
    assert json.loads((tmp_path / "B" / MANIFEST_FILE).read_text())["source_counts"]["late_arrivals"] == 1
    b_files = snapshot(tmp_path / "B")

    # A again: unchanged (the late item belongs to B now); B again: unchanged, late arrival kept.
    write_range(db, tmp_path / "A", D1, D1 + 2 * day, RULES, config)
    assert snapshot(tmp_path / "A") == a_files
    assert write_range(db, tmp_path / "B", D1 + 2 * day, D1 + 3 * day, RULES, config).late_arrivals == 1
    assert snapshot(tmp_path / "B") == b_files

    recorded = outcomes(db)
    assert {k for k, v in recorded.items() if v[0] == "2024-03-03_2024-03-03"} == {"a3", "b1", "late"}
    assert "old" not in recorded  # no range covers its day: not a late arrival, in no import yet
    write_range(db, tmp_path / "old", D1 - 30 * day, D1 - 29 * day, RULES, config)
    assert_each_item_once(db)


def test_bodies_rendered_in_worker_processes_give_the_same_files_and_outcomes(db, tmp_path, monkeypatch):
    """The renderer's workers (spawned processes, chunks read ahead and handed back in order) write
    exactly what rendering in the writing process writes: many small chunks, with skips, rejects
    and a long body in between, so order and every outcome are exercised."""
    people = [person("u1", "ann@example.com", "Ann"), person("u2", "not-an-email", "Bob")]
    tickets = [ticket("t1", "u1"), ticket("t2", "u2"), ticket("spam", "u1", status="deleted")]
    items = []
    for n in range(120):
        tid = ("t1", "t2", "spam")[n % 3]
        html = f'<p>Reply <b>{n}</b> with <a href="https://example.com/{n}">a link</a></p>' + (
            "<p>" + "x" * 30_000 + "</p>" if n == 48 else "")
        items.append(comment(f"c{n:03d}", tid, "u1" if tid != "t2" else "u2", T + timedelta(minutes=n), html=html,
                             private=n % 7 == 0))
    stage(db, people=people, tickets=tickets, items=items)
    inline = write_range(db, tmp_path / "r", D1, D1 + timedelta(days=1), RULES, render_workers=1)
    inline_files, inline_outcomes = snapshot(tmp_path / "r"), outcomes(db)
    monkeypatch.setattr(bodies, "MIN_PARALLEL", 0)
    monkeypatch.setattr(bodies, "CHUNK", 7)
    parallel = write_range(db, tmp_path / "r", D1, D1 + timedelta(days=1), RULES, render_workers=2)
    assert snapshot(tmp_path / "r") == inline_files
    assert outcomes(db) == inline_outcomes
    assert parallel.summary() == inline.summary()
    assert (parallel.written, parallel.rejected, parallel.skipped, parallel.bodies_split) == (40, 40, 40, 1)


def test_renderer_hands_chunks_back_in_order_with_workers():
    with bodies.Renderer("Files:", workers=2) as renderer:
        chunks = list(bodies.chunked(range(50), 4))
        out = list(renderer.render(chunks, lambda n: (f"<p>{n}</p>", None, [{"filename": f"f{n}"}] if n % 5 == 0 else None)))
    assert [chunk for chunk, _ in out] == chunks
    assert [text for _, texts in out for text in texts] == [
        f"{n}\n\nFiles:\n- f{n}" if n % 5 == 0 else str(n) for n in range(50)]


# -- the rules file ------------------------------------------------------------------------------
def test_rules_file_is_versioned_and_validated(tmp_path):
    assert RULES.version and RULES.skip.spam.statuses == ["deleted"] and RULES.skip.spam.tags == ["spam"]
    assert RULES.skip.junk_customers.match("noreply@shop.example.com") == "no_reply"
    assert RULES.skip.junk_customers.match("norah@shop.example.com") is None
    bad = tmp_path / "rules.yaml"
    bad.write_text("version: 1\nskip:\n  junk_customers:\n    email_patterns: [{name: x, pattern: '(unclosed'}]\n")
    with pytest.raises(RulesFileError, match=r"skip\.junk_customers\.email_patterns\.0\.pattern: .*regular expression"):
        load_import_rules(bad)
    with pytest.raises(RulesFileError, match="private_notes.mode"):
        import_rules_from_mapping({"version": "1", "private_notes": {"mode": "maybe"}})
    with pytest.raises(RulesFileError, match="spam_tags"):
        import_rules_from_mapping({"version": "1", "spam_tags": ["x"]})
    with pytest.raises(RulesFileError, match="untitled"):
        import_rules_from_mapping({"version": "1", "untitled": "Ticket {id}"})
