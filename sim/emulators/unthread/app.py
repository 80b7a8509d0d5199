"""The Unthread REST API emulator: HTTP routes under /api, auth, rate limit, multipart parsing.

Layers, outermost first:
1. `EmulatorMiddleware` (common.py): request log and injected faults (429/5xx, latency, lost
   responses on writes, truncated file downloads);
2. `_Gate`: `X-Api-Key` check (401) and the fixed-window rate limit (429), for /api only;
3. the Starlette router: vendor routes plus the emulator's admin routes under /_emulator.

Choices on unconfirmed behaviour (facts file §1, §9):
- assumed: error bodies are `{"error": "<detail>"}`; a missing or wrong key is 401;
- assumed: creates answer 201, deletes answer 200 with the deleted object;
- assumed: a 429 carries `Retry-After` only when the emulator is configured with one (no source
  shows rate-limit headers);
- assumed: Accounts live at /accounts, tags at /tags, and conversations are deleted with
  `DELETE /conversations/{id}` (paths unconfirmed);
- create and update endpoints honour the documented `?select=a,b.c` query parameter (GET and
  DELETE accept it too: a harmless superset).

Strict mode (`strict=True`) drops the unconfirmed routes, fields and read-back details listed in
strict.py, each with the facts-file section it follows; permissive mode is the default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ..common import (
    ASGIApp,
    EmulatorMiddleware,
    EmulatorState,
    FaultConfig,
    FaultDecider,
    FixedWindowRateLimiter,
    Receive,
    RequestLog,
    Scope,
    Send,
    admin_routes,
)
from .errors import ApiError, error_body
from .listing import hydrate, list_response, project, validate_select_path
from .schema import RESOURCES, Resource
from .service import Limits, Unthread, Upload, now_iso
from .store import Store
from .strict import STRICT_USERS, UNCONFIRMED_ROUTES, VIEWS, strict_from, users_list_body

API_PREFIX = "/api"
DOWNLOAD_PATTERN = re.compile(r"^/api/conversations/[^/]+/files/[^/]+/full$")


class _Gate:
    """API key and rate limit in front of the router; admin routes pass straight through."""

    def __init__(self, app: ASGIApp, api_key: str, limiter: FixedWindowRateLimiter, retry_after: int | None):
        self.app = app
        self.api_key = api_key
        self.limiter = limiter
        self.retry_after = retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get("x-api-key")
        if not key:
            await _send_error(scope, receive, send, ApiError(401, "missing X-Api-Key header"))
            return
        if key != self.api_key:
            await _send_error(scope, receive, send, ApiError(401, "invalid API key (X-Api-Key)"))
            return
        allowed, _ = self.limiter.acquire()
        if not allowed:
            extra = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
            detail = f"rate limit exceeded: at most {self.limiter.limit} requests per second"
            await _send_error(scope, receive, send, ApiError(429, detail, extra))
            return
        await self.app(scope, receive, send)


async def _send_error(scope: Scope, receive: Receive, send: Send, err: ApiError) -> None:
    await _error_response(err)(scope, receive, send)


def _error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(error_body(err.status, "error", err.detail), status_code=err.status, headers=err.headers)


# -- request parsing ------------------------------------------------------------------------------


def _decode_object(raw: bytes | str, where: str) -> dict[str, Any]:
    if isinstance(raw, bytes):
        if not raw.strip():
            return {}
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, f"malformed JSON {where}: not UTF-8") from None
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON {where}: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"{where} must be a JSON object, got {type(value).__name__}")
    return value


async def json_body(request: Request) -> dict[str, Any]:
    return _decode_object(await request.body(), "request body")


class _Payloads:
    """Reads JSON or multipart (`json` part + `attachments` parts) bodies for the two create
    endpoints that accept files (facts file §6)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        # The `json` part holds the whole payload, markdown included (up to 4 bytes a character).
        self.max_part_size = max(1024 * 1024, limits.max_markdown_chars * 4 + 64 * 1024)

    async def read(self, request: Request) -> tuple[dict[str, Any], list[Upload]]:
        if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            return await json_body(request), []
        try:
            form = await request.form(max_files=10_000, max_fields=1000, max_part_size=self.max_part_size)
        except MultiPartException as exc:
            raise ApiError(400, f"malformed multipart body: {exc.message}") from None
        try:
            return await self._from_form(form)
        finally:
            await form.close()

    async def _from_form(self, form: Any) -> tuple[dict[str, Any], list[Upload]]:
        part = form.get("json")
        if part is None:
            raise ApiError(400, "json: a multipart body needs a 'json' part holding the JSON payload")
        raw = await part.read() if isinstance(part, UploadFile) else part
        payload = _decode_object(raw, "in the 'json' part")
        files = [f for f in form.getlist("attachments") if isinstance(f, UploadFile)]
        if len(files) > self.limits.max_files_per_message:
            raise ApiError(
                400, f"attachments: {len(files)} files sent, at most {self.limits.max_files_per_message} per message"
            )
        uploads = []
        for i, f in enumerate(files):
            if f.size is not None and f.size > self.limits.max_file_bytes:
                raise ApiError(
                    413, f"attachments[{i}] ({f.filename!r}): {f.size} bytes exceeds the limit of "
                    f"{self.limits.max_file_bytes} bytes"
                )
            uploads.append(Upload(f.filename or f"attachment-{i + 1}", f.content_type or "", await f.read()))
        return payload, uploads


def _select_param(request: Request, resource: Resource) -> list[str] | None:
    """The documented `?select=a,b.c` query parameter of create and update endpoints."""
    raw = request.query_params.get("select")
    if not raw:
        return None
    fields = [f.strip() for f in raw.split(",") if f.strip()]
    for f in fields:
        validate_select_path(resource, f)
    return fields


# -- routes ---------------------------------------------------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]


def _handles_errors(fn: Handler) -> Handler:
    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except ApiError as err:
            return _error_response(err)

    wrapper.__name__ = fn.__name__
    return wrapper


class Api:
    """The vendor routes, bound to one service instance (strict: only the confirmed surface)."""

    def __init__(self, service: Unthread, limits: Limits):
        self.svc = service
        self.store = service.store
        self.payloads = _Payloads(limits)
        self.strict = service.strict

    def _view(self, resource: str) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
        """How strict mode shows a stored object (None: as stored)."""
        return VIEWS.get(resource) if self.strict else None

    def _out(self, request: Request, resource: str, doc: dict[str, Any], status: int = 200) -> JSONResponse:
        res = RESOURCES[resource]
        select = _select_param(request, res)
        view = self._view(resource)
        if view is not None:
            doc = view(doc)
        hydrate(self.store, res, [doc], select)
        return JSONResponse(project(doc, select), status_code=status)

    def _get(self, resource: str, label: str) -> Handler:
        async def get(request: Request) -> Response:
            doc = self.store.get(resource, request.path_params["id"])
            if doc is None:
                raise ApiError(404, f"{label} {request.path_params['id']!r} not found")
            return self._out(request, resource, doc)

        return get

    def _delete(self, resource: str, label: str) -> Handler:
        async def delete(request: Request) -> Response:
            object_id = request.path_params["id"]
            doc = self.store.get(resource, object_id)
            if doc is None:
                raise ApiError(404, f"{label} {object_id!r} not found")
            if resource == "conversations":
                self.store.delete_conversation(object_id)
            else:
                # assumed: deleting a customer leaves its conversations' customerId dangling
                # (their `customer` then reads as null); the real cascade rule is unconfirmed.
                self.store.delete(resource, object_id)
            return self._out(request, resource, doc)

        return delete

    def _list(self, resource: str) -> Handler:
        async def list_(request: Request) -> Response:
            body, res = await json_body(request), RESOURCES[resource]
            if self.strict and resource == "users":
                body, res = users_list_body(body), STRICT_USERS
            return JSONResponse(list_response(self.store, res, body, finish=self._view(resource)))

        return list_

    def _create(self, resource: str, create: Callable[[dict[str, Any]], dict[str, Any]]) -> Handler:
        async def create_(request: Request) -> Response:
            return self._out(request, resource, create(await json_body(request)), status=201)

        return create_

    def _update(self, resource: str, update: Callable[[str, dict[str, Any]], dict[str, Any]]) -> Handler:
        async def update_(request: Request) -> Response:
            doc = update(request.path_params["id"], await json_body(request))
            return self._out(request, resource, doc)

        return update_

    async def create_conversation(self, request: Request) -> Response:
        payload, uploads = await self.payloads.read(request)
        return self._out(request, "conversations", self.svc.create_conversation(payload, uploads), status=201)

    async def create_message(self, request: Request) -> Response:
        conversation_id = request.path_params["id"]
        if not self.store.exists("conversations", conversation_id):
            raise ApiError(404, f"conversation {conversation_id!r} not found")
        payload, uploads = await self.payloads.read(request)
        message = self.svc.create_message(conversation_id, payload, uploads)
        return self._out(request, "messages", message, status=201)

    async def list_messages(self, request: Request) -> Response:
        conversation_id = request.path_params["id"]
        if not self.store.exists("conversations", conversation_id):
            raise ApiError(404, f"conversation {conversation_id!r} not found")
        body = await json_body(request)
        scope = ("conversationId", conversation_id)
        view = self._view("messages")
        return JSONResponse(list_response(self.store, RESOURCES["messages"], body, scope=scope, finish=view))

    async def download(self, request: Request) -> Response:
        conversation_id, file_id = request.path_params["conversation_id"], request.path_params["file_id"]
        record = self.store.get_file(conversation_id, file_id)
        path = self.store.file_path(file_id)
        if record is None or not path.exists():
            raise ApiError(404, f"file {file_id!r} not found in conversation {conversation_id!r}")
        return FileResponse(path, media_type=record["mimetype"], filename=record["name"], content_disposition_type="inline")

    def routes(self) -> list[Route]:
        svc = self.svc
        p = API_PREFIX
        table: list[tuple[str, Handler, list[str]]] = [
            ("/customers", self._create("customers", svc.create_customer), ["POST"]),
            ("/customers/list", self._list("customers"), ["POST"]),
            ("/customers/{id}", self._get("customers", "customer"), ["GET"]),
            ("/customers/{id}", self._update("customers", svc.update_customer), ["PATCH"]),
            ("/customers/{id}", self._delete("customers", "customer"), ["DELETE"]),
            ("/accounts", self._create("accounts", svc.create_account), ["POST"]),
            ("/accounts/list", self._list("accounts"), ["POST"]),
            ("/accounts/{id}", self._get("accounts", "account"), ["GET"]),
            ("/accounts/{id}", self._update("accounts", svc.update_account), ["PATCH"]),
            ("/accounts/{id}", self._delete("accounts", "account"), ["DELETE"]),
            ("/users/list", self._list("users"), ["POST"]),
            ("/users/{id}", self._get("users", "user"), ["GET"]),
            ("/tags", self._create("tags", svc.create_tag), ["POST"]),
            ("/tags/list", self._list("tags"), ["POST"]),
            ("/tags/{id}", self._get("tags", "tag"), ["GET"]),
            ("/conversations", self.create_conversation, ["POST"]),
            ("/conversations/list", self._list("conversations"), ["POST"]),
            # GET routes answer HEAD too (Starlette), with the same status and no body.
            ("/conversations/{id}", self._get("conversations", "conversation"), ["GET"]),
            ("/conversations/{id}", self._update("conversations", svc.update_conversation), ["PATCH"]),
            ("/conversations/{id}", self._delete("conversations", "conversation"), ["DELETE"]),
            ("/conversations/{id}/messages", self.create_message, ["POST"]),
            ("/conversations/{id}/messages/list", self.list_messages, ["POST"]),
            ("/conversations/{conversation_id}/files/{file_id}/full", self.download, ["GET"]),
        ]
        if self.strict:
            table = [
                (path, handler, kept)
                for path, handler, methods in table
                if (kept := [m for m in methods if (path, m) not in UNCONFIRMED_ROUTES])
            ]
        return [Route(p + path, _handles_errors(handler), methods=methods) for path, handler, methods in table]


# -- workspace seed -------------------------------------------------------------------------------


def _seed_items(workspace: dict[str, Any]) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Check the dataset's unthread/workspace.json shape; a bad seed is a startup error."""
    required = {
        "users": ("id", "name", "email"),
        "triageChannels": ("id", "name"),
        "emailInboxes": ("id", "email"),
        "slackChannels": ("id", "name"),
    }
    now = now_iso()
    items: dict[str, list[dict[str, Any]]] = {}
    for kind, keys in required.items():
        entries = workspace.get(kind) or []
        if not isinstance(entries, list):
            raise ValueError(f"workspace.{kind} must be a list")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in keys):
                raise ValueError(f"workspace.{kind}[{i}] needs string fields {', '.join(keys)}: {entry!r}")
        items[kind] = entries
    users = [
        {
            "id": u["id"],
            "name": u["name"],
            "email": u["email"],
            "slackId": u.get("slackId"),
            "photo": u.get("photo"),
            "createdAt": now,
            "updatedAt": now,
        }
        for u in items.pop("users")
    ]
    return items, users


def _seed(store: Store, workspace: dict[str, Any] | None) -> None:
    """Seed on first start; on later starts a given workspace refreshes the reference data
    (users, channels, inboxes are read-only through the API, so nothing a client made is lost)."""
    if workspace is None and store.meta("workspace_seeded"):
        return
    items, users = _seed_items(workspace or {})
    store.upsert_workspace(items, users)


# -- the app --------------------------------------------------------------------------------------


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = {404: f"no route {request.method} {request.url.path}", 405: f"method {request.method} not allowed on {request.url.path}"}
    err = ApiError(exc.status_code, detail.get(exc.status_code, str(exc.detail)), dict(exc.headers or {}))
    return _error_response(err)


def create_app(
    *,
    api_key: str,
    state_path: Path | None = None,
    workspace: dict | None = None,
    faults: FaultConfig | None = None,
    rate_limit_per_second: int | None = 50,
    retry_after_seconds: int | None = None,
    max_files_per_message: int = 10,
    max_file_bytes: int = 20 * 1024 * 1024,
    max_markdown_chars: int = 40_000,
    request_log_path: Path | None = None,
    strict: bool | None = None,
) -> ASGIApp:
    """An Unthread-compatible API under /api, persisting to `state_path` (SQLite; a temporary
    location when None). `workspace` ({users, triageChannels, emailInboxes, slackChannels}) is what
    already exists in the target workspace. `strict` offers only the confirmed surface (strict.py;
    None reads UNTHREAD_EMULATOR_STRICT, default permissive).
    Admin routes: /_emulator/{health,requests,faults,hold,stats,mode}."""
    strict = strict_from(strict)
    store = Store(state_path)
    _seed(store, workspace)
    limits = Limits(max_files_per_message, max_file_bytes, max_markdown_chars)
    api = Api(Unthread(store, limits, strict=strict), limits)
    state = EmulatorState(
        name="unthread",
        faults=FaultDecider(faults or FaultConfig()),
        log=RequestLog(path=request_log_path),
        api_prefix=API_PREFIX,
        download_pattern=DOWNLOAD_PATTERN,
        error_body=error_body,
    )

    async def stats(_: Request) -> JSONResponse:
        """Object counts per resource: lets tests prove a retried write made no duplicate."""
        return JSONResponse(store.stats())

    mode = {"mode": "strict" if strict else "permissive"}

    async def show_mode(_: Request) -> JSONResponse:
        """Which surface this emulator offers, so a user knows what they rehearse against."""
        return JSONResponse(mode)

    async def strict_health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "emulator": state.name, **mode})

    # Strict mode's health (listed first, so it wins) names the mode; permissive health is unchanged.
    health = [Route("/_emulator/health", strict_health, methods=["GET"])] if strict else []
    routes = [
        *api.routes(),
        *health,
        *admin_routes(state),
        Route("/_emulator/stats", stats, methods=["GET"]),
        Route("/_emulator/mode", show_mode, methods=["GET"]),
    ]
    router = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    gated = _Gate(router, api_key, FixedWindowRateLimiter(rate_limit_per_second), retry_after_seconds)
    return EmulatorMiddleware(gated, state)
