"""Ledger keys and source markers (issue 14): one module each, formats pinned byte for byte.

Both formats are stored: ledgers of earlier runs hold the keys, every Unthread message already
loaded ends with its marker, every customer carries its stamp. The literals below are today's
formats; a change to either module that alters one fails here.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from migration_pipeline.lib import ledger_keys, markers
from migration_pipeline.lib.content import neutralize_text, text_to_markdown
from migration_pipeline.lib.ledger_keys import LedgerKey
from migration_pipeline.lib.markers import Marker
from migration_pipeline.lib.staging.db import StagingDatabase, ledger, now_text
from migration_pipeline.vendors.unthread.client import UnthreadClient
from migration_pipeline.vendors.unthread.loader import LoadSettings, UnthreadLoader

# (built by the module, today's literal, what parse reads back)
KEYS = [
    (ledger_keys.customer("CU-1"), "customer:CU-1", LedgerKey("customer", "CU-1")),
    (ledger_keys.single_customer(), "customer:*", LedgerKey("customer", "*")),
    (ledger_keys.ticket("T-1"), "ticket:T-1", LedgerKey("ticket", "T-1")),
    (ledger_keys.ticket("CV:9:2"), "ticket:CV:9:2", LedgerKey("ticket", "CV:9:2")),  # an id with colons stays whole
    (ledger_keys.message("IT-1"), "message:IT-1", LedgerKey("message", "IT-1")),
    (ledger_keys.message("IT-1", 2), "message:IT-1#2", LedgerKey("message", "IT-1", "2")),
    (ledger_keys.message("IT-1", "f3"), "message:IT-1#f3", LedgerKey("message", "IT-1", "f3")),
    (ledger_keys.status("T-1"), "status:T-1", LedgerKey("status", "T-1")),
    (ledger_keys.tags("T-1"), "tags:T-1", LedgerKey("tags", "T-1")),
    (ledger_keys.tag("TOP-1"), "tag:TOP-1", LedgerKey("tag", "TOP-1")),
    (ledger_keys.cutover_close("CV-1"), "cutover-close:CV-1", LedgerKey("cutover-close", "CV-1")),
]


@pytest.mark.parametrize(("built", "literal", "parsed"), KEYS, ids=[k[1] for k in KEYS])
def test_every_key_is_todays_format_and_parses_back(built, literal, parsed):
    assert built == literal
    assert ledger_keys.parse(literal) == parsed
    entity, key_id, part = ledger_keys.parse(literal)
    assert literal.startswith(ledger_keys.prefix(entity))
    if entity == ledger_keys.MESSAGE:
        assert ledger_keys.message(key_id, part) == literal


def test_parse_refuses_what_is_no_key():
    for text in ("ticket", ":T-1", ""):
        with pytest.raises(ValueError):
            ledger_keys.parse(text)


def test_the_ticket_key_in_sql_is_the_ticket_key(staging_db):
    with staging_db.engine.connect() as conn:
        assert conn.execute(sa.select(ledger_keys.ticket_sql(sa.literal("T-1")))).scalar_one() == "ticket:T-1"


def test_the_like_pattern_finds_every_part_of_one_item_only(staging_db):
    """`_` and `%` in an item id match only themselves; the single-part key is not a part."""
    keys = ["message:a_c", "message:a_c#1", "message:a_c#f2", "message:abc#1", "message:a_cd#1", "message:a%c#1", "ticket:a_c"]
    with staging_db.begin() as conn:
        conn.execute(ledger.insert(), [
            {"source_key": k, "entity_type": "message", "state": "done", "attempts": 1, "updated_at": now_text()} for k in keys
        ])
    pattern = ledger_keys.message_parts_like("a_c")
    assert pattern == "message:a\\_c#%"
    with staging_db.engine.connect() as conn:
        found = conn.execute(
            sa.select(ledger.c.source_key).where(ledger.c.source_key.like(pattern, escape=ledger_keys.LIKE_ESCAPE))
            .order_by(ledger.c.source_key)
        ).scalars().all()
    assert found == ["message:a_c#1", "message:a_c#f2"]


# -- markers ------------------------------------------------------------------------------------

MARKERS = [
    (markers.marker("A1"), "gladly-item:A1", Marker("A1")),
    (markers.marker("A1", 1), "gladly-item:A1#1", Marker("A1", "1")),
    (markers.marker("A1", 12), "gladly-item:A1#12", Marker("A1", "12")),
    (markers.marker("A1", "f2"), "gladly-item:A1#f2", Marker("A1", "f2")),
]


@pytest.mark.parametrize(("built", "literal", "parsed"), MARKERS, ids=[m[1] for m in MARKERS])
def test_every_marker_is_todays_format_and_parses_back(built, literal, parsed):
    assert built == literal
    assert markers.stamp(parsed.item_id, parsed.part) == f"`{literal}`"
    assert markers.parse(literal) == markers.parse(f"`{literal}`") == parsed
    assert parsed.text == literal
    assert markers.find(f"body\n\n`{literal}`") == [parsed]


def test_the_customer_stamp_is_todays_format():
    assert markers.customer_stamp("CU-1") == "gladly:CU-1"
    assert markers.stamped_customer("gladly:CU-1") == "CU-1"
    assert markers.stamped_customer("gladly:*") == "*"
    assert [markers.stamped_customer(v) for v in ("salesforce:CU-1", None, 7)] == [None, None, None]


@pytest.mark.parametrize(
    ("text", "exact", "any_part"),
    [
        ("a\n\n`gladly-item:A1`", [Marker("A1")], [Marker("A1")]),
        ("`gladly-item:A1#1` then `gladly-item:A1#f2`", [Marker("A1", "1"), Marker("A1", "f2")], [Marker("A1", "1"), Marker("A1", "f2")]),
        ("`gladly-item:A1#x9`", [], [Marker("A1", "x9")]),  # a part the loader never writes
        ("`echo gladly-item:A1`", [], []),  # inside a longer code span: no marker of ours
        ("```\ngladly-item:A1\n```", [], []),  # in a fenced block
        ("gladly-item:A1", [], []),  # not in a code span of its own
        ("`gladly-item:`", [], []),  # no item id
        ("`GLADLY-ITEM:A1`", [], []),  # the loader writes lower case only
    ],
)
def test_find_reads_markers_only_from_their_own_code_span(text, exact, any_part):
    assert markers.find(text) == exact
    assert markers.find(text, any_part=True) == any_part


def test_only_the_first_part_says_an_item_arrived():
    assert [m.first for m in (Marker("A1"), Marker("A1", "1"), Marker("A1", "2"), Marker("A1", "f2"))] == [True, True, False, False]


def test_parse_refuses_what_is_no_marker():
    assert [markers.parse(t) for t in ("gladly-item:A1#x", "gladly-item:", "ticket:T1", "gladly-item:A1#2#3")] == [None] * 4


def test_forged_markers_are_neutralized_and_only_the_loaders_stamp_is_found():
    """A body quoting markers of other items (code spans, any case, unterminated) keeps none of
    them: crash recovery and the reconciliation must find the message by its own stamp only."""
    counts: Counter[str] = Counter()
    body = neutralize_text("see `gladly-item:B1`, `GLADLY-ITEM:B2#2` and `gladly-item:B3", counts)
    assert counts == Counter({"forged_marker": 3})
    assert markers.find(body, any_part=True) == []
    sent = text_to_markdown(body, trim=False).markdown + "\n\n" + markers.stamp("A1")
    assert markers.find(sent) == markers.find(sent, any_part=True) == [Marker("A1")]


@pytest.fixture
def loader(tmp_path: Path):
    """A loader over an empty staging database that never reaches Unthread."""
    db = StagingDatabase(f"sqlite:///{tmp_path / 'staging.db'}")
    db.create_schema()
    client = UnthreadClient("http://127.0.0.1:9/api", "never-sent")
    made = UnthreadLoader(db, client, LoadSettings(triage_channel_id="C0", max_markdown_chars=400))
    yield made
    made.close()
    client.close()
    db.dispose()


def test_the_loader_stamps_each_part_of_a_long_body_with_its_marker(loader):
    item = {
        "source_id": "A1", "customer_id": "CU1", "conversation_id": "CV1", "ts": "2024-03-04T12:00:00.000000Z",
        "kind": "message", "source_kind": "CHAT_MESSAGE", "visibility": "public", "source_system": "gladly", "envelope": None,
        "transcript_expected": False, "author_type": "customer", "author_id": None, "channel": "chat", "subject": None,
        "text": "word " * 150 + "`gladly-item:B1`", "html": None, "attachments": [], "payload": {"content": {"type": "CHAT_MESSAGE"}},
    }
    parts = loader.render(item)
    assert len(parts) > 1
    for n, part in enumerate(parts, start=1):
        assert part.endswith(f"\n\n`gladly-item:A1#{n}`")
        assert markers.find(part) == [Marker("A1", str(n))]
    [single] = loader.render({**item, "source_id": "A2", "text": "short"})
    assert single.endswith("\n\n`gladly-item:A2`")
