"""The Zendesk API emulator: a Starlette app serving a Zendesk dataset's `api/` state under
`/api/v2` (facts: shared/vendor-apis/zendesk-freshdesk-gmail-exports.md §1.7).

Layers, outside in:

1. `EmulatorMiddleware` (common): request log and injected faults (429/5xx, latency, lost write
   responses); injected errors carry Zendesk's headers (`Retry-After`, `X-Rate-Limit`).
2. `ZendeskGate`: API-token basic auth (`{email}/token:{token}`, else 401 `{"error":"Couldn't
   authenticate you"}`), the account-wide per-minute limit (`X-Rate-Limit`,
   `X-Rate-Limit-Remaining` on every answer; 429 `text/plain` with `Retry-After`), and the
   incremental exports' own 10 per minute (429 with `Retry-After`).
3. The routes in `ZendeskApi` (each path also with `.json`, as Zendesk takes both):
   `GET /api/v2/incremental/tickets/cursor` (cursor-based incremental ticket export: `start_time`
   first, then `cursor` from `after_cursor`/`after_url` until `end_of_stream`; tickets changed in
   the last minute are held back; `per_page`, `exclude_deleted`), `GET /api/v2/tickets/{id}`,
   `GET /api/v2/tickets/{id}/comments` (cursor `page[size]`/`page[after]`/`page[before]`, or offset
   `page`/`per_page`; `sort_order`), `GET /api/v2/users`, `/users/me`, `/users/show_many?ids=`,
   `/users/{id}` and `/users/{id}/identities`; `include=users` sideloads the users a page of
   tickets or comments names; plus the emulator-only `/_emulator/...` admin routes and the clock.

The clock starts at the dataset's `exportedAt` (the moment the export files depict) unless pinned
elsewhere; `PUT /_emulator/clock {"now": ...}` moves it so the delta "happens", `{"now": null}`
follows the wall clock. Rate limits count per minute of the wall clock (`rate_limit_clock`).

The full export is not served: Zendesk hands it over as files (the dataset's `exports/` folders).
Attachment `content_url`s point at the account's host, as in the export, and are not served.
Where the facts say nothing the emulator is no stricter than Zendesk is believed to be; each such
choice is marked "assumed".
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sim.emulators.common import (
    ASGIApp,
    EmulatorMiddleware,
    EmulatorState,
    FaultConfig,
    FaultDecider,
    FixedWindowRateLimiter,
    Message,
    Receive,
    RequestLog,
    Scope,
    Send,
    admin_routes,
    basic_credentials,
)
from sim.emulators.clock import Clock, clock_routes
from sim.emulators.timeutil import NS_PER_SECOND

from .store import ZendeskStore, epoch_seconds

API_PREFIX = "/api"
V2 = "/api/v2"
INCREMENTAL_PREFIX = f"{V2}/incremental/"
ACCOUNT_LIMIT_BODY = "Number of allowed API requests per minute exceeded"  # as Zendesk answers (text/plain)
INCREMENTAL_LIMIT_BODY = "Number of allowed incremental export API requests per minute exceeded"  # assumed wording
HIDDEN_RECENT_SECONDS = 60  # incremental exports leave out what changed in the last minute
INCREMENTAL_PAGE = 1000  # assumed default and maximum per_page
LIST_PAGE = 100  # cursor page[size] and offset per_page: default and maximum
OFFSET_RECORDS_MAX = 10_000  # offset pagination past the first 10,000 records is refused (400)
SHOW_MANY_MAX = 100
API_USER_ID = 370_000_000_001


# -- responses ------------------------------------------------------------------------------


def zendesk_error(status: int, error: str, description: str | None = None) -> JSONResponse:
    """Zendesk's error envelope: `error`, and `description` where it gives one."""
    body: dict[str, Any] = {"error": error}
    if description is not None:
        body["description"] = description
    return JSONResponse(body, status_code=status)


def injected_error_body(status: int, code: str, detail: str) -> dict[str, Any]:
    return {"error": "TooManyRequests" if status == 429 else "InternalError", "description": detail}


def record_not_found() -> JSONResponse:
    return zendesk_error(404, "RecordNotFound", "Not found")


def invalid(description: str) -> JSONResponse:
    return zendesk_error(400, "InvalidValue", description)  # assumed error name


def _token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _untoken(token: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _int_param(request: Request, name: str, default: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    return int(raw) if raw.strip().lstrip("-").isdigit() else None


def paginate(request: Request, items: list[dict[str, Any]], key: str) -> dict[str, Any] | Response:
    """One page of `items` the way Zendesk lists pages: cursor pagination when `page[size]`,
    `page[after]` or `page[before]` is given (`meta`, `links`), else offset pagination (`page`,
    `per_page`; `next_page`, `previous_page`, `count`)."""
    params = request.query_params
    if any(name in params for name in ("page[size]", "page[after]", "page[before]")):
        return _cursor_page(request, items, key)
    page, per_page = _int_param(request, "page", 1), _int_param(request, "per_page", LIST_PAGE)
    if page is None or per_page is None or page < 1 or per_page < 1:
        return invalid("page and per_page must be positive integers")
    per_page = min(per_page, LIST_PAGE)
    start = (page - 1) * per_page
    if start >= OFFSET_RECORDS_MAX:
        return zendesk_error(400, "InvalidPaginationParameter",  # assumed error name
                             f"offset pagination is limited to the first {OFFSET_RECORDS_MAX} records; use cursor pagination")
    more = start + per_page < len(items)
    return {
        key: items[start:start + per_page],
        "next_page": str(request.url.include_query_params(page=page + 1, per_page=per_page)) if more else None,
        "previous_page": str(request.url.include_query_params(page=page - 1, per_page=per_page)) if page > 1 else None,
        "count": len(items),
    }


def _cursor_page(request: Request, items: list[dict[str, Any]], key: str) -> dict[str, Any] | Response:
    params = request.query_params
    size = _int_param(request, "page[size]", LIST_PAGE)
    if size is None or size < 1:
        return invalid("page[size] must be a positive integer")
    size = min(size, LIST_PAGE)  # assumed: clamped rather than refused
    ids = [item["id"] for item in items]
    after, before = params.get("page[after]"), params.get("page[before]")
    position = _cursor_position(after or before, ids) if (after or before) else -1
    if position is None:
        return zendesk_error(400, "InvalidPaginationParameter", "invalid cursor")  # assumed error name
    if before:
        start, stop = max(0, position - size), position
    else:
        start = position + 1
        stop = start + size
    page = items[start:stop]
    more_after, more_before = stop < len(items), start > 0
    after_cursor = _token(str(page[-1]["id"])) if page else None
    before_cursor = _token(str(page[0]["id"])) if page else None

    def link(name: str, cursor: str | None, exists: bool) -> str | None:
        if cursor is None or not exists:
            return None
        url = request.url.remove_query_params(["page[after]", "page[before]"])
        return str(url.include_query_params(**{name: cursor, "page[size]": size}))

    return {
        key: page,
        "meta": {"has_more": more_before if before else more_after, "after_cursor": after_cursor,
                 "before_cursor": before_cursor},
        "links": {"next": link("page[after]", after_cursor, more_after),
                  "prev": link("page[before]", before_cursor, more_before)},
    }


def _cursor_position(token: str, ids: list[int]) -> int | None:
    decoded = _untoken(token)
    if decoded is None or not decoded.isdigit() or int(decoded) not in ids:
        return None
    return ids.index(int(decoded))


# -- auth and rate limits -------------------------------------------------------------------


class ZendeskGate:
    """API-token auth and the per-minute limits for every `/api` path (pure ASGI, streams intact).
    A refused request (401, 429) spends nothing; one the incremental limit refuses has already
    spent a request of the account's minute (assumed: Zendesk counts it)."""

    def __init__(self, app: ASGIApp, *, email: str, api_token: str, account: FixedWindowRateLimiter,
                 incremental: FixedWindowRateLimiter, wall: Callable[[], float]):
        self.app = app
        self._user = f"{email.strip().lower()}/token".encode()
        self._token = api_token.encode()
        self.account = account
        self.incremental = incremental
        self.wall = wall

    def _authorized(self, headers: Headers) -> bool:
        creds = basic_credentials(headers)
        if creds is None:
            return False
        # Zendesk compares the email case-insensitively; the token exactly.
        user_ok = hmac.compare_digest(creds[0].strip().lower().encode(), self._user)
        return user_ok and hmac.compare_digest(creds[1].encode(), self._token)

    def retry_after(self) -> int:
        """Seconds until the next minute window opens."""
        return max(1, math.ceil(60 - self.wall() % 60))

    def _limit_headers(self, remaining: int) -> list[tuple[bytes, bytes]]:
        if not self.account.limit:
            return []
        return [(b"x-rate-limit", str(self.account.limit).encode()), (b"x-rate-limit-remaining", str(remaining).encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        if not self._authorized(Headers(scope=scope)):
            body = json.dumps({"error": "Couldn't authenticate you"}).encode()
            await self._answer(send, 401, body, b"application/json", [])
            return
        allowed, remaining = self.account.acquire()
        if not allowed:
            await self._answer(send, 429, ACCOUNT_LIMIT_BODY.encode(), b"text/plain",
                               [(b"retry-after", str(self.retry_after()).encode()), *self._limit_headers(0)])
            return
        if path.startswith(INCREMENTAL_PREFIX) and not self.incremental.acquire()[0]:
            await self._answer(send, 429, INCREMENTAL_LIMIT_BODY.encode(), b"text/plain",
                               [(b"retry-after", str(self.retry_after()).encode()), *self._limit_headers(remaining)])
            return
        extra = self._limit_headers(remaining)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)

    @staticmethod
    async def _answer(send: Send, status: int, body: bytes, content_type: bytes,
                      headers: list[tuple[bytes, bytes]]) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": body})


def minute_limiter(limit: int | None, wall: Callable[[], float]) -> FixedWindowRateLimiter:
    """The shared fixed-window limiter counting per minute of `wall` instead of per second."""
    return FixedWindowRateLimiter(limit, clock=lambda: wall() / 60)


# -- the API --------------------------------------------------------------------------------


def _routes(path: str, endpoint: Callable[..., Any]) -> list[Route]:
    """The path with and without `.json`, as Zendesk serves both."""
    return [Route(f"{path}.json", endpoint, methods=["GET"]), Route(path, endpoint, methods=["GET"])]


class ZendeskApi:
    """Route handlers over a `ZendeskStore` at the emulator clock."""

    def __init__(self, store: ZendeskStore, clock: Clock, email: str):
        self.store = store
        self.clock = clock
        self.email = email

    def now(self) -> int:
        return self.clock.now_ns() // NS_PER_SECOND

    def routes(self) -> list[Route]:
        return [
            *_routes(f"{V2}/incremental/tickets/cursor", self.incremental_tickets),
            *_routes(f"{V2}/tickets/{{ticket_id:int}}/comments", self.ticket_comments),
            *_routes(f"{V2}/tickets/{{ticket_id:int}}", self.show_ticket),
            *_routes(f"{V2}/users/me", self.me),
            *_routes(f"{V2}/users/show_many", self.show_many_users),
            *_routes(f"{V2}/users/{{user_id:int}}/identities", self.user_identities),
            *_routes(f"{V2}/users/{{user_id:int}}", self.show_user),
            *_routes(f"{V2}/users", self.list_users),
        ]

    # -- incremental ticket export -------------------------------------------------------

    async def incremental_tickets(self, request: Request) -> Response:
        params = request.query_params
        cursor = params.get("cursor")
        if cursor is not None:
            decoded = _untoken(cursor) or ""
            generated, _, ticket_id = decoded.partition(".")
            if not (generated.isdigit() and ticket_id.isdigit()):
                return zendesk_error(400, "InvalidPaginationParameter", "invalid cursor")  # assumed error name
            position = (int(generated), int(ticket_id))
        else:
            start_time = params.get("start_time")
            if start_time is None:
                return invalid("start_time is required for the first request (later ones pass cursor)")
            if not start_time.strip().isdigit():
                return invalid(f"start_time must be a Unix epoch time in seconds, got {start_time!r}")
            # Every ticket generated at or after start_time; a future start_time finds nothing (assumed).
            position = (int(start_time), -1)
        per_page = _int_param(request, "per_page", INCREMENTAL_PAGE)
        if per_page is None or per_page < 1:
            return invalid("per_page must be a positive integer")
        per_page = min(per_page, INCREMENTAL_PAGE)
        # Deleted tickets are in the export unless excluded (facts: unconfirmed; assumed as documented).
        exclude_deleted = params.get("exclude_deleted", "").lower() in ("true", "1")
        cutoff = self.now() - HIDDEN_RECENT_SECONDS
        ready = sorted(
            ((t["generated_timestamp"], t["id"]), t) for t in self.store.tickets(self.now())
            if t["generated_timestamp"] <= cutoff and (t["generated_timestamp"], t["id"]) > position
            and not (exclude_deleted and t["status"] == "deleted")
        )
        page = ready[:per_page]
        if page:
            after_cursor: str | None = _token("%d.%d" % page[-1][0])
        else:
            # Nothing new: a cursor call gets its cursor back (assumed); a start_time call gets no
            # cursor, as users report.
            after_cursor = cursor
        after_url = None
        if after_cursor is not None:
            kept = {k: v for k, v in params.items() if k in ("per_page", "exclude_deleted")}
            after_url = str(request.url.replace_query_params(cursor=after_cursor, **kept))
        tickets = [t for _, t in page]
        body: dict[str, Any] = {
            "tickets": tickets,
            "after_url": after_url,
            "after_cursor": after_cursor,
            "before_url": None,  # assumed: paging backwards is not offered
            "before_cursor": None,
            "end_of_stream": len(ready) <= per_page,
        }
        return JSONResponse(self._sideload(request, body, tickets, ("requester_id", "submitter_id", "assignee_id")))

    # -- tickets and comments ------------------------------------------------------------

    def _live_ticket(self, ticket_id: int) -> dict[str, Any] | None:
        ticket = self.store.ticket(ticket_id, self.now())
        return ticket if ticket is not None and ticket["status"] != "deleted" else None

    async def show_ticket(self, request: Request) -> Response:
        ticket = self._live_ticket(request.path_params["ticket_id"])
        if ticket is None:
            return record_not_found()
        return JSONResponse({"ticket": {k: v for k, v in ticket.items() if k != "generated_timestamp"}})

    async def ticket_comments(self, request: Request) -> Response:
        ticket_id = request.path_params["ticket_id"]
        if self._live_ticket(ticket_id) is None:
            return record_not_found()
        order = request.query_params.get("sort_order", "asc")
        if order not in ("asc", "desc"):
            return invalid("sort_order must be asc or desc")
        comments = self.store.comments(ticket_id, self.now())
        if order == "desc":
            comments = comments[::-1]
        page = paginate(request, comments, "comments")
        if isinstance(page, Response):
            return page
        return JSONResponse(self._sideload(request, page, page["comments"], ("author_id",)))

    def _sideload(self, request: Request, body: dict[str, Any], records: list[dict[str, Any]],
                  keys: tuple[str, ...]) -> dict[str, Any]:
        """`include=users`: the users the records name (those the API knows), beside the records."""
        if "users" not in request.query_params.get("include", "").split(","):
            return body
        now = self.now()
        ids = sorted({r[k] for r in records for k in keys if r.get(k) is not None})
        body["users"] = [u for u in (self.store.user(i, now) for i in ids) if u is not None]
        return body

    # -- users -----------------------------------------------------------------------------

    async def me(self, _: Request) -> JSONResponse:
        """The user the token belongs to: the dataset's user of that email, or an admin."""
        user = self.store.user_by_email(self.email) or {
            "url": f"{self.store.account['url']}/api/v2/users/{API_USER_ID}.json", "id": API_USER_ID,
            "name": "API user", "email": self.email, "role": "admin", "active": True, "verified": True,
        }
        return JSONResponse({"user": user})

    async def show_user(self, request: Request) -> Response:
        user = self.store.user(request.path_params["user_id"], self.now())
        return record_not_found() if user is None else JSONResponse({"user": user})

    async def user_identities(self, request: Request) -> Response:
        """The user's email and phone as identities (assumed: derived from the user record, the
        email primary)."""
        user = self.store.user(request.path_params["user_id"], self.now())
        if user is None:
            return record_not_found()
        identities = [
            {"url": f"{self.store.account['url']}/api/v2/users/{user['id']}/identities/{user['id'] * 10 + n}.json",
             "id": user["id"] * 10 + n, "user_id": user["id"], "type": kind, "value": user[field],
             "verified": bool(user.get("verified")), "primary": n == 1,
             "created_at": user["created_at"], "updated_at": user["updated_at"]}
            for n, kind, field in ((1, "email", "email"), (2, "phone_number", "phone")) if user.get(field)
        ]
        page = paginate(request, identities, "identities")
        return page if isinstance(page, Response) else JSONResponse(page)

    async def show_many_users(self, request: Request) -> Response:
        raw = [part.strip() for part in request.query_params.get("ids", "").split(",") if part.strip()]
        if not raw or not all(part.isdigit() for part in raw):
            return invalid("ids must be a comma-separated list of user ids")
        if len(raw) > SHOW_MANY_MAX:
            return invalid(f"at most {SHOW_MANY_MAX} ids per request")
        now = self.now()
        found = (self.store.user(int(part), now) for part in dict.fromkeys(raw))
        return JSONResponse({"users": [u for u in found if u is not None]})

    async def list_users(self, request: Request) -> Response:
        role = request.query_params.get("role")
        users = [u for u in self.store.users(self.now()) if role is None or u.get("role") == role]
        page = paginate(request, users, "users")
        return page if isinstance(page, Response) else JSONResponse(page)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Router 404/405 in Zendesk's shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return zendesk_error(404, "InvalidEndpoint", "Not found")
    return zendesk_error(exc.status_code, "InvalidEndpoint", str(exc.detail))


async def _server_error(_: Request, exc: Exception) -> Response:
    return zendesk_error(500, "InternalError", f"internal error: {type(exc).__name__}")


def create_app(
    data_dir: Path,
    *,
    email: str,
    api_token: str,
    faults: FaultConfig | None = None,
    now: datetime | None = None,
    rate_limit_per_minute: int | None = 700,
    incremental_limit_per_minute: int | None = 10,
    request_log_path: Path | None = None,
    rate_limit_clock: Callable[[], float] = time.time,
) -> ASGIApp:
    """The Zendesk emulator over the dataset folder `data_dir`, ready for uvicorn. The clock
    starts at `now` or the dataset's `exportedAt`; limits of None or 0 are off."""
    store = ZendeskStore(Path(data_dir))
    start = now or datetime.fromtimestamp(epoch_seconds(store.account["exportedAt"]), tz=timezone.utc)
    clock = Clock(start)
    state = EmulatorState(
        name="zendesk",
        faults=FaultDecider(faults or FaultConfig()),
        log=RequestLog(path=request_log_path),
        api_prefix=API_PREFIX,
        error_body=injected_error_body,
        extra_admin={"clock": clock, "store": store},
    )
    account = minute_limiter(rate_limit_per_minute, rate_limit_clock)
    incremental = minute_limiter(incremental_limit_per_minute, rate_limit_clock)

    def injected_headers(status: int) -> dict[str, str]:
        """An injected 429 looks like Zendesk's own (Retry-After, the account's limit headers);
        it stands for a short burst, so it asks for one second."""
        if status != 429:
            return {}
        headers = {"Retry-After": "1"}
        if account.limit:
            headers.update({"X-Rate-Limit": str(account.limit), "X-Rate-Limit-Remaining": "0"})
        return headers

    state.error_headers = injected_headers
    api = ZendeskApi(store, clock, email)
    app = Starlette(
        routes=[*admin_routes(state), *clock_routes(clock), *api.routes()],
        middleware=[Middleware(ZendeskGate, email=email, api_token=api_token, account=account,
                               incremental=incremental, wall=rate_limit_clock)],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    return EmulatorMiddleware(app, state)
