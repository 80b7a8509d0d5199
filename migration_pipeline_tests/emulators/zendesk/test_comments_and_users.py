"""Ticket comments (cursor and offset pagination, order, the delta's comments) and users."""

from __future__ import annotations

from typing import Any

import httpx

from migration_pipeline_tests.synth.zendesk_helpers import ZendeskDataset
from sim.emulators.common import RunningServer

from .conftest import ServerFactory, client_for, move_clock


def cursor_pages(client: httpx.Client, path: str, key: str, size: int) -> list[list[dict[str, Any]]]:
    page = client.get(path, params={"page[size]": size}).json()
    pages = [page]
    while page["meta"]["has_more"]:
        page = client.get(page["links"]["next"]).json()
        pages.append(page)
    assert pages[-1]["links"]["next"] is None
    return [p[key] for p in pages]


def busiest_ticket(zd: ZendeskDataset) -> tuple[int, list[dict[str, Any]]]:
    """The exported ticket with the most comments at export time, and those comments."""
    ticket, comments = max(((t["id"], t["comments"]) for t in zd.export_objects("embedded", "tickets").values()),
                           key=lambda pair: (len(pair[1]), pair[0]))
    assert len(comments) >= 5
    return ticket, comments


def test_comments_by_cursor_pages(shared_server: RunningServer, zd: ZendeskDataset) -> None:
    ticket_id, comments = busiest_ticket(zd)
    path = f"/tickets/{ticket_id}/comments.json"
    with client_for(shared_server) as client:
        pages = cursor_pages(client, path, "comments", 2)
        first = client.get(path, params={"page[size]": 2}).json()
        second = client.get(first["links"]["next"]).json()
        back = client.get(second["links"]["prev"]).json()
        newest_first = client.get(path, params={"page[size]": 100, "sort_order": "desc"}).json()["comments"]
    assert [len(p) for p in pages[:-1]] == [2] * (len(pages) - 1)
    assert [c for p in pages for c in p] == comments  # every comment once, oldest first
    assert first["links"]["prev"] is None and back["comments"] == first["comments"]
    assert newest_first == comments[::-1]


def test_comments_by_offset_pages(shared_server: RunningServer, zd: ZendeskDataset) -> None:
    ticket_id, comments = busiest_ticket(zd)
    with client_for(shared_server) as client:
        page = client.get(f"/tickets/{ticket_id}/comments", params={"per_page": 2}).json()
        seen = list(page["comments"])
        assert page["count"] == len(comments) and page["previous_page"] is None
        while page["next_page"]:
            page = client.get(page["next_page"]).json()
            seen += page["comments"]
        too_deep = client.get(f"/tickets/{ticket_id}/comments", params={"page": 101, "per_page": 100})
    assert seen == comments
    assert too_deep.status_code == 400


def test_missing_deleted_and_empty_tickets(make_server: ServerFactory, zd: ZendeskDataset) -> None:
    server = make_server()
    (empty,) = zd.where_ids("tickets_without_comments", "ticketId")
    (deleted,) = zd.where_ids("delta_deleted_tickets", "ticketId")
    with client_for(server) as client:
        assert client.get(f"/tickets/{empty}/comments.json").json()["comments"] == []
        assert client.get(f"/tickets/{deleted}/comments.json").status_code == 200
        missing = client.get("/tickets/999999/comments.json")
        move_clock(server, zd.account["deltaAt"])
        gone = client.get(f"/tickets/{deleted}/comments.json")
        gone_ticket = client.get(f"/tickets/{deleted}.json")
        unknown = client.get("/tickets/1/audits.json")
    for refused in (missing, gone, gone_ticket):
        assert refused.status_code == 404 and refused.json() == {"error": "RecordNotFound", "description": "Not found"}
    assert unknown.status_code == 404 and unknown.json()["error"] == "InvalidEndpoint"


def test_delta_comments_appear_when_the_clock_moves(make_server: ServerFactory, zd: ZendeskDataset) -> None:
    server = make_server()
    entry = zd.mess("delta_new_comments")[0]
    path = f"/tickets/{entry['ticketId']}/comments.json"
    with client_for(server) as client:
        before = [c["id"] for c in client.get(path).json()["comments"]]
        move_clock(server, entry["createdAt"])
        after = [c["id"] for c in client.get(path).json()["comments"]]
    assert entry["commentId"] not in before and after[: len(before)] == before and entry["commentId"] in after


def test_users(make_server: ServerFactory, zd: ZendeskDataset) -> None:
    server = make_server()
    deletions = {e["deletion"]: e["userId"] for e in zd.mess("deleted_users")}
    (newcomer,) = zd.where_ids("delta_new_users", "userId")
    exported_users = zd.export_objects("embedded", "users")
    with client_for(server) as client:
        soft = client.get(f"/users/{deletions['soft']}.json").json()["user"]
        permanent = client.get(f"/users/{deletions['permanent']}")
        wanted = sorted(exported_users)[:3] + [deletions["permanent"]]
        many = client.get("/users/show_many.json", params={"ids": ",".join(map(str, wanted))}).json()["users"]
        listed = [u for page in cursor_pages(client, "/users.json", "users", 5) for u in page]
        end_users = client.get("/users.json", params={"role": "end-user"}).json()["users"]
        not_yet = client.get(f"/users/{newcomer}")
        move_clock(server, zd.account["deltaAt"])
        arrived = client.get(f"/users/{newcomer}")
    assert soft["active"] is False and soft == exported_users[deletions["soft"]]
    assert permanent.status_code == 404 and permanent.json()["error"] == "RecordNotFound"
    assert [u["id"] for u in many] == sorted(exported_users)[:3]
    assert listed == [exported_users[i] for i in sorted(exported_users)]
    assert end_users and all(u["role"] == "end-user" for u in end_users)
    assert not_yet.status_code == 404 and arrived.status_code == 200


def test_users_sideloaded_and_identities(shared_server: RunningServer, zd: ZendeskDataset) -> None:
    permanent = next(e for e in zd.mess("deleted_users") if e["deletion"] == "permanent")
    ticket_id = permanent["ticketIds"][0]
    no_email = zd.mess("requesters_without_email")[0]["userId"]
    with client_for(shared_server) as client:
        page = client.get(f"/tickets/{ticket_id}/comments.json", params={"include": "users"}).json()
        plain = client.get(f"/tickets/{ticket_id}/comments.json").json()
        stream = client.get("/incremental/tickets/cursor.json", params={"start_time": 0, "include": "users"}).json()
        phone_only = client.get(f"/users/{no_email}/identities.json").json()["identities"]
    authors = {c["author_id"] for c in page["comments"]}
    assert permanent["userId"] in authors and "users" not in plain
    assert {u["id"] for u in page["users"]} == authors - {permanent["userId"]}  # a deleted user cannot be sideloaded
    requesters = {t["requester_id"] for t in stream["tickets"]} - {permanent["userId"]}
    assert requesters <= {u["id"] for u in stream["users"]}
    assert [(i["type"], i["primary"]) for i in phone_only] == [("phone_number", False)]
