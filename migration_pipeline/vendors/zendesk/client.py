"""Zendesk REST client for the source role: the incremental ticket export, ticket comments and
users, as typed records. No Dagster import.

Facts (`shared/vendor-apis/zendesk-freshdesk-gmail-exports.md` §1.7): API-token basic auth
(`{email}/token` and the token), an account-wide per-minute limit (`X-Rate-Limit`; the plan table
is UNCONFIRMED), and 10 requests per minute for the incremental exports, both answered with 429
and `Retry-After`. The cursor-based incremental export starts at `start_time` (Unix seconds) and
goes on with `cursor` = the last `after_cursor` until `end_of_stream`; it leaves out what changed
in the last minute. Comments come per ticket with cursor pagination (`page[size]`,
`page[after]`); users with `show_many` (at most 100 ids a call).

The `after_url` / `links.next` Zendesk returns are never followed: the next request is built from
the cursor, so credentials only ever go to `base_url`. The incremental cursor is the caller's to
keep (per partition), never kept here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from migration_pipeline.lib.http import VendorAPIError, VendorHttpClient, path_segment
from migration_pipeline.vendors.zendesk.records import (
    RecordError,
    ZendeskComment,
    ZendeskTicket,
    ZendeskUser,
    describe,
    parse_record,
)

API_PREFIX = "/api/v2"
INCREMENTAL_TICKETS = "/incremental/tickets/cursor.json"
SHOW_MANY_MAX = 100
COMMENTS_PAGE_MAX = 100


@dataclass(frozen=True)
class IncrementalPage:
    """One page of the incremental ticket export. `after_cursor` is where the next read resumes
    (persist it once the page is stored); it is None only when a `start_time` read found nothing
    yet, and then the next read starts from the same `start_time` again."""

    tickets: list[ZendeskTicket]
    after_cursor: str | None
    end_of_stream: bool
    raw: bytes = field(default=b"", repr=False)  # the answer's body as Zendesk sent it, for the archive


class _ZendeskHttp(VendorHttpClient):
    """The shared HTTP behaviour with Zendesk's auth and error shape."""

    vendor = "zendesk"

    def __init__(self, base_url: str, email: str, api_token: str, requests_per_minute: float | None, **kwargs: Any):
        per_second = requests_per_minute / 60 if requests_per_minute and requests_per_minute > 0 else None
        super().__init__(
            base_url.strip().rstrip("/") + API_PREFIX,
            auth=httpx.BasicAuth(f"{email.strip()}/token", api_token),
            headers={"Accept": "application/json"},
            requests_per_second=per_second,
            **kwargs,
        )

    def error_detail(self, response: httpx.Response) -> str:
        """Zendesk's `{"error": ..., "description": ...}` (`error` sometimes an object with
        `title`/`message`), else the start of the body (a 429 is text/plain)."""
        try:
            body = response.json()
        except ValueError:
            return response.text[:300]
        if not isinstance(body, dict):
            return response.text[:300]
        error = body.get("error")
        if isinstance(error, dict):
            error = error.get("title") or error.get("message")
        parts = [str(part) for part in (error, body.get("description")) if part]
        return ": ".join(parts)[:500] or response.text[:300]


class ZendeskClient(_ZendeskHttp):
    """Typed access to the Zendesk endpoints the source role reads. `base_url` is the account
    root (https://acme.zendesk.com); /api/v2 is appended."""

    def __init__(
        self,
        base_url: str,
        email: str,
        api_token: str,
        *,
        requests_per_minute: float | None = 200.0,
        incremental_requests_per_minute: float | None = 9.0,
        **kwargs: Any,
    ):
        """`requests_per_minute` paces every call but the incremental export's, which have their
        own pace (`incremental_requests_per_minute`, under Zendesk's 10) on a lane of their own:
        a long comment backfill never delays the delta, nor the other way round. The two share
        the call counters (`stats`). Pace the account below its limit by the incremental pace."""
        super().__init__(base_url, email, api_token, requests_per_minute, **kwargs)
        self._incremental = _ZendeskHttp(base_url, email, api_token, incremental_requests_per_minute, **kwargs)
        self._incremental.stats = self.stats
        self._shown = f"ZendeskClient({self._client.base_url!s}, email={email.strip()!r})"

    def __repr__(self) -> str:
        return self._shown

    def close(self) -> None:
        self._incremental.close()
        super().close()

    # -- incremental ticket export -----------------------------------------------------------
    def incremental_ticket_pages(
        self,
        *,
        start_time: int | datetime | None = None,
        cursor: str | None = None,
        per_page: int | None = None,
        exclude_deleted: bool = False,
    ) -> Iterator[IncrementalPage]:
        """Every page from `start_time` (Unix seconds or an aware datetime; the first read) or from
        a `cursor` kept from an earlier page, up to and including the one with `end_of_stream`.
        Deleted tickets come with status `deleted` unless `exclude_deleted`."""
        if (start_time is None) == (cursor is None):
            raise ValueError("give exactly one of start_time (the first read) and cursor (every later one)")
        fixed: dict[str, Any] = {}
        if per_page is not None:
            fixed["per_page"] = per_page
        if exclude_deleted:
            fixed["exclude_deleted"] = "true"
        params = {"cursor": cursor} if cursor is not None else {"start_time": _epoch_seconds(start_time)}
        while True:
            response = self._incremental.request("GET", INCREMENTAL_TICKETS, params={**params, **fixed})
            body, tickets = self._page(response, "tickets", INCREMENTAL_TICKETS)
            page = IncrementalPage(
                tickets=[self._record(ZendeskTicket, "tickets", t, INCREMENTAL_TICKETS) for t in tickets],
                after_cursor=body.get("after_cursor") or None,
                end_of_stream=bool(body.get("end_of_stream")),
                raw=response.content,
            )
            yield page
            if page.end_of_stream:
                return
            if page.after_cursor is None:
                raise VendorAPIError(self.vendor, "GET", INCREMENTAL_TICKETS, 200, "a page before end_of_stream has no after_cursor")
            params = {"cursor": page.after_cursor}

    # -- comments and users ----------------------------------------------------------------
    def ticket_comments(self, ticket_id: int, *, page_size: int = COMMENTS_PAGE_MAX) -> list[ZendeskComment] | None:
        """Every comment of the ticket, oldest first, across all pages; None when Zendesk does not
        know the ticket (404: deleted, or never existed)."""
        path = f"/tickets/{path_segment(str(ticket_id))}/comments.json"
        params: dict[str, Any] = {"page[size]": min(page_size, COMMENTS_PAGE_MAX), "sort_order": "asc"}
        comments: list[ZendeskComment] = []
        while True:
            response = self.request("GET", path, params=params, ok=(404,))
            if response.status_code == 404:
                return None
            body, listed = self._page(response, "comments", path)
            comments.extend(self._record(ZendeskComment, "comments", c, path) for c in listed)
            meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
            if not meta.get("has_more"):
                return comments
            if not meta.get("after_cursor"):
                raise VendorAPIError(self.vendor, "GET", path, 200, "meta.has_more without meta.after_cursor")
            params = {**params, "page[after]": meta["after_cursor"]}

    def users(self, user_ids: Iterable[int], *, chunk_size: int = SHOW_MANY_MAX) -> list[ZendeskUser]:
        """The users Zendesk knows among `user_ids` (show_many, `chunk_size` ids a call, each id
        asked once); a permanently deleted user is simply absent."""
        wanted = list(dict.fromkeys(int(i) for i in user_ids))
        size = max(1, min(chunk_size, SHOW_MANY_MAX))
        path = "/users/show_many.json"
        found: list[ZendeskUser] = []
        for start in range(0, len(wanted), size):
            ids = ",".join(str(i) for i in wanted[start:start + size])
            _, listed = self._page(self.request("GET", path, params={"ids": ids}), "users", path)
            found.extend(self._record(ZendeskUser, "users", u, path) for u in listed)
        return found

    def _page(self, response: httpx.Response, key: str, path: str) -> tuple[dict[str, Any], list[Any]]:
        """The answer's JSON object and its `key` list, or VendorAPIError saying what is wrong."""
        try:
            body = response.json()
        except ValueError:
            body = None
        listed = body.get(key) if isinstance(body, dict) else None
        if not isinstance(listed, list):
            raise VendorAPIError(self.vendor, "GET", path, response.status_code, f"the answer is not a JSON object with a {key} list")
        return body, listed

    def _record(self, model: type, kind: str, obj: Any, path: str) -> Any:
        """An object of an answer as its record; one Zendesk sends malformed fails the call with
        the reason (the answer is Zendesk's own contract, unlike an export file's line)."""
        if not isinstance(obj, dict):
            raise VendorAPIError(self.vendor, "GET", path, 200, f"a {kind.removesuffix('s')} that is not an object")
        try:
            return parse_record(model, obj, describe(kind, obj))
        except RecordError as exc:
            raise VendorAPIError(self.vendor, "GET", path, 200, str(exc)) from None


def _epoch_seconds(value: int | datetime | None) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("start_time must be timezone-aware (UTC)")
        return int(value.timestamp())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("start_time must be Unix seconds (a non-negative int) or an aware datetime")
    return value
