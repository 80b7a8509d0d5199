"""Unit tests for the versioned mapping tables (status, channel → conversation type, topics → tags)."""

from __future__ import annotations

import pytest

from migration_pipeline.lib.splitting import encode_change
from migration_pipeline.pairs.gladly_to_unthread.mappings import Mappings, load_mappings, topics_of_ticket
from migration_pipeline.settings import load_settings
from migration_pipeline.vendors.unthread.loader import UnthreadLoader

ALL = {"triage": True, "email": True, "slack": True}
TRIAGE_ONLY = {"triage": True, "email": False, "slack": False}


def test_packaged_tables_are_versioned_and_map_gladly_statuses():
    m = load_mappings()
    assert m.version and m.source == "package"
    assert {k: m.target_status(k) for k in ("OPEN", "WAITING", "CLOSED")} == {"OPEN": "open", "WAITING": "on_hold", "CLOSED": "closed"}
    assert m.target_status("open") == "open"  # Gladly casing varies in practice
    assert m.target_status("SNOOZED") is None


def test_an_override_file_replaces_the_tables(tmp_path, monkeypatch):
    custom = tmp_path / "m.yaml"
    custom.write_text(
        'version: "acme-3"\nstatus: {OPEN: open, WAITING: in_progress, CLOSED: closed}\n'
        "channel_types: {chat: slack}\ndefault_type: triage\ntopics: {separator: ' > ', prefix: 'gladly: '}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("MIGRATION_MAPPINGS_FILE", str(custom))  # read by the settings, handed in as a path
    m = load_mappings(load_settings().mappings_file)
    assert m.version == "acme-3" and m.source == str(custom)
    assert m.target_status("WAITING") == "in_progress"
    assert m.topic_names([{"source_id": "p", "name": "Billing", "parent_id": None},
                          {"source_id": "c", "name": "Refunds", "parent_id": "p"}])["c"] == "gladly: Billing > Refunds"
    items = [{"kind": "status_change", "split_change": encode_change("waiting")}]
    assert UnthreadLoader.final_status(items, False, None, m) == "in_progress"
    assert UnthreadLoader.final_status(items, False, None) == "on_hold"  # no tables given: the packaged ones


@pytest.mark.parametrize(
    "data, error",
    [
        ({"status": {"OPEN": "open"}}, "version"),
        ({"version": "1", "status": {"OPEN": "resolved"}}, "status targets"),
        ({"version": "1", "channel_types": {"chat": "whatsapp"}}, "conversation types"),
    ],
)
def test_bad_tables_are_refused_with_the_reason(data, error):
    with pytest.raises(ValueError, match=error):
        Mappings.from_mapping(data)


def test_email_conversations_only_when_an_inbox_is_configured_and_the_author_has_an_email():
    m = load_mappings()
    assert m.conversation_type("email", ALL, has_email_author=True).type == "email"
    no_inbox = m.conversation_type("email", TRIAGE_ONLY, has_email_author=True)
    assert (no_inbox.type, no_inbox.wanted) == ("triage", "email") and "no email inbox id" in no_inbox.reason
    no_author = m.conversation_type("email", ALL, has_email_author=False)
    assert no_author.type == "triage" and "no valid email address" in no_author.reason
    for channel in ("chat", "sms", "phone", "social", "note", "activity", None, "brand-new-channel"):
        choice = m.conversation_type(channel, ALL, True)
        assert (choice.type, choice.reason) == ("triage", None)


def test_slack_without_a_channel_falls_back_to_triage():
    m = Mappings.from_mapping({"version": "1", "channel_types": {"chat": "slack"}})
    assert m.conversation_type("chat", ALL, False).type == "slack"
    fallback = m.conversation_type("chat", TRIAGE_ONLY, False)
    assert fallback.type == "triage" and "no Slack channel id" in fallback.reason


def test_hierarchical_topics_flatten_to_paths():
    m = load_mappings()
    rows = [
        {"source_id": "b", "name": "Billing", "parent_id": None},
        {"source_id": "r", "name": "Refunds", "parent_id": "b"},
        {"source_id": "p", "name": "Partial ", "parent_id": "r"},
        {"source_id": "o", "name": "Orphan", "parent_id": "gone"},
        {"source_id": "x", "name": "Loop A", "parent_id": "y"},
        {"source_id": "y", "name": "Loop B", "parent_id": "x"},
    ]
    names = m.topic_names(rows)
    assert names["b"] == "Billing"
    assert names["r"] == "Billing / Refunds"
    assert names["p"] == "Billing / Refunds / Partial"
    assert names["o"] == "Orphan"
    assert names["x"] == "Loop B / Loop A"  # a parent cycle is cut where it repeats
    assert m.topic_name("deleted-topic", names) == "Gladly topic deleted-topic"


def test_a_ticket_carries_its_conversations_topics_at_start_plus_every_topic_added_in_it():
    changes = [
        ("i1", ["billing"], []),  # before the ticket
        ("i2", ["old"], []),
        ("i3", [], ["old"]),  # still before
        ("t1", ["refunds", "temp"], []),  # inside
        ("t2", [], ["temp", "billing"]),  # inside
    ]
    assert topics_of_ticket(changes, {"t1", "t2", "t9"}) == ["billing", "refunds", "temp"]
    # a ticket without topic changes keeps what its conversation had
    assert topics_of_ticket(changes[:3], {"later"}) == ["billing"]
    # nothing at all
    assert topics_of_ticket([], {"a"}) == []
