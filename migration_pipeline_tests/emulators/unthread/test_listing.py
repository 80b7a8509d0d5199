"""The list convention: keyset paging, cursors both ways, where operators, select, limits."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import Emulator, StartEmulator, launch


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Emulator, list[str]]]:
    """A module emulator holding 250 tags, made once (paging tests only read)."""
    emu = launch(tmp_path_factory.mktemp("paging") / "state.sqlite")
    ids = [emu.client.post("/tags", json={"name": f"tag-{i:03d}"}).json()["id"] for i in range(250)]
    yield emu, ids
    emu.close()


def _walk(emu: Emulator, path: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Follow `next` cursors to the end; returns the rows and every response."""
    rows, pages, cursor = [], [], ""
    while True:
        page = emu.client.post(path, json={**body, "cursor": cursor}).json()
        pages.append(page)
        rows += page["data"]
        if not page["cursors"]["hasNext"]:
            return rows, pages
        cursor = page["cursors"]["next"]


def _ordered_ids(emu: Emulator) -> list[str]:
    """The expected (createdAt, id) order, computed client-side from full objects."""
    rows, _ = _walk(emu, "/tags/list", {"limit": 100})
    return [r["id"] for r in sorted(rows, key=lambda r: (r["createdAt"], r["id"]))]


def test_paging_250_with_limit_100_visits_each_once_in_order(tagged: Any) -> None:
    emu, ids = tagged
    rows, pages = _walk(emu, "/tags/list", {"limit": 100})
    assert [len(p["data"]) for p in pages] == [100, 100, 50]
    assert all(p["totalCount"] == 250 for p in pages)
    seen = [r["id"] for r in rows]
    assert sorted(seen) == sorted(ids) and len(set(seen)) == 250
    assert seen == _ordered_ids(emu)
    assert [p["cursors"]["hasPrevious"] for p in pages] == [False, True, True]
    assert [p["cursors"]["hasNext"] for p in pages] == [True, True, False]
    assert "next" in pages[-1]["cursors"]  # present even on the last page (INFERRED from the library)


def test_descending_is_the_exact_reverse(tagged: Any) -> None:
    emu, _ = tagged
    rows, _ = _walk(emu, "/tags/list", {"limit": 100, "descending": True})
    assert [r["id"] for r in rows] == list(reversed(_ordered_ids(emu)))


def test_order_by_name_then_previous_page(tagged: Any) -> None:
    emu, _ = tagged
    first = emu.client.post("/tags/list", json={"order": ["name"], "limit": 100}).json()
    second = emu.client.post("/tags/list", json={"order": ["name"], "limit": 100, "cursor": first["cursors"]["next"]}).json()
    assert [r["name"] for r in second["data"]] == [f"tag-{i:03d}" for i in range(100, 200)]
    back = emu.client.post(
        "/tags/list", json={"order": ["name"], "limit": 100, "cursor": second["cursors"]["previous"]}
    ).json()
    assert back["data"] == first["data"]
    assert back["cursors"]["hasNext"] is True and back["cursors"]["hasPrevious"] is False
    middle = emu.client.post(
        "/tags/list", json={"order": ["name"], "limit": 10, "cursor": second["cursors"]["previous"]}
    ).json()
    assert [r["name"] for r in middle["data"]] == [f"tag-{i:03d}" for i in range(90, 100)]
    assert middle["cursors"]["hasPrevious"] is True and middle["cursors"]["hasNext"] is True


def test_limit_is_clamped_to_100_and_defaults_to_100(tagged: Any) -> None:
    emu, _ = tagged
    assert len(emu.client.post("/tags/list", json={"limit": 200}).json()["data"]) == 100
    assert len(emu.client.post("/tags/list", json={}).json()["data"]) == 100
    assert len(emu.client.post("/tags/list", content=b"").json()["data"]) == 100


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": -5}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"limit": 2.5}, "limit"),
        ({"cursor": "garbage!!"}, "cursor"),
        ({"cursor": base64.b64encode(b"[1,2,3]").decode()}, "cursor"),
        ({"cursor": base64.b64encode(json.dumps([True, ["a"]]).encode()).decode()}, "order"),
        ({"where": [{"field": "name", "operator": "~=", "value": "x"}]}, "'~='"),
        ({"where": [{"field": "nope", "operator": "==", "value": "x"}]}, "'nope'"),
        ({"where": [{"field": "name", "operator": "in", "value": "x"}]}, "list"),
        ({"where": [{"field": "name", "operator": "=="}]}, "value"),
        ({"where": {"field": "name"}}, "where"),
        ({"select": ["name", "bogus"]}, "'bogus'"),
        ({"select": "name"}, "select"),
        ({"order": ["bogus"]}, "'bogus'"),
        ({"descending": "yes"}, "descending"),
    ],
)
def test_list_refusals(tagged: Any, body: dict[str, Any], fragment: str) -> None:
    emu, _ = tagged
    r = emu.client.post("/tags/list", json=body)
    assert r.status_code == 400 and fragment in r.json()["error"], r.text


def _names(emu: Emulator, where: list[dict[str, Any]]) -> list[str]:
    body = {"where": where, "order": ["name"], "select": ["name"]}
    r = emu.client.post("/tags/list", json=body)
    assert r.status_code == 200, r.text
    return [row["name"] for row in r.json()["data"]]


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("==", "tag-005", ["tag-005"]),
        (">", "tag-247", ["tag-248", "tag-249"]),
        ("<", "tag-002", ["tag-000", "tag-001"]),
        (">=", "tag-248", ["tag-248", "tag-249"]),
        ("<=", "tag-001", ["tag-000", "tag-001"]),
        ("in", ["tag-010", "tag-020", "nope"], ["tag-010", "tag-020"]),
        ("like", "tag-24%", [f"tag-24{i}" for i in range(10)]),
        ("like", "TAG-24%", []),
        ("contains", "-19", [f"tag-19{i}" for i in range(10)]),
    ],
)
def test_where_operators(tagged: Any, op: str, value: Any, expected: list[str]) -> None:
    emu, _ = tagged
    assert _names(emu, [{"field": "name", "operator": op, "value": value}]) == expected


def test_negative_operators_and_total_count(tagged: Any) -> None:
    emu, _ = tagged
    r = emu.client.post("/tags/list", json={"where": [{"field": "name", "operator": "!=", "value": "tag-000"}]}).json()
    assert r["totalCount"] == 249
    r = emu.client.post(
        "/tags/list", json={"where": [{"field": "name", "operator": "notIn", "value": ["tag-000", "tag-001"]}]}
    ).json()
    assert r["totalCount"] == 248
    r = emu.client.post("/tags/list", json={"where": [{"field": "name", "operator": "notContains", "value": "-1"}]}).json()
    assert r["totalCount"] == 150  # every tag-1xx holds "-1"
    combined = _names(
        emu,
        [{"field": "name", "operator": ">=", "value": "tag-100"}, {"field": "name", "operator": "<", "value": "tag-103"}],
    )
    assert combined == ["tag-100", "tag-101", "tag-102"]


def test_conversation_where_select_and_nullable_order(start_emulator: StartEmulator) -> None:
    emu = start_emulator()
    acme, globex = emu.customer("Acme"), emu.customer("Globex")
    vip = emu.client.post("/tags", json={"name": "vip"}).json()
    made = []
    for i in range(30):
        fields: dict[str, Any] = {"customerId": (acme if i % 2 else globex)["id"], "title": f"t{i}"}
        fields["priority"] = None if i % 3 == 0 else (3, 5, 7, 9)[i % 4]
        fields["metadata"] = {"gladlyId": f"g{i}"}
        if i % 5 == 0:
            fields["tags"] = [vip["id"]]
        made.append(emu.conversation(**fields))

    def query(body: dict[str, Any]) -> dict[str, Any]:
        r = emu.client.post("/conversations/list", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    by_customer = query({"where": [{"field": "customerId", "operator": "==", "value": acme["id"]}]})
    assert by_customer["totalCount"] == 15
    by_name = query({"where": [{"field": "customer.name", "operator": "==", "value": "Globex"}]})
    assert by_name["totalCount"] == 15
    by_meta = query({"where": [{"field": "metadata.gladlyId", "operator": "==", "value": "g7"}], "select": ["title"]})
    assert by_meta["data"] == [{"title": "t7"}]
    by_tag = query({"where": [{"field": "tags.name", "operator": "==", "value": "vip"}], "select": ["title"]})
    assert sorted(r["title"] for r in by_tag["data"]) == sorted(f"t{i}" for i in range(0, 30, 5))
    untagged = query({"where": [{"field": "tags.name", "operator": "!=", "value": "vip"}]})
    assert untagged["totalCount"] == 24
    no_priority = query({"where": [{"field": "priority", "operator": "==", "value": None}]})
    assert no_priority["totalCount"] == 10
    meta_contains = query({"where": [{"field": "metadata", "operator": "contains", "value": {"gladlyId": "g8"}}]})
    assert [r["title"] for r in meta_contains["data"]] == ["t8"]
    since = query({"where": [{"field": "updatedAt", "operator": ">=", "value": "2000-01-01"}]})
    assert since["totalCount"] == 30

    selected = query({"select": ["id", "customer.name", "initialMessage.text", "tags.name"], "limit": 1})
    first = made[0]
    assert selected["data"] == [
        {"id": first["id"], "customer": {"name": "Globex"}, "initialMessage": {"text": "Hello"}, "tags": [{"name": "vip"}]}
    ]

    for descending in (False, True):
        rows = []
        cursor = ""
        while True:
            page = query({"order": ["priority"], "descending": descending, "limit": 7, "cursor": cursor})
            rows += page["data"]
            if not page["cursors"]["hasNext"]:
                break
            cursor = page["cursors"]["next"]
        assert sorted(r["id"] for r in rows) == sorted(c["id"] for c in made)  # each exactly once
        priorities = [r["priority"] for r in rows]
        expected = sorted(priorities, key=lambda p: (p is None, p or 0, 0))
        assert priorities == (list(reversed(expected)) if descending else expected)  # nulls last ascending


def test_list_field_contains_element(start_emulator: StartEmulator) -> None:
    emu = start_emulator()
    emu.customer("A", emailDomains=["a.example", "shared.example"])
    emu.customer("B", emailDomains=["b.example"])
    emu.customer("C")

    def names(op: str, value: object) -> list[str]:
        body = {"where": [{"field": "emailDomains", "operator": op, "value": value}], "order": ["name"], "select": ["name"]}
        return [r["name"] for r in emu.client.post("/customers/list", json=body).json()["data"]]

    assert names("contains", "shared.example") == ["A"]
    assert names("contains", ["a.example", "shared.example"]) == ["A"]
    assert names("contains", ["a.example", "b.example"]) == []
    assert names("notContains", "b.example") == ["A", "C"]
