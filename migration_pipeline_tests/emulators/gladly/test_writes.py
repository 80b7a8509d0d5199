"""Gladly as a migration target: customer profiles, topics and CUSTOMER_ACTIVITY items written
through the emulated API, read back through its read endpoints, under the same auth, org-wide rate
limit and faults as the read side."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from sim.emulators.common import FaultConfig, RunningServer
from sim.emulators.gladly import create_app
from sim.synth.dataset import DatasetLayout

from .conftest import NOW, TOKEN, USER, ServerFactory, client_for, errors, ts

CAROL = {"id": "carol-1", "name": "Carol", "emails": [{"original": "Carol@Example.com"}],
         "phones": [{"original": "650 123 4568", "type": "MOBILE"}]}
ONE_YEAR_AGO = NOW.replace(year=NOW.year - 1)


def stats(server: RunningServer) -> dict[str, int]:
    return httpx.get(server.url + "/_emulator/stats").json()


@pytest.fixture(scope="module")
def refusing(dataset: DatasetLayout) -> Iterator[RunningServer]:
    """One emulator, holding CAROL, for the tests of refused writes: each checks that its write
    changed nothing (a server per test would cost more than the tests)."""
    app = create_app(dataset.root, api_user=USER, api_token=TOKEN, now=NOW, rate_limit_per_second=10_000)
    with RunningServer(app) as server:
        with client_for(server) as client:
            assert client.post("/customer-profiles", json=CAROL).status_code == 201
        yield server


def refused(server: RunningServer, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
    """The answer to a write that must change nothing on the emulator."""
    before = stats(server)
    with client_for(server) as client:
        response = client.request(method, path, json=body)
    assert stats(server) == before
    return response


def lookup(client: httpx.Client, **params: str) -> list[str]:
    response = client.get("/customer-profiles", params=params)
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()]


def profile(cid: str, email: str | None = None, phone: str | None = None, phone_type: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"id": cid, "name": f"Name of {cid}"}
    if email:
        body["emails"] = [{"original": email}]
    if phone:
        body["phones"] = [{"original": phone, "type": phone_type}]
    return body


def activity(item_id: str | None = None, occurred: str | None = None, **content: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"content": {"type": "CUSTOMER_ACTIVITY", "activityType": "EMAIL", "title": "Order shipped",
                                        "body": "Your order left the warehouse.", "sourceName": "Zendesk", **content}}
    if occurred is not None:
        body["content"]["occurredAt"] = occurred
    if item_id is not None:
        body["id"] = item_id
    return body


# -- customer profiles ------------------------------------------------------------------------


def test_create_answers_201_with_location_and_every_read_finds_the_profile(make_server: ServerFactory) -> None:
    server = make_server()
    with client_for(server) as client:
        response = client.post("/customer-profiles", json=CAROL)
        assert response.status_code == 201
        assert response.headers["Location"] == "/api/v1/customer-profiles/carol-1"
        assert response.content == b""
        assert int(response.headers["Ratelimit-Limit-Second"]) == 10_000
        stored = client.get("/customer-profiles/carol-1").json()
        assert lookup(client, email="carol@EXAMPLE.com") == ["carol-1"]
        assert lookup(client, phoneNumber="+16501234568") == ["carol-1"]
        assert client.get("/customers/carol-1/conversations").json() == []
    assert stored == {
        "id": "carol-1", "name": "Carol",
        "emails": [{"original": "Carol@Example.com", "normalized": "carol@example.com"}],
        "phones": [{"original": "650 123 4568", "normalized": "+16501234568", "regionCode": "US", "type": "MOBILE"}],
        "customAttributes": {}, "createdAt": ts(timedelta(0)), "updatedAt": ts(timedelta(0)),
    }
    assert stats(server)["customer_profiles_created"] == 1


def test_create_without_an_id_gets_a_gladly_style_one(make_server: ServerFactory) -> None:
    with client_for(make_server()) as client:
        response = client.post("/customer-profiles", json={"name": "No Id"})
        assert response.status_code == 201
        new_id = response.headers["Location"].rsplit("/", 1)[1]
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", new_id)
        assert client.get(f"/customer-profiles/{new_id}").json()["name"] == "No Id"


@pytest.mark.parametrize(
    ("body", "taken"),
    [
        (profile("cust-1"), {"attr": "id", "code": "taken", "detail": "customer ID exists"}),
        (profile("cust-merged"), {"attr": "id", "code": "taken", "detail": "customer ID exists"}),
        (profile("carol-1"), {"attr": "id", "code": "taken", "detail": "customer ID exists"}),
        # a dataset profile's address, in other letters
        (profile("new-1", email=" ALICE@example.com"),
         {"attr": "emails", "code": "taken", "detail": "email address already exists on another customer profile"}),
        (profile("new-2", email="carol@example.com"),
         {"attr": "emails", "code": "taken", "detail": "email address already exists on another customer profile"}),
        (profile("new-3", phone="+1 650 123 4568", phone_type="MOBILE"),
         {"attr": "phones", "code": "taken", "detail": "mobile phone number already exists on another customer profile"}),
    ],
    ids=["dataset-id", "merged-away-id", "created-id", "dataset-email", "created-email", "mobile"],
)
def test_a_taken_id_email_or_mobile_is_409_naming_the_field(
    refusing: RunningServer, body: dict[str, Any], taken: dict[str, str]
) -> None:
    response = refused(refusing, "POST", "/customer-profiles", body)
    assert response.status_code == 409
    assert errors(response) == [taken]


def test_only_a_mobile_number_must_be_unique(make_server: ServerFactory) -> None:
    with client_for(make_server()) as client:
        assert client.post("/customer-profiles", json=CAROL).status_code == 201
        # the same number as HOME, or untyped (OTHER), on another profile is allowed; so is a
        # MOBILE number the dataset holds untyped (assumed: only MOBILE clashes with MOBILE)
        for cid, number, kind in [("home", "6501234568", "HOME"), ("other", "+16501234568", ""),
                                  ("mobile", "+15550000001", "MOBILE")]:
            assert client.post("/customer-profiles", json=profile(cid, phone=number, phone_type=kind)).status_code == 201
        assert lookup(client, phoneNumber="+16501234568") == ["carol-1", "home", "other"]


@pytest.mark.parametrize(
    ("body", "attr", "code"),
    [
        ({"id": "has space"}, "id", "invalid"),
        ({"id": "x" * 50}, "id", "too_long"),
        ({"emails": [{"primary": True}]}, "emails.original", "blank"),
        ({"emails": [{"original": "not an address"}]}, "emails.original", "invalid"),
        ({"phones": [{"original": "555 0100", "type": "CELL"}]}, "phones.type", "invalid"),
        ({"phones": [{"original": "call me"}]}, "phones.original", "invalid"),
        ({"name": 7}, "name", "invalid"),
    ],
)
def test_invalid_profile_is_400(refusing: RunningServer, body: dict[str, Any], attr: str, code: str) -> None:
    response = refused(refusing, "POST", "/customer-profiles", body)
    assert response.status_code == 400
    assert [(e["attr"], e["code"]) for e in errors(response)] == [(attr, code)]


def test_patch_replaces_emails_and_phones_whole(make_server: ServerFactory) -> None:
    server = make_server()
    with client_for(server) as client:
        client.post("/customer-profiles", json=CAROL)
        httpx.put(server.url + "/_emulator/clock", json={"now": ts(timedelta(minutes=5))})
        response = client.patch("/customer-profiles/carol-1", json={"name": "Carol B", "emails": [{"original": "cb@example.com"}]})
        assert response.status_code == 204 and response.content == b""
        after = client.get("/customer-profiles/carol-1").json()
        assert lookup(client, email="carol@example.com") == []
        assert lookup(client, email="cb@example.com") == ["carol-1"]
    assert after["name"] == "Carol B"
    assert after["emails"] == [{"original": "cb@example.com", "normalized": "cb@example.com"}]
    assert [p["normalized"] for p in after["phones"]] == ["+16501234568"]  # not in the PATCH: kept
    assert (after["createdAt"], after["updatedAt"]) == (ts(timedelta(0)), ts(timedelta(minutes=5)))


def test_patch_of_a_dataset_profile_is_read_back_everywhere(make_server: ServerFactory) -> None:
    with client_for(make_server()) as client:
        # cust-2 and cust-3 both hold shared@ in the dataset: keeping an address one already
        # has is no clash, taking another profile's is
        assert client.patch("/customer-profiles/cust-2", json={"name": "Bob"}).status_code == 204
        assert client.patch("/customer-profiles/cust-3", json={"emails": [{"original": "c3@example.com"}]}).status_code == 204
        clash = client.patch("/customer-profiles/cust-3", json={"emails": [{"original": "alice@example.com"}]})
        assert client.get("/customer-profiles/cust-2").json()["name"] == "Bob"
        assert lookup(client, email="shared@example.com") == ["cust-2"]
        assert lookup(client, email="c3@example.com") == ["cust-3"]
    assert clash.status_code == 409 and errors(clash)[0]["attr"] == "emails"


@pytest.mark.parametrize("cid", ["cust-merged", "nobody"])
def test_patch_of_a_merged_away_or_unknown_profile_is_404(refusing: RunningServer, cid: str) -> None:
    response = refused(refusing, "PATCH", f"/customer-profiles/{cid}", {"name": "x"})
    assert response.status_code == 404
    assert errors(response) == [{"code": "not_exist", "detail": f"customer profile [{cid}] does not exist"}]


def test_lookup_answers_at_most_50_newest_first(make_server: ServerFactory) -> None:
    """Emails are unique, so more than 50 matches are made with an untyped phone number."""
    server = make_server()
    with client_for(server) as client:
        for n in range(51):
            assert client.post("/customer-profiles", json=profile(f"p-{n:02d}", phone="+15557770000")).status_code == 201
        httpx.put(server.url + "/_emulator/clock", json={"now": ts(timedelta(minutes=1))})
        client.post("/customer-profiles", json=profile("p-newest", phone="+15557770000"))
        found = lookup(client, phoneNumber="+15557770000")
    assert found == ["p-newest"] + [f"p-{n:02d}" for n in range(49)]


# -- topics ---------------------------------------------------------------------------------


def test_topics_created_are_listed_and_usable(make_server: ServerFactory) -> None:
    with client_for(make_server()) as client:
        response = client.post("/topics", json={"name": "Migrated", "parentId": "topic-1"})
        assert response.status_code == 201
        topic_id = response.headers["Location"].removeprefix("/api/v1/topics/")
        assert client.get(f"/topics/{topic_id}").json() == {"id": topic_id, "name": "Migrated", "disabled": False,
                                                            "parentId": "topic-1"}
        assert [t["name"] for t in client.get("/topics").json()] == ["Billing", "Refunds", "Migrated"]
        assert client.post("/conversations/conv-2/topics", json={"topicIds": [topic_id]}).status_code == 204
        assert topic_id in client.get("/conversations/conv-2").json()["topicIds"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"name": "Billing"}, 409,
         {"attr": "name", "code": "taken", "detail": "another topic already has this name", "meta": {"id": "topic-1"}}),
        ({"id": "topic-1", "name": "New"}, 409,
         {"attr": "id", "code": "taken", "detail": "the topic with specified id already exists"}),
        ({"name": " "}, 400, {"attr": "name", "code": "blank", "detail": "name cannot be blank"}),
        ({"id": "a/b", "name": "New"}, 400, {"attr": "id", "code": "invalid", "detail": "id contains unsupported characters"}),
    ],
)
def test_topic_refusals(refusing: RunningServer, body: dict[str, Any], status: int, error: dict[str, Any]) -> None:
    response = refused(refusing, "POST", "/topics", body)
    assert response.status_code == status
    assert errors(response) == [error]


# -- CUSTOMER_ACTIVITY items ------------------------------------------------------------------


def test_activity_item_is_created_once_and_read_back(make_server: ServerFactory) -> None:
    server = make_server()
    occurred = ts(-timedelta(days=364))
    with client_for(server) as client:
        client.post("/customer-profiles", json=CAROL)
        created = client.post("/customers/carol-1/conversation-items", json=activity("zd-comment-1", occurred))
        again = client.post("/customers/carol-1/conversation-items", json=activity("zd-comment-1", occurred))
        dataset_id = client.post("/customers/cust-1/conversation-items", json=activity("item-1", occurred))
        read_back = client.get("/conversation-items/zd-comment-1").json()
    assert created.status_code == 200
    item = created.json()
    assert item["id"] == "zd-comment-1" and item["customerId"] == "carol-1" and item["timestamp"] == occurred
    assert item["content"] == {**activity(occurred=occurred)["content"], "expandByDefault": False,
                               "receivedAt": ts(timedelta(0))}
    assert read_back == item
    for response in (again, dataset_id):
        assert response.status_code == 409
        assert errors(response) == [{"attr": "newConversationItems", "code": "taken", "detail": "conversation item already exists"}]
    assert stats(server)["activity_items_created"] == 1


@pytest.mark.parametrize(
    ("occurred", "status"),
    [
        (ONE_YEAR_AGO.strftime("%Y-%m-%dT%H:%M:%S.000Z"), 200),  # exactly one year: still allowed
        ((ONE_YEAR_AGO - timedelta(milliseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", 400),
        (ts(-timedelta(days=400)), 400),
        (ts(timedelta(days=1)), 200),  # assumed: the future is not refused
        (None, 200),
    ],
)
def test_the_one_year_rule(refusing: RunningServer, occurred: str | None, status: int) -> None:
    with client_for(refusing) as client:
        response = client.post("/customers/cust-1/conversation-items", json=activity(occurred=occurred))
    assert response.status_code == status, response.text
    if status == 400:
        assert errors(response) == [
            {"attr": "content.occurredAt", "code": "invalid", "detail": "occurredAt cannot be older than 1 year"}
        ]
    elif occurred is None:
        assert "occurredAt" not in response.json()["content"]
        assert response.json()["timestamp"] == response.json()["content"]["receivedAt"]


@pytest.mark.parametrize(
    ("content", "attr", "code"),
    [
        ({"type": "EMAIL"}, "content.type", "invalid"),
        ({"activityType": "CALL"}, "content.activityType", "invalid"),
        ({"title": "t" * 101}, "content.title", "too_long"),
        ({"body": "b" * 25_001}, "content.body", "too_long"),
        ({"sourceName": "s" * 51}, "content.sourceName", "too_long"),
        ({"link": {"url": "https://example.com", "text": "l" * 51}}, "content.link.text", "too_long"),
    ],
)
def test_invalid_activity_item_is_400(refusing: RunningServer, content: dict[str, Any], attr: str, code: str) -> None:
    response = refused(refusing, "POST", "/customers/cust-1/conversation-items", activity(**content))
    assert response.status_code == 400
    assert [(e["attr"], e["code"]) for e in errors(response)] == [(attr, code)]


def test_activity_on_a_merged_or_unknown_customer(refusing: RunningServer) -> None:
    merged = refused(refusing, "POST", "/customers/cust-merged/conversation-items", activity())
    unknown = refused(refusing, "POST", "/customers/nobody/conversation-items", activity())
    assert merged.status_code == 301
    assert merged.headers["Location"] == f"{refusing.url}/api/v1/customers/cust-1/conversation-items"
    assert errors(merged) == [{"attr": "customer id", "code": "moved",
                               "detail": "the customer id has changed from [cust-merged] to [cust-1]",
                               "meta": {"old": "cust-merged", "new": "cust-1"}}]
    assert unknown.status_code == 404


# -- auth, the org-wide rate limit, faults ----------------------------------------------------


def test_writes_need_credentials(make_server: ServerFactory) -> None:
    server = make_server()
    for path in ("/customer-profiles", "/topics", "/customers/cust-1/conversation-items"):
        assert httpx.post(server.url + "/api/v1" + path, json={"name": "x"}).status_code == 401
    assert httpx.patch(server.url + "/api/v1/customer-profiles/cust-1", json={"name": "x"}).status_code == 401
    assert set(stats(server).values()) == {0}


def test_writes_share_the_org_budget_and_a_refused_write_is_not_applied(make_server: ServerFactory) -> None:
    server = make_server(rate_limit_per_second=3, rate_limit_clock=lambda: 1_000_000.5)
    with client_for(server) as client:
        assert client.get("/topics").status_code == 200
        answers = [client.post("/customer-profiles", json=profile(f"r-{n}")) for n in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert [a.headers["Ratelimit-Remaining-Second"] for a in answers] == ["1", "0", "0"]
    refused = answers[-1]
    assert refused.headers["Ratelimit-Limit-Second"] == "3" and "Retry-After" not in refused.headers
    assert errors(refused)[0]["code"] == "rate_limited"
    assert stats(server)["customer_profiles_created"] == 2


def test_lost_response_on_a_create_still_applies_it(make_server: ServerFactory) -> None:
    server = make_server(faults=FaultConfig(lost_response=1.0))
    with client_for(server) as client:
        with pytest.raises(httpx.TransportError):
            client.post("/customer-profiles", json=CAROL)
        assert lookup(client, email="carol@example.com") == ["carol-1"]  # reads are not affected
    assert stats(server)["customer_profiles_created"] == 1
