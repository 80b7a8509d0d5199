"""The Gladly target client (`vendors/gladly/profiles.py`) against the Gladly emulator over real
HTTP: profiles, topics and activity items, and creates that end with exactly one object whatever
the answer was (201, 409, a lost response, a 5xx)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from migration_pipeline.lib.http import VendorAPIError
from migration_pipeline.vendors.gladly.client import GladlyClient
from migration_pipeline.vendors.gladly.profiles import (
    CustomerActivity,
    GladlyTarget,
    Phone,
    ProfileFields,
    ProfileOutcome,
    TopicOutcome,
    stable_id,
)
from migration_pipeline_tests.conftest import DATASET_NOW, GLADLY_TOKEN, GLADLY_USER
from sim.emulators.common import FaultConfig, FaultDecider, RunningServer

DANA = ProfileFields(name="Dana", emails=["Dana@Example.com"], phones=[Phone(number="+1 650 555 0101", type="MOBILE")])
DANA_ID = stable_id("zendesk-user:1")
PROFILES = "/api/v1/customer-profiles"


@pytest.fixture
def empty_org(tmp_path: Path) -> Path:
    """A Gladly organization with no data yet: what a migration into Gladly starts from."""
    (tmp_path / "org" / "gladly").mkdir(parents=True)
    return tmp_path / "org"


@pytest.fixture
def start(empty_org: Path, gladly_server_factory, tmp_path: Path) -> Iterator:
    """`start(faults=...)` -> (emulator, GladlyTarget): Gladly's 10/s limit, the client at 9/s
    drawing from a shared org budget as in production, quick backoff."""
    clients: list[GladlyClient] = []

    def make(faults: FaultConfig | None = None, token: str = GLADLY_TOKEN) -> tuple[RunningServer, GladlyTarget]:
        server = gladly_server_factory(empty_org, faults=faults)
        client = GladlyClient(server.url, GLADLY_USER, token, budget_dir=tmp_path / "budget",
                              backoff_initial_seconds=0.01, backoff_max_seconds=0.05)
        clients.append(client)
        return server, GladlyTarget(client)

    yield make
    for client in clients:
        client.close()


def stats(server: RunningServer) -> dict[str, int]:
    return httpx.get(server.url + "/_emulator/stats").json()


def sent(server: RunningServer, method: str, path: str) -> list[dict]:
    """The requests the emulator received for one method and path, with any injected fault."""
    return [r for r in httpx.get(server.url + "/_emulator/requests").json() if (r["method"], r["path"]) == (method, path)]


def test_create_update_and_find_a_profile(start) -> None:
    server, target = start()
    outcome = target.create_profile(DANA, profile_id=DANA_ID)
    target.update_profile(DANA_ID, ProfileFields(name="Dana B"))
    [by_email] = target.find_profiles_by_email("dana@example.com")
    [by_phone] = target.find_profiles_by_phone("+16505550101")
    assert outcome == ProfileOutcome(DANA_ID, created=True)
    assert by_email.id == by_phone.id == DANA_ID
    assert by_email.name == "Dana B"  # the PATCH named only the name: emails and phones kept
    assert [e["normalized"] for e in by_email.emails] == ["dana@example.com"]
    assert [(p["normalized"], p["type"]) for p in by_email.phones] == [("+16505550101", "MOBILE")]
    assert target.find_profiles_by_email("nobody@example.com") == []
    assert stats(server)["customer_profiles_created"] == 1


@pytest.mark.parametrize(
    ("second", "second_id", "matched_by"),
    [
        (ProfileFields(name="Other", emails=["DANA@example.com"]), stable_id("zendesk-user:2"), "email"),
        (ProfileFields(phones=[Phone(number="+16505550101", type="MOBILE")]), stable_id("zendesk-user:3"), "phone"),
        (ProfileFields(name="Same user, next run"), DANA_ID, "id"),
    ],
    ids=["email", "mobile", "id"],
)
def test_a_409_is_resolved_to_the_existing_profile_without_a_second_create(
    start, second: ProfileFields, second_id: str, matched_by: str
) -> None:
    server, target = start()
    target.create_profile(DANA, profile_id=DANA_ID)
    outcome = target.create_profile(second, profile_id=second_id)
    assert outcome == ProfileOutcome(DANA_ID, created=False, matched_by=matched_by)
    assert [r["status"] for r in sent(server, "POST", PROFILES)] == [201, 409]
    assert stats(server)["customer_profiles_created"] == 1


def test_an_unanswered_create_is_found_and_never_sent_again(start) -> None:
    server, target = start(FaultConfig(lost_response=1.0))
    outcome = target.create_profile(DANA)  # a fresh id, made by the client
    assert outcome.created and outcome.matched_by == "id"
    assert [r["fault"] for r in sent(server, "POST", PROFILES)] == ["lost_response"]
    assert stats(server)["customer_profiles_created"] == 1
    assert [p.id for p in target.find_profiles_by_email("dana@example.com")] == [outcome.id]


def test_a_5xx_before_the_create_was_applied_is_looked_up_then_sent_again(start) -> None:
    """The injected 5xx answers before the emulator applies the write: the lookups find nothing,
    so the create is sent once more, and makes the one profile."""
    rate = 0.5

    def draws(seed: int) -> tuple[bool, ...]:
        decider = FaultDecider(FaultConfig(seed=seed))
        post = f"POST {PROFILES}"
        return (decider.hit("5xx", post, rate), decider.hit("5xx", post, rate),
                decider.hit("5xx", f"GET {PROFILES}/{DANA_ID}", rate), decider.hit("5xx", f"GET {PROFILES}", rate))

    seed = next(s for s in range(1000) if draws(s) == (True, False, False, False))
    server, target = start(FaultConfig(seed=seed, rate_5xx=rate))
    assert target.create_profile(DANA, profile_id=DANA_ID) == ProfileOutcome(DANA_ID, created=True)
    assert [r["status"] for r in sent(server, "POST", PROFILES)][1:] == [201]
    assert sent(server, "POST", PROFILES)[0]["fault"] in {"500", "502", "503"}
    assert stats(server)["customer_profiles_created"] == 1


def test_a_refused_profile_raises_with_gladlys_reason(start) -> None:
    server, target = start()
    with pytest.raises(VendorAPIError) as refused:
        target.create_profile(ProfileFields(emails=["not an address"]))
    assert refused.value.status == 400 and "emails.original" in str(refused.value)
    _, unauthorized = start(token="wrong-token")
    with pytest.raises(VendorAPIError) as denied:
        unauthorized.create_profile(DANA)
    assert denied.value.status == 401 and GLADLY_TOKEN not in str(denied.value)
    assert stats(server)["customer_profiles_created"] == 0


def test_topics_are_created_once_by_name(start) -> None:
    server, target = start(FaultConfig(lost_response=1.0))
    billing = target.create_topic("Billing")
    again = target.create_topic("Billing", topic_id=stable_id("zendesk-tag:billing"))
    assert billing.created and again == TopicOutcome(billing.id, "Billing", created=False)
    assert [(t.id, t.name) for t in target.list_topics()] == [(billing.id, "Billing")]
    assert stats(server)["topics_created"] == 1


def test_activity_items_are_added_once_and_the_one_year_rule_holds(start) -> None:
    server, target = start()
    target.create_profile(DANA, profile_id=DANA_ID)
    card = CustomerActivity(id=stable_id("zendesk-comment:7"), activity_type="EMAIL", title="Refund issued",
                            body="We refunded order 1234.", source_name="Zendesk",
                            occurred_at=DATASET_NOW - timedelta(days=30))
    first = target.add_activity(DANA_ID, card)
    again = target.add_activity(DANA_ID, card)
    assert (first.created, again.created) == (True, False)
    stored = target.client.request("GET", f"/conversation-items/{card.id}").json()
    assert stored["customerId"] == DANA_ID and stored["content"]["title"] == "Refund issued"
    assert stored["timestamp"] == "2026-10-21T06:00:00.000Z"
    too_old = card.model_copy(update={"id": stable_id("zendesk-comment:8"), "occurred_at": DATASET_NOW - timedelta(days=367)})
    with pytest.raises(VendorAPIError) as refused:
        target.add_activity(DANA_ID, too_old)
    assert refused.value.status == 400 and "content.occurredAt" in str(refused.value)
    assert stats(server)["activity_items_created"] == 1


def test_an_unanswered_activity_item_is_found_not_doubled(start) -> None:
    server, target = start()
    target.create_profile(DANA, profile_id=DANA_ID)
    httpx.put(server.url + "/_emulator/faults", json={"lost_response": 1.0})
    card = CustomerActivity(id=stable_id("zendesk-comment:9"), activity_type="ISSUE", title="Ticket 9")
    assert target.add_activity(DANA_ID, card).created
    assert len(sent(server, "POST", f"/api/v1/customers/{DANA_ID}/conversation-items")) == 1
    assert stats(server)["activity_items_created"] == 1
