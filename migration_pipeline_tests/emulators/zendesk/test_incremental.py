"""The cursor-based incremental ticket export: start_time, then after_cursor/after_url until
end_of_stream; the delta once the clock has moved; the last minute held back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from migration_pipeline_tests.synth.zendesk_helpers import ZendeskDataset
from sim.emulators.common import RunningServer
from sim.emulators.zendesk.store import epoch_seconds

from .conftest import ServerFactory, client_for, move_clock

PATH = "/incremental/tickets/cursor.json"


def stream(client: httpx.Client, params: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every ticket from `params` on, following after_url until end_of_stream; and the pages."""
    response = client.get(PATH, params=params)
    assert response.status_code == 200, response.text
    pages = [response.json()]
    while not pages[-1]["end_of_stream"]:
        response = client.get(pages[-1]["after_url"])
        assert response.status_code == 200, response.text
        pages.append(response.json())
    return [t for page in pages for t in page["tickets"]], pages


def rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_pages_through_the_export_state(shared_server: RunningServer, zd: ZendeskDataset) -> None:
    with client_for(shared_server) as client:
        tickets, pages = stream(client, {"start_time": 0, "per_page": 4})
    exported = zd.export_objects("absent", "tickets")
    assert len(pages) > 2 and all(len(p["tickets"]) == 4 and p["after_cursor"] for p in pages[:-1])
    assert set(pages[0]) == {"tickets", "after_url", "after_cursor", "before_url", "before_cursor", "end_of_stream"}
    assert [t["id"] for t in tickets] == sorted(exported, key=lambda i: (exported[i]["updated_at"], i))
    for ticket in tickets:
        generated = ticket.pop("generated_timestamp")
        assert ticket == exported[ticket["id"]]  # the export line is the API's ticket
        assert generated == epoch_seconds(ticket["updated_at"])


def test_the_delta_arrives_after_the_clock_moves(make_server: ServerFactory, zd: ZendeskDataset) -> None:
    server = make_server()
    delta_ids = zd.where_ids("delta_new_tickets", "ticketId") | zd.where_ids("delta_updated_tickets", "ticketId")
    (deleted,) = zd.where_ids("delta_deleted_tickets", "ticketId")
    with client_for(server) as client:
        _, pages = stream(client, {"start_time": 0})
        cursor = pages[-1]["after_cursor"]
        assert stream(client, {"cursor": cursor})[0] == []  # nothing new yet: the same cursor back
        assert client.get(PATH, params={"cursor": cursor}).json()["after_cursor"] == cursor
        move_clock(server, zd.account["deltaAt"])
        delta, _ = stream(client, {"cursor": cursor, "per_page": 3})
        since, _ = stream(client, {"start_time": epoch_seconds(zd.account["exportedAt"])})
        kept, _ = stream(client, {"cursor": cursor, "exclude_deleted": "true"})
    assert {t["id"] for t in delta} == delta_ids and len(delta) == len(delta_ids)
    assert [t["id"] for t in since] == [t["id"] for t in delta]
    newest = {i: versions[-1] for i, versions in zd.api_versions().items()}
    assert all(t == newest[t["id"]] for t in delta)
    assert next(t for t in delta if t["id"] == deleted)["status"] == "deleted"
    assert {t["id"] for t in kept} == delta_ids - {deleted}


def test_the_last_minute_is_held_back(make_server: ServerFactory, zd: ZendeskDataset) -> None:
    server = make_server()
    exported = epoch_seconds(zd.account["exportedAt"])
    changes = sorted((v["generated_timestamp"], i) for i, vs in zd.api_versions().items() for v in vs
                     if v["generated_timestamp"] > exported)
    first_change, ticket_id = changes[0]
    start = {"start_time": exported}
    with client_for(server) as client:
        move_clock(server, rfc3339(first_change + 30))
        held, _ = stream(client, start)
        move_clock(server, rfc3339(first_change + 61))
        shown, _ = stream(client, start)
    assert ticket_id not in {t["id"] for t in held}
    assert ticket_id in {t["id"] for t in shown}


def test_refusals_and_an_empty_stream(shared_server: RunningServer, zd: ZendeskDataset) -> None:
    with client_for(shared_server) as client:
        for params in ({}, {"start_time": "yesterday"}, {"cursor": "not-a-cursor"}, {"start_time": 0, "per_page": 0}):
            refused = client.get(PATH, params=params)
            assert refused.status_code == 400, params
            assert isinstance(refused.json()["error"], str) and refused.json()["description"]
        future = client.get(PATH, params={"start_time": epoch_seconds(zd.account["deltaAt"])}).json()
    assert future["tickets"] == [] and future["end_of_stream"] is True and future["after_cursor"] is None
