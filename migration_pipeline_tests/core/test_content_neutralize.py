"""Content that would act in Slack (or in Unthread's markdown view) is made inert, counted, and
still reads as the customer wrote it (issue 12, item 9).

Slack treats `<` `&` `>` as control characters: `<!channel>` pings a channel, `<@U1>` a user,
`<https://a|b>` is a link with a label; it documents `&lt;` / `&gt;` as the way to show them as
text. Markdown renders `&lt;` as `<` too, and a `[label](javascript:...)` link would be clickable.
A bare `@channel` pings when the poster asks Slack to link names: a zero-width space after the `@`
keeps the look and drops the ping. A body must not carry a `gladly-item:` marker of its own either:
the loader finds messages by those markers when it recovers from a crash.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from migration_pipeline.lib import markers
from migration_pipeline.lib.content import html_to_markdown, neutralize_text, text_to_markdown
from migration_pipeline.lib.staging.db import StagingDatabase, item_columns
from migration_pipeline.vendors.gladly.parse import parse_item
from migration_pipeline.vendors.unthread.client import UnthreadClient
from migration_pipeline.vendors.unthread.loader import LoadSettings, UnthreadLoader

ZWSP = "\u200b"

# (plain-text body, markdown sent to Unthread, counts by kind)
PLAIN_CASES = [
    ("Hey <!channel> look", "Hey &lt;!channel&gt; look", {"broadcast": 1}),
    ("<!here> and <!everyone> and <!here|here>", "&lt;!here&gt; and &lt;!everyone&gt; and &lt;!here|here&gt;", {"broadcast": 3}),
    ("ping <@U123ABC> in <#C999|general>", "ping &lt;@U123ABC&gt; in &lt;#C999|general&gt;", {"mention": 2}),
    ("cc <!subteam^S0614TZR7|@support>", "cc &lt;!subteam^S0614TZR7|@support&gt;", {"mention": 1}),
    ("@channel please, @here too, and @Everyone!", f"@{ZWSP}channel please, @{ZWSP}here too, and @{ZWSP}Everyone!", {"broadcast": 3}),
    ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;", {"html": 2}),
    ('<img src=x onerror="alert(1)">', '&lt;img src=x onerror="alert(1)"&gt;', {"html": 1}),
    ("[click me](javascript:alert(1))", "click me (⚠️ javascript: link removed)", {"unsafe_link": 1}),
    ("[x](JaVaScRiPt:alert(document.cookie))", "x (⚠️ javascript: link removed)", {"unsafe_link": 1}),
    ("[x](&#106;avascript:alert(1))", "x (⚠️ javascript: link removed)", {"unsafe_link": 1}),
    ("[x](<javascript:alert(1)>)", "x (⚠️ javascript: link removed)", {"unsafe_link": 1}),
    ("[x](vbscript:msgbox(1) \"t\")", "x (⚠️ vbscript: link removed)", {"unsafe_link": 1}),
    ("![pic](data:text/html,hi)", "pic (⚠️ data: image removed)", {"unsafe_link": 1}),
    ("[a [b] c](javascript:alert(1))", "[a [b] c] (javascript:alert(1))", {"unsafe_link": 1}),
    ("see [1]\n\n[1]: javascript:alert(1)", "see [1]\n\n\\[1]: javascript:alert(1)", {"unsafe_link": 1}),
    ("<javascript:alert(1)>", "&lt;javascript:alert(1)&gt;", {"unsafe_link": 1}),
    ("<https://evil.example|https://bank.example>", "&lt;https://evil.example|https://bank.example&gt;", {"markup": 1}),
    ("<!-- hidden -->", "&lt;!-- hidden --&gt;", {"markup": 1}),
    ("see `gladly-item:OTHER1` here", f"see `gladly-item{ZWSP}:OTHER1` here", {"forged_marker": 1}),
]


@pytest.mark.parametrize("body, expected, counts", PLAIN_CASES, ids=[c[0][:40] for c in PLAIN_CASES])
def test_hostile_plain_text_is_made_inert_and_counted(body, expected, counts):
    converted = text_to_markdown(body, trim=False)
    assert converted.markdown == expected
    assert converted.neutralized == Counter(counts)


# (HTML body, markdown sent to Unthread, counts by kind)
HTML_CASES = [
    ('<p><a href="javascript:alert(1)">Click me</a></p>', "Click me (⚠️ javascript: link removed)", {"unsafe_link": 1}),
    ('<p>Go <a href=" JAVA&#x09;SCRIPT:alert(1)">here</a> now</p>', "Go here (⚠️ javascript: link removed) now", {"unsafe_link": 1}),
    ('<a href="vbscript:msgbox(1)" title="x">a</a>', "a (⚠️ vbscript: link removed)", {"unsafe_link": 1}),
    ('<a href="data:text/html;base64,PHNjcmlwdD4=">open</a>', "open (⚠️ data: link removed)", {"unsafe_link": 1}),
    ('<a href="file:///etc/passwd">[secret] file</a>', r"\[secret\] file (⚠️ file: link removed)", {"unsafe_link": 1}),
    ('<p><img src="javascript:alert(1)" alt="pic"></p>', "pic (⚠️ javascript: image removed)", {"unsafe_link": 1}),
    ("<p>&lt;!channel&gt; hello</p>", "&lt;!channel&gt; hello", {"broadcast": 1}),
    ("<p><span>&lt;</span><span>!here&gt;</span> split in two</p>", "&lt;!here&gt; split in two", {"broadcast": 1}),
    ("<p>@everyone read this</p>", f"@{ZWSP}everyone read this", {"broadcast": 1}),
    ("<p>&lt;@U42&gt; and &lt;#C42&gt;</p>", "&lt;@U42&gt; and &lt;#C42&gt;", {"mention": 2}),
    ("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>", "&lt;script&gt;alert(1)&lt;/script&gt;", {"html": 2}),
    ("<p>hi</p><script>alert(1)</script>", "hi", {"html": 1}),
    ('<p><a href="https://example.com/a)<!channel>">x</a></p>', "[x](https://example.com/a%29%3C!channel%3E)", {}),
    ('<p><a href="https://example.com/">&lt;!channel&gt;</a></p>', "[&lt;!channel&gt;](https://example.com/)", {"broadcast": 1}),
    ("<p><code>gladly-item:OTHER1</code></p>", f"`gladly-item{ZWSP}:OTHER1`", {"forged_marker": 1}),
]


@pytest.mark.parametrize("html, expected, counts", HTML_CASES, ids=[c[0][:40] for c in HTML_CASES])
def test_hostile_html_is_made_inert_and_counted(html, expected, counts):
    converted = html_to_markdown(html, trim=False)
    assert converted.markdown == expected
    assert converted.neutralized == Counter(counts)


SAFE_HTML = [
    ('<p><a href="https://example.com/x?a=1&amp;b=2">site</a></p>', "[site](https://example.com/x?a=1&b=2)"),
    ('<p><a href="mailto:help@example.com">mail us</a></p>', "[mail us](mailto:help@example.com)"),
    ('<p><a href="tel:+15551234567">call</a></p>', "[call](tel:+15551234567)"),
    ('<p><a href="http://example.com">http://example.com</a></p>', "<http://example.com>"),
    ('<p><a href="/help">help</a></p>', "[help](/help)"),
]


@pytest.mark.parametrize("html, expected", SAFE_HTML, ids=[c[1][:40] for c in SAFE_HTML])
def test_http_https_mailto_and_tel_links_stay_clickable(html, expected):
    converted = html_to_markdown(html, trim=False)
    assert converted.markdown == expected
    assert not converted.neutralized


READABLE_TEXT = [
    "Visit [our site](https://example.com) or <https://example.com/x> or <mailto:a@b.co>",
    "From: Northwind Support <support@northwindoutfitters.com>",
    "if a < b and c > d then x <= 3; I <3 it -> ok <- fine",
    "email me at bob@example.com, or @bob on Twitter, at 5 @ 3pm; the @channels team; a@here.com",
    "Order #123 is in channel here, everyone agrees",
    "Thanks & regards, ***Wyatt*** `code` and > quoted",
]


@pytest.mark.parametrize("text", READABLE_TEXT, ids=[t[:30] for t in READABLE_TEXT])
def test_ordinary_text_with_at_signs_and_angle_brackets_is_unchanged(text):
    converted = text_to_markdown(text, trim=False)
    assert converted.markdown == text
    assert not converted.neutralized


def test_a_comparison_that_would_read_as_an_html_tag_is_escaped_and_reads_the_same():
    """`x<y and z>w` holds an HTML tag to a markdown renderer (`<y and z>`: the words would vanish):
    escaped, the rendered text is what was written, and it counts as a tag. A `<` that nothing
    closes is escaped too (a later `>` cannot pair with it) but not counted."""
    converted = text_to_markdown("if x<y and z>w", trim=False)
    assert converted.markdown == "if x&lt;y and z&gt;w"
    assert converted.neutralized == Counter({"html": 1})
    unclosed = text_to_markdown("x<y, and on the next line\nz>w", trim=False)
    assert unclosed.markdown == "x&lt;y, and on the next line\nz>w"
    assert not unclosed.neutralized


@pytest.mark.parametrize("body", [c[0] for c in PLAIN_CASES] + READABLE_TEXT)
def test_neutralizing_twice_changes_nothing_and_counts_nothing(body):
    once = neutralize_text(body, Counter())
    again: Counter[str] = Counter()
    assert neutralize_text(once, again) == once
    assert not again


@pytest.mark.parametrize(
    "body",
    ["quoting `gladly-item:B1` from before", "unterminated `gladly-item:B1", "`gladly-item:B1#2` and `gladly-item:B1#f1`"],
)
def test_a_body_cannot_forge_or_swallow_a_marker(body):
    """With a forged `gladly-item:B1` in A1's text, a crash-recovery lookup of B1 finds A1's
    message and B1 is never sent; an unterminated one swallows A1's own marker (its backtick opens
    the forged code span), so A1 is sent again. The reconciliation would count B1 as loaded."""
    sent = text_to_markdown(body, trim=False).markdown + "\n\n`gladly-item:A1`"
    assert markers.find(sent) == markers.find(sent, any_part=True) == [markers.Marker("A1")]


# -- the loader: what it sends and what it counts ------------------------------------------------


@pytest.fixture
def loader(tmp_path: Path):
    """A loader over an empty staging database; these tests never reach Unthread."""
    db = StagingDatabase(f"sqlite:///{tmp_path / 'staging.db'}")
    db.create_schema()
    client = UnthreadClient("http://127.0.0.1:9/api", "never-sent")
    made = UnthreadLoader(db, client, LoadSettings(triage_channel_id="C0"))
    yield made
    getattr(made, "close", lambda: None)()
    client.close()
    db.dispose()


def _item(**kw):
    item = {
        "source_id": "A1", "customer_id": "CU1", "conversation_id": "CV1", "ts": "2024-03-04T12:00:00.000000Z",
        "kind": "message", "source_kind": "EMAIL", "visibility": "public", "source_system": "gladly",
        "author_type": "customer", "author_id": None, "channel": "email", "subject": None,
        "text": None, "html": None, "attachments": [], "envelope": None, "transcript_expected": False, "split_change": None,
    }
    item.update(kw)
    return item


def test_the_loader_sends_subject_body_and_notes_inert_and_counts_when_sent(loader):
    item = _item(
        subject="<!channel> urgent `gladly-item:B1`",
        text="@here <@U1> see [x](javascript:alert(1))",
        envelope={"from": "<!everyone>@example.com", "to": [], "cc": [], "bcc": []},
    )
    [message] = loader.render(item)
    assert "<!" not in message and "<@" not in message and "javascript:alert" not in message
    assert f"@{ZWSP}here" in message
    assert markers.find(message) == [markers.Marker("A1")]
    assert "<!" not in loader.title(item, {})
    assert not loader.counts.neutralized, "nothing is counted before the message is sent"
    loader.count_sent(item, 0)
    assert loader.counts.neutralized == Counter(
        {"broadcast": 3, "mention": 1, "unsafe_link": 1, "forged_marker": 1}
    )


def test_notes_built_from_source_fields_are_made_inert(loader):
    record = {"id": "A1", "customerId": "CU1", "timestamp": "2024-03-04T12:00:00Z",
              "content": {"type": "CUSTOMER_ACTIVITY", "title": "<!channel>", "body": "@everyone",
                          "link": {"url": "javascript:alert(1)", "text": "open"}}}
    staged = item_columns(parse_item(record))  # the activity's text is the Gladly source's rendering
    activity = _item(**{k: v for k, v in staged.items() if k != "payload"})
    converted = loader.prepared(activity)
    assert "<!channel>" not in converted.markdown and "](javascript:" not in converted.markdown
    assert converted.neutralized == Counter({"broadcast": 2, "unsafe_link": 1})


def test_the_load_asset_metadata_reports_what_was_neutralized(loader):
    from migration_pipeline.pairs.gladly_to_unthread.assets.loaded_records import fidelity_metadata

    loader.count_sent(_item(text="<!channel> [x](javascript:alert(1))"), 0)
    metadata = fidelity_metadata(loader.counts, [], loader)
    assert metadata["content_neutralized"].value == 2
    assert metadata["content_neutralized_by_kind"].data == {"broadcast": 1, "unsafe_link": 1}


# -- the hazard for real: crash recovery against the Unthread emulator, both staging engines -------

WORKSPACE = {"users": [], "triageChannels": [{"id": "TRIAGE-1", "name": "support-triage"}]}
TS = ("2024-03-04T12:00:00.000000Z", "2024-03-04T12:05:00.000000Z")


def _stage(db: StagingDatabase, item_ids: list[str]) -> None:
    """Customer CU1's ticket T1: A1 quotes B1's marker, then B1; `item_ids` are in the ticket."""
    from migration_pipeline.lib.staging.db import conversation_items, customers, ticket_items, tickets

    now = TS[1]
    bodies = {"A1": "Please see `gladly-item:B1` in the old system", "B1": "the second message"}
    with db.begin() as conn:
        db.upsert(conn, customers, [{"source_id": "CU1", "name": "Casey", "primary_email": None, "emails": [],
                                     "phones": [], "external_ids": [], "custom_attributes": {}, "staged_at": now}])
        db.upsert(conn, conversation_items, [
            {"source_id": item_id, "customer_id": "CU1", "conversation_id": "CV1", "ts": ts, "kind": "message",
             "source_kind": "SMS", "visibility": "public", "source_system": "gladly", "envelope": None, "transcript_expected": False,
             "author_type": "customer", "author_id": None, "channel": "sms", "subject": None, "text": bodies[item_id],
             "html": None, "attachments": [], "payload": {"content": {"type": "SMS", "content": bodies[item_id]}},
             "job_id": "J1", "file_name": "conversation_items.jsonl", "line_no": n, "staged_at": now}
            for n, (item_id, ts) in enumerate(zip(("A1", "B1"), TS, strict=True))
        ])
        db.upsert(conn, tickets, [{"ticket_id": "T1", "conversation_id": "CV1", "customer_id": "CU1", "first_ts": TS[0],
                                   "last_ts": TS[len(item_ids) - 1], "first_item_id": "A1", "item_count": len(item_ids),
                                   "rule_version": "test", "cut_at": TS[0]}])
        db.upsert(conn, ticket_items, [{"item_id": i, "ticket_id": "T1", "ts": TS[n]} for n, i in enumerate(item_ids)])


def test_a_forged_marker_does_not_stand_in_for_a_message_whose_send_was_lost(staging_url, tmp_path):
    """A1 was sent; B1's create went out and its outcome is unknown (an `intent`, e.g. a crash or a
    lost response) but it never arrived. On the next run the loader looks B1 up by its marker
    before re-sending: it must not take the `gladly-item:B1` the customer wrote in A1 for it."""
    from datetime import UTC, datetime

    from migration_pipeline_tests.conftest import UNTHREAD_KEY, start_unthread

    db = StagingDatabase(staging_url)
    db.create_schema()
    server = start_unthread(tmp_path / "unthread.sqlite", WORKSPACE)
    client = UnthreadClient(f"{server.url}/api", UNTHREAD_KEY)
    until = datetime(2024, 3, 5, tzinfo=UTC)
    try:
        _stage(db, ["A1"])
        with UnthreadLoader(db, client, LoadSettings(triage_channel_id="TRIAGE-1")) as first_run:
            first_run.load_ticket("T1", until)
        _stage(db, ["A1", "B1"])
        first_run.ledger.write("message:B1", "message", "intent", parent="ticket:T1")
        with UnthreadLoader(db, client, LoadSettings(triage_channel_id="TRIAGE-1")) as second_run:
            second_run.load_ticket("T1", until)
        conversation = first_run.ledger.get("ticket:T1")["target_id"]
        texts = [m.get("text") or "" for m in client.iter_messages(conversation)]
        assert [markers.find(t) for t in texts] == [[markers.Marker("A1")], [markers.Marker("B1")]]
        assert "the second message" in texts[1]
        assert second_run.counts.messages_created == 1 and second_run.counts.recovered == 0
    finally:
        client.close()
        server.stop()
        db.dispose()
