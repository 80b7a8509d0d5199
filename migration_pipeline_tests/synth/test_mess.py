"""Every kind of mess is present, checked in the files (the manifest only says where to look),
and the line-level mess the manifest lists is exactly the mess in the files."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest

from sim.synth.content import is_valid_email
from sim.synth.dataset import read_json
from sim.synth.generator import UNKNOWN_CONTENT_TYPE, generate
from migration_pipeline_tests.synth.helpers import Dataset, item_text, parse_ts

END = date(2024, 6, 1)

REQUIRED_KINDS = (
    "merged_profiles", "customers_without_email", "invalid_emails", "mixed_case_emails",
    "conversations_over_1000_items", "identical_timestamps", "out_of_order_lines", "malformed_lines",
    "unknown_content_types", "bodies_over_25000_chars", "html_with_signature", "html_with_quoted_reply",
    "inline_base64_images", "attachments", "unicode_emoji_rtl", "reopen_after_dormancy", "channel_switches",
    "hierarchical_topics", "disabled_topics", "inactive_agents", "empty_jobs", "job_status_mess",
    "items_without_conversation",
)  # overlapping_jobs needs the one-time job (days > 13): test_generator checks it on 16 days


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("mess")
    generate(root, customers=50, days=10, seed=11, end=END)
    return Dataset(root)


@pytest.fixture(scope="module")
def items(ds: Dataset) -> dict[str, dict]:
    return ds.items()


def test_manifest_lists_every_kind(ds: Dataset) -> None:
    mess = ds.manifest["mess"]
    missing = [k for k in REQUIRED_KINDS if mess[k]["count"] < 1 or not mess[k]["where"]]
    assert not missing
    assert set(mess["content_types"]) >= {"EMAIL", "CHAT_MESSAGE", "SMS", "PHONE_CALL", "VOICEMAIL",
                                          "CONVERSATION_NOTE", "TOPIC_CHANGE", "CONVERSATION_STATUS_CHANGE",
                                          "CUSTOMER_ACTIVITY", "FACEBOOK_MESSAGE", "INSTAGRAM_DIRECT", "WHATSAPP",
                                          UNKNOWN_CONTENT_TYPE}


def test_merged_profiles(ds: Dataset, items: dict[str, dict]) -> None:
    merges = read_json(ds.layout.merges)
    profiles = {p["id"]: p for p in ds.rest(ds.layout.customers)}
    assert merges
    for entry in ds.mess("merged_profiles"):
        old, new = entry["mergedId"], entry["survivingId"]
        assert merges[old] == new and old not in profiles and new in profiles
        assert any(i["customerId"] == old for i in items.values()), "items of a merged-away id must still reference it"
        old_emails = {e.strip().lower() for e in ds.export_customers()[old]["emailAddresses"]}
        assert old_emails <= {e["normalized"] for e in profiles[new]["emails"]}


def test_customer_email_mess(ds: Dataset) -> None:
    export = ds.export_customers()
    for e in ds.mess("customers_without_email"):
        assert export[e["customerId"]]["emailAddresses"] == [] and export[e["customerId"]]["phoneNumbers"]
    for e in ds.mess("invalid_emails"):
        assert not is_valid_email(export[e["customerId"]]["emailAddresses"][0])
    for e in ds.mess("mixed_case_emails"):
        addr = export[e["customerId"]]["emailAddresses"][0]
        assert addr != addr.lower() and is_valid_email(addr)


def test_conversation_over_1000_items(ds: Dataset, items: dict[str, dict]) -> None:
    per_conv = Counter(i.get("conversationId") for i in items.values())
    for e in ds.mess("conversations_over_1000_items"):
        assert per_conv[e["conversationId"]] == e["items"] > 1000


def test_identical_timestamps(ds: Dataset, items: dict[str, dict]) -> None:
    for e in ds.mess("identical_timestamps"):
        a, b = (items[x] for x in e["itemIds"])
        assert a["timestamp"] == b["timestamp"] and a["conversationId"] == b["conversationId"]


def test_out_of_order_lines_are_exactly_the_listed_ones(ds: Dataset) -> None:
    found = []
    for job in ds.layout.job_ids():
        last: dict[str, str] = {}
        for ln in ds.lines("conversation_items.jsonl"):
            if ln.job != job or not ln.is_valid_item or "conversationId" not in ln.obj:
                continue
            cid, ts = ln.obj["conversationId"], ln.obj["timestamp"]
            if cid in last and ts < last[cid]:
                found.append((job, ln.lineno, ln.obj["id"]))
            last[cid] = max(ts, last.get(cid, ts))
    listed = [(e["job"], e["line"], e["itemId"]) for e in ds.mess("out_of_order_lines")]
    assert found and sorted(found) == sorted(listed)


def test_malformed_lines_are_exactly_the_listed_ones(ds: Dataset) -> None:
    found = set()
    for name in ("conversation_items.jsonl", "customers.jsonl", "agents.jsonl", "topics.jsonl"):
        for ln in ds.lines(name):
            if ln.obj is None:
                found.add((ln.job, name, ln.lineno, "truncated_json"))
                with pytest.raises(json.JSONDecodeError):
                    json.loads(ln.raw)
            elif name == "conversation_items.jsonl" and not ln.is_valid_item:
                missing = [k for k in ("customerId",) if k not in ln.obj]
                found.add((ln.job, name, ln.lineno, f"missing_required_field:{missing[0]}"))
    listed = {(e["job"], e["file"], e["line"], e["reason"]) for e in ds.mess("malformed_lines")}
    assert found == listed
    assert {r for *_, r in listed} == {"truncated_json", "missing_required_field:customerId"}


def test_unknown_content_types(ds: Dataset, items: dict[str, dict]) -> None:
    for e in ds.mess("unknown_content_types"):
        assert items[e["itemId"]]["content"]["type"] == UNKNOWN_CONTENT_TYPE


def test_long_bodies(ds: Dataset, items: dict[str, dict]) -> None:
    assert ds.mess("bodies_over_25000_chars")
    for e in ds.mess("bodies_over_25000_chars"):
        assert len(item_text(items[e["itemId"]])) > 25_000


def test_html_email_mess(ds: Dataset, items: dict[str, dict]) -> None:
    styles = set()
    for e in ds.mess("html_with_signature"):
        body = items[e["itemId"]]["content"]["content"]
        assert "<" in body and any(m in body for m in ("gmail_signature", "Sent from", "Customer Care</p>"))
        styles.add(e["style"])
    assert {"outlook", "gmail", "apple"} <= styles
    markers = ("wrote:", "<b>From:</b>", "<blockquote")
    for e in ds.mess("html_with_quoted_reply"):
        body = items[e["itemId"]]["content"]["content"]
        assert any(m in body for m in markers)
    for e in ds.mess("inline_base64_images"):
        assert '<img src="data:image/png;base64,' in items[e["itemId"]]["content"]["content"]


def test_attachments_exist_with_honest_sizes(ds: Dataset, items: dict[str, dict]) -> None:
    sizes = []
    for e in ds.mess("attachments"):
        att = next(a for a in items[e["itemId"]]["content"]["attachments"] if a["id"] == e["attachmentId"])
        path = ds.layout.attachments_dir / att["id"]
        assert path.stat().st_size == att["fileSize"]
        sizes.append(att["fileSize"])
    assert max(sizes) > 1_000_000, "a couple of larger attachments expected"


def test_unicode_emoji_and_rtl(ds: Dataset, items: dict[str, dict]) -> None:
    texts = " ".join(item_text(items[e["itemId"]]) for e in ds.mess("unicode_emoji_rtl"))
    assert any("\u0600" <= ch <= "\u06ff" for ch in texts), "no Arabic"
    assert any("\u0590" <= ch <= "\u05ff" for ch in texts), "no Hebrew"
    assert any(ord(ch) >= 0x1F300 for ch in texts), "no emoji"
    raw = ds.layout.customers.read_text(encoding="utf-8")
    assert "\\u" not in raw and any("\u0590" <= ch <= "\u06ff" for ch in raw)  # written as UTF-8, not escaped


def test_reopen_after_dormancy(ds: Dataset, items: dict[str, dict]) -> None:
    by_conv: dict[str, list[dict]] = {}
    for i in sorted(items.values(), key=lambda i: (i["timestamp"], i["id"])):
        by_conv.setdefault(i.get("conversationId", ""), []).append(i)
    for e in ds.mess("reopen_after_dormancy"):
        timeline = by_conv[e["conversationId"]]
        reopen = items[e["reopenItemId"]]
        assert reopen["content"] == {"type": "CONVERSATION_STATUS_CHANGE", "status": "OPEN"}
        before = [i for i in timeline if i["timestamp"] < reopen["timestamp"]]
        closes = [i for i in before if i["content"].get("status") == "CLOSED"]
        assert closes and parse_ts(reopen["timestamp"]) - parse_ts(closes[-1]["timestamp"]) > timedelta(days=7)
        after_close = [i for i in before if i["timestamp"] > closes[-1]["timestamp"]]
        assert all(i["initiator"]["type"] == "CUSTOMER" for i in after_close)  # only the message that reopened it
        assert any(i["timestamp"] > reopen["timestamp"] for i in timeline), "new items after the reopen"


def test_channel_switches(ds: Dataset, items: dict[str, dict]) -> None:
    channel = {"EMAIL": "EMAIL", "CHAT_MESSAGE": "CHAT", "PHONE_CALL": "PHONE", "SMS": "SMS", "VOICEMAIL": "VOICEMAIL",
               "FACEBOOK_MESSAGE": "FACEBOOK", "INSTAGRAM_DIRECT": "INSTAGRAM", "WHATSAPP": "WHATSAPP"}
    entries = ds.mess("channel_switches")
    assert any(e["channels"] == ["EMAIL", "CHAT", "PHONE"] for e in entries)
    for e in entries:
        start = items[e["fromItemId"]]["timestamp"]
        seq = []
        for i in sorted(items.values(), key=lambda i: i["timestamp"]):
            if i.get("conversationId") == e["conversationId"] and i["timestamp"] >= start and i["content"]["type"] in channel:
                ch = channel[i["content"]["type"]]
                if not seq or seq[-1] != ch:
                    seq.append(ch)
        it = iter(seq)
        assert all(ch in it for ch in e["channels"]), (e, seq)  # the switch sequence appears in order


def test_topics_hierarchy_and_disabled(ds: Dataset, items: dict[str, dict]) -> None:
    topics = {t["id"]: t for t in read_json(ds.layout.topics)}
    for e in ds.mess("hierarchical_topics"):
        assert topics[e["topicId"]]["parentId"] == e["parentId"] in topics
    for e in ds.mess("disabled_topics"):
        assert topics[e["topicId"]]["disabled"] is True
    snapshot = [ln.obj for ln in ds.lines("topics.jsonl") if ln.obj]
    assert any(t["disabled"] for t in snapshot) and any("parentId" in t for t in snapshot)


def test_inactive_agents(ds: Dataset, items: dict[str, dict]) -> None:
    current = {a["id"] for a in read_json(ds.layout.agents)}
    in_snapshots = {ln.obj["id"] for ln in ds.lines("agents.jsonl") if ln.obj}
    acting = {i["initiator"]["id"] for i in items.values() if i["initiator"]["type"] == "AGENT"}
    for e in ds.mess("inactive_agents"):
        assert e["agentId"] not in current and e["agentId"] in in_snapshots
    assert any(e["agentId"] in acting for e in ds.mess("inactive_agents"))


def test_items_without_conversation(ds: Dataset, items: dict[str, dict]) -> None:
    for e in ds.mess("items_without_conversation"):
        assert "conversationId" not in items[e["itemId"]]


def test_empty_job_lists_only_agents_and_topics(ds: Dataset) -> None:
    for e in ds.mess("empty_jobs"):
        job = read_json(ds.layout.job_dir(e["job"]) / "job.json")
        assert job["files"] == ["agents.jsonl", "topics.jsonl"] and job["status"] == "COMPLETED"
        assert not ds.layout.job_file(e["job"], "conversation_items.jsonl").exists()


def test_unthread_workspace_matches_most_agents(ds: Dataset) -> None:
    ws = read_json(ds.layout.unthread_workspace)
    agents = {a["emailAddress"].lower(): a["emailAddress"] for a in read_json(ds.layout.agents)}
    users = {u["email"].lower(): u["email"] for u in ws["users"]}
    matched = set(agents) & set(users)
    assert len(agents) * 0.6 <= len(matched) < len(agents)
    assert any(users[e] != agents[e] for e in matched), "some emails should differ in case only"
    assert ws["triageChannels"] and ws["emailInboxes"] and ws["slackChannels"]


def test_tiny_run_has_what_fits(tmp_path: Path) -> None:
    m = generate(tmp_path / "tiny", customers=3, days=2, seed=5, end=END)
    d = Dataset(tmp_path / "tiny")
    types = {i["content"]["type"] for i in d.items().values()}
    assert {"EMAIL", "CHAT_MESSAGE", "PHONE_CALL", "CONVERSATION_NOTE"} <= types
    assert m["mess"]["malformed_lines"]["count"] == 3 and m["mess"]["merged_profiles"]["count"] == 0
