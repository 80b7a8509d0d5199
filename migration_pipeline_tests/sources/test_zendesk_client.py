"""The Zendesk client (vendors/zendesk/client.py) against the Zendesk emulator over real HTTP:
the incremental ticket export paged to end_of_stream and, once the emulator's clock has moved,
exactly the delta from the kept cursor; 429s (Retry-After honoured) and 5xx survived; every
comment of a ticket across pages; users in show_many chunks; the token never in a repr, an
error or a log line."""

from __future__ import annotations

import base64
import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import httpx
import pytest

from migration_pipeline.lib.http import VendorAPIError
from migration_pipeline.vendors.zendesk.client import ZendeskClient
from migration_pipeline.vendors.zendesk.records import ZendeskTicket
from migration_pipeline.vendors.zendesk.resources import ZendeskResource
from migration_pipeline_tests.synth.zendesk_helpers import ZendeskDataset
from sim.emulators.common import FaultConfig, RunningServer
from sim.emulators.zendesk import create_app
from sim.emulators.zendesk.store import epoch_seconds
from sim.synth.zendesk import generate

EMAIL = "migrator@example.com"
TOKEN = "zd-token-s3cr3t-0042"
CREDENTIALS = base64.b64encode(f"{EMAIL}/token:{TOKEN}".encode()).decode()
INCREMENTAL = "/api/v2/incremental/tickets/cursor.json"
MINUTE_START = 6_000_000.0  # a whole minute of the epoch

Start = Callable[..., tuple[RunningServer, ZendeskClient]]


@pytest.fixture(scope="module")
def zd(tmp_path_factory: pytest.TempPathFactory) -> ZendeskDataset:
    root = tmp_path_factory.mktemp("zendesk-client")
    generate(root, customers=9, days=3, seed=7, end=date(2024, 6, 1))
    return ZendeskDataset(root)


@pytest.fixture
def start(zd: ZendeskDataset) -> Iterator[Start]:
    """A fresh emulator (no limits unless asked) and a client of it that does not pace itself and
    backs off briefly, so the tests see the emulator's answers, not the client's pacing."""
    opened: list[tuple[RunningServer, ZendeskClient]] = []

    def make(*, token: str = TOKEN, **emulator: Any) -> tuple[RunningServer, ZendeskClient]:
        options = {"rate_limit_per_minute": None, "incremental_limit_per_minute": None, **emulator}
        server = RunningServer(create_app(zd.root, email=EMAIL, api_token=TOKEN, **options)).start()
        client = ZendeskClient(server.url, EMAIL, token, requests_per_minute=None, incremental_requests_per_minute=None,
                               backoff_initial_seconds=0.05, backoff_max_seconds=0.2)
        opened.append((server, client))
        return server, client

    yield make
    for server, client in opened:
        client.close()
        server.stop()


def requests_seen(server: RunningServer) -> list[dict[str, Any]]:
    return httpx.get(server.url + "/_emulator/requests").json()


def move_clock(server: RunningServer, now: str) -> None:
    assert httpx.put(server.url + "/_emulator/clock", json={"now": now}).status_code == 200


def exported_order(zd: ZendeskDataset) -> list[int]:
    """The export's tickets in the incremental export's order (generated time, then id)."""
    exported = zd.export_objects("absent", "tickets")
    return sorted(exported, key=lambda i: (exported[i]["updated_at"], i))


def test_pages_the_incremental_export_to_end_of_stream(start: Start, zd: ZendeskDataset) -> None:
    server, client = start()
    pages = list(client.incremental_ticket_pages(start_time=0, per_page=4))
    assert [t.id for p in pages for t in p.tickets] == exported_order(zd)
    assert len(pages) > 2 and all(len(p.tickets) == 4 and p.after_cursor and not p.end_of_stream for p in pages[:-1])
    assert pages[-1].end_of_stream and pages[-1].after_cursor
    exported = zd.export_objects("absent", "tickets")
    for ticket in (t for p in pages for t in p.tickets):
        assert isinstance(ticket, ZendeskTicket) and ticket.comments is None
        assert (ticket.subject, ticket.requester_id, ticket.tags) == (
            exported[ticket.id]["subject"], exported[ticket.id]["requester_id"], exported[ticket.id]["tags"])
        assert ticket.generated_timestamp == epoch_seconds(exported[ticket.id]["updated_at"])
    assert len([r for r in requests_seen(server) if r["path"] == INCREMENTAL]) == len(pages)


def test_the_kept_cursor_gets_exactly_the_delta_after_the_clock_moves(start: Start, zd: ZendeskDataset) -> None:
    server, client = start()
    cursor = list(client.incremental_ticket_pages(start_time=0))[-1].after_cursor
    (nothing,) = client.incremental_ticket_pages(cursor=cursor)
    assert nothing.tickets == [] and nothing.end_of_stream and nothing.after_cursor == cursor
    (empty,) = client.incremental_ticket_pages(start_time=epoch_seconds(zd.account["deltaAt"]))
    assert empty.tickets == [] and empty.after_cursor is None  # keep start_time: no cursor yet

    move_clock(server, zd.account["deltaAt"])
    delta_pages = list(client.incremental_ticket_pages(cursor=cursor, per_page=3))
    delta = [t for p in delta_pages for t in p.tickets]
    expected = zd.where_ids("delta_new_tickets", "ticketId") | zd.where_ids("delta_updated_tickets", "ticketId")
    assert {t.id for t in delta} == expected and len(delta) == len(expected)
    (deleted,) = zd.where_ids("delta_deleted_tickets", "ticketId")
    assert next(t for t in delta if t.id == deleted).status == "deleted"
    kept = [t.id for p in client.incremental_ticket_pages(cursor=cursor, exclude_deleted=True) for t in p.tickets]
    assert set(kept) == expected - {deleted}
    (after,) = client.incremental_ticket_pages(cursor=delta_pages[-1].after_cursor)
    assert after.tickets == [] and after.after_cursor == delta_pages[-1].after_cursor != cursor
    with pytest.raises(ValueError, match="exactly one"):
        next(client.incremental_ticket_pages(start_time=0, cursor=cursor))


def test_injected_429s_and_5xx_are_survived_and_retry_after_honoured(start: Start, zd: ZendeskDataset) -> None:
    server, client = start(faults=FaultConfig(seed=8, rate_429=0.2, rate_5xx=0.3))
    tickets = [t.id for p in client.incremental_ticket_pages(start_time=0, per_page=4) for t in p.tickets]
    assert tickets == exported_order(zd)
    seen = requests_seen(server)
    faults = [r["fault"] for r in seen if r["fault"]]
    assert "429" in faults and {"500", "502", "503"} & set(faults)
    assert client.stats.throttled == faults.count("429") and client.stats.server_errors == len(faults) - faults.count("429")
    for refused, following in zip(seen, seen[1:]):
        if refused["fault"] == "429":  # injected 429s carry Retry-After: 1
            assert following["t"] - refused["t"] >= 0.95, (refused, following)


def test_the_incremental_limit_is_waited_out_for_its_retry_after(start: Start, zd: ZendeskDataset) -> None:
    # Two incremental calls a minute, 2 s before a minute ends: the third is refused with
    # Retry-After: 2 and must not come back before the next minute.
    order = exported_order(zd)
    began = [time.monotonic()]
    server, client = start(incremental_limit_per_minute=2,
                           rate_limit_clock=lambda: MINUTE_START + 58 + (time.monotonic() - began[0]))
    began[0] = time.monotonic()
    per_page = math.ceil(len(order) / 3)
    assert [t.id for p in client.incremental_ticket_pages(start_time=0, per_page=per_page) for t in p.tickets] == order
    seen = [r for r in requests_seen(server) if r["path"] == INCREMENTAL]
    assert [r["status"] for r in seen] == [200, 200, 429, 200]
    assert seen[3]["t"] - seen[2]["t"] >= 1.9  # Retry-After: 2, not the 0.05 s backoff


def test_every_comment_of_a_ticket_across_pages(start: Start, zd: ZendeskDataset) -> None:
    server, client = start()
    exported = zd.export_objects("embedded", "tickets")
    ticket_id = max(exported, key=lambda i: len(exported[i]["comments"]))
    expected = exported[ticket_id]["comments"]
    assert len(expected) > 4
    comments = client.ticket_comments(ticket_id, page_size=2)
    assert [c.id for c in comments] == [c["id"] for c in expected]
    assert [(c.public, c.plain_body, c.author_id) for c in comments] == [
        (c["public"], c["plain_body"], c["author_id"]) for c in expected]
    pages = [r for r in requests_seen(server) if r["path"] == f"/api/v2/tickets/{ticket_id}/comments.json"]
    assert len(pages) == math.ceil(len(expected) / 2)
    assert client.ticket_comments(999_999_999) is None


def test_users_in_show_many_chunks_without_the_permanently_deleted(start: Start, zd: ZendeskDataset) -> None:
    server, client = start()
    exported = zd.export_objects("absent", "users")
    gone = {e["userId"] for e in zd.mess("deleted_users") if e["deletion"] == "permanent"}
    assert gone and not gone & exported.keys()
    asked = [*exported, *gone, *list(exported)[:3]]  # repeated ids are asked once
    users = client.users(asked, chunk_size=4)
    assert {u.id: (u.email, u.role) for u in users} == {i: (u["email"], u["role"]) for i, u in exported.items()}
    calls = [r for r in requests_seen(server) if r["path"] == "/api/v2/users/show_many.json"]
    assert len(calls) == math.ceil((len(exported) + len(gone)) / 4)


def test_the_token_is_never_shown(start: Start, zd: ZendeskDataset, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, client = start(faults=FaultConfig(seed=6, rate_5xx=0.5))
    assert next(client.incremental_ticket_pages(start_time=0)).tickets  # after a 5xx, whose retry is logged
    fault_free, wrong = start(token="not-the-token")
    with pytest.raises(VendorAPIError) as refused:
        next(wrong.incremental_ticket_pages(start_time=0))
    assert refused.value.status == 401 and "Couldn't authenticate you" in str(refused.value)
    resource = ZendeskResource(base_url=fault_free.url, email=EMAIL, api_token=TOKEN)
    with resource.client() as from_resource:
        assert from_resource.users([next(iter(zd.export_objects("absent", "users")))])
    shown = "\n".join([repr(client), str(client), repr(wrong), repr(refused.value), str(refused.value), str(refused.value.body),
                       repr(resource), str(resource), repr(from_resource), caplog.text])
    assert EMAIL in repr(client) and "api_token=" in repr(resource) and "retrying" in caplog.text
    assert TOKEN not in shown and CREDENTIALS not in shown
