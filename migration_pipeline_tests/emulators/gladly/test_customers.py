"""Customer profiles, lookups, merged-away ids and a customer's conversations."""

from __future__ import annotations

import httpx
import pytest

from .conftest import CONVERSATIONS, CUSTOMERS, MANY_CONVERSATIONS, errors


def customer_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()]


def test_get_profile(client: httpx.Client) -> None:
    response = client.get("/customer-profiles/cust-1")
    assert response.status_code == 200
    assert response.json() == CUSTOMERS[0]


@pytest.mark.parametrize(("old", "new"), [("cust-merged", "cust-1"), ("cust-gone", "cust-1")])
def test_merged_away_profile_is_301_without_location(client: httpx.Client, old: str, new: str) -> None:
    response = client.get(f"/customer-profiles/{old}")
    assert response.status_code == 301
    assert "Location" not in response.headers
    assert errors(response) == [
        {"attr": "customerId", "code": "moved", "detail": "customer id has changed", "meta": {"old": old, "new": new}}
    ]


def test_unknown_profile_is_404(client: httpx.Client) -> None:
    response = client.get("/customer-profiles/nobody")
    assert response.status_code == 404
    assert errors(response) == [{"code": "not_exist", "detail": "customer profile [nobody] does not exist"}]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"email": "ALICE@example.com"}, ["cust-1"]),
        # newest updatedAt first; cust-merged also has the address but is merged away
        ({"email": "shared@example.com"}, ["cust-2", "cust-3"]),
        ({"email": "nobody@example.com"}, []),
        ({"phoneNumber": "+15550000001"}, ["cust-1"]),
        ({"phoneNumber": "15550000001"}, []),
        ({"externalCustomerId": "ext-1"}, ["cust-1"]),
        ({"externalCustomerId": "legacy-9"}, ["cust-legacy"]),
        ({"email": "many@example.com", "unrelated": "x"}, ["cust-many"]),
    ],
)
def test_lookup(client: httpx.Client, params: dict[str, str], expected: list[str]) -> None:
    assert customer_ids(client.get("/customer-profiles", params=params)) == expected


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", "blank"),
        ("?email=a@example.com&phoneNumber=%2B15550000001", "invalid"),
        ("?email=a@example.com&email=b@example.com", "invalid"),
        ("?email=", "blank"),
    ],
)
def test_lookup_needs_exactly_one_parameter(client: httpx.Client, query: str, code: str) -> None:
    response = client.get("/customer-profiles" + query)
    assert response.status_code == 400
    assert errors(response)[0]["code"] == code


def test_unescaped_plus_in_phone_number_matches_nothing(client: httpx.Client) -> None:
    """A raw `+` in a query string decodes to a space: Gladly asks for `%2B`, so no match."""
    assert customer_ids(client.get("/customer-profiles?phoneNumber=+15550000001")) == []


def test_conversations_ascending_and_not_limited(client: httpx.Client) -> None:
    response = client.get("/customers/cust-1/conversations")
    assert response.status_code == 200
    assert [c["id"] for c in response.json()] == ["conv-2", "conv-1"]
    assert response.json()[1] == CONVERSATIONS[0]
    assert response.headers["Gladly-Limited-Data"] == "false"


def test_more_than_100_conversations_are_capped_and_flagged(client: httpx.Client) -> None:
    response = client.get("/customers/cust-many/conversations")
    body = response.json()
    assert response.headers["Gladly-Limited-Data"] == "true"
    assert len(body) == 100 < MANY_CONVERSATIONS
    assert [c["id"] for c in body] == [f"conv-many-{n:03d}" for n in range(100)]  # the oldest 100


def test_customer_without_conversations_is_an_empty_list(client: httpx.Client) -> None:
    response = client.get("/customers/cust-3/conversations")
    assert response.json() == []
    assert response.headers["Gladly-Limited-Data"] == "false"


def test_conversations_of_merged_and_unknown_customers(client: httpx.Client) -> None:
    moved = client.get("/customers/cust-merged/conversations")
    assert moved.status_code == 301
    assert errors(moved)[0]["meta"] == {"old": "cust-merged", "new": "cust-1"}
    missing = client.get("/customers/nobody/conversations")
    assert missing.status_code == 404
    assert errors(missing) == [{"code": "not_exist", "detail": "customer profile [nobody] does not exist"}]
