"""The Gladly REST API emulator: a Starlette app serving a dataset folder under `/api/v1`.

Layers, outside in:

1. `EmulatorMiddleware` (common): request log and injected faults (429/5xx, latency, lost write
   responses, truncated downloads on paths matching `DOWNLOAD_PATTERN`).
2. `GladlyGate`: HTTP Basic auth and the org-wide per-second rate limit on every `/api` path,
   with Gladly's `Ratelimit-Limit-Second` / `Ratelimit-Remaining-Second` headers.
3. The routes in `GladlyApi`, plus the emulator-only `/_emulator/...` admin routes and the
   `/_files/attachments/...` "pre-signed" URLs that attachment redirects point at. How that file
   host misbehaves (a signature on its URLs, per-attachment 404/503s, more redirects) is set with
   `PUT /_emulator/file-host` (see `FileHost`).

The API's writes live in memory over the read-only dataset, and every read answers from both:
conversation status, assignee and topics (`conversations.ConversationWrites`; which conversations
refuse to close without a topic is set with `PUT /_emulator/close-rules`), and, for Gladly as a
migration target, customer profiles (`profiles.CustomerProfiles`), topics (`topics.Topics`) and
CUSTOMER_ACTIVITY items (`activity.ActivityItems`). `GET /_emulator/stats` counts what the API
created, so a test can prove a retried write made no duplicate.

Where Gladly's behaviour is undocumented (UNCONFIRMED in shared/vendor-apis/gladly-api.md) the
read side picks the strictest plausible reading: no `Retry-After` on 429, no `Location` on the 301
for a merged customer, no Range support on export files or recordings, `startAt` earlier than
now - 14 days refused outright, export jobs listed newest first (no documented order). The write
side refuses nothing Gladly might accept and answers nothing a client could lean on beyond the
facts: each such choice is marked "assumed" where it is made (e.g. an empty 201 body).
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
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
from sim.synth.dataset import RETENTION_DAYS

from .activity import ActivityItems
from .conversations import CloseRules, ConversationWrites
from .profiles import CustomerProfiles
from .store import ExportJob, GladlyStore
from sim.emulators.timeutil import NS_PER_DAY, format_ns, parse_rfc3339_ns
from .topics import Topics
from .validation import Refusal

API_PREFIX = "/api"
V1 = "/api/v1"
FILES_PREFIX = "/_files"
JOB_STATUSES = ("PENDING", "IN_PROGRESS", "COMPLETED", "FAILED")
DELETABLE_STATUSES = frozenset({"COMPLETED", "FAILED"})
MAX_CUSTOMER_MATCHES = 50
MAX_CONVERSATIONS = 100
MAX_ITEMS = 1000
LOOKUP_PARAMS = ("email", "phoneNumber", "externalCustomerId")
CHUNK_SIZE = 64 * 1024
NDJSON = "application/x-ndjson"

# Downloads the middleware may cut short: export files, recordings and attachment file URLs.
DOWNLOAD_PATTERN = re.compile(
    r"^/api/v1/export/jobs/[^/]+/files/[^/]+$"
    r"|^/api/v1/conversation-items/[^/]+/media/recording$"
    r"|^/_files/attachments/[^/]+$"
)


# -- responses ------------------------------------------------------------------------------


def error_entry(code: str, detail: str, attr: str | None = None, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if attr is not None:
        entry["attr"] = attr
    entry["code"] = code
    entry["detail"] = detail
    if meta is not None:
        entry["meta"] = meta
    return entry


def gladly_error_body(status: int, code: str, detail: str) -> dict[str, Any]:
    """Gladly's error envelope (always the array form the schema declares)."""
    return {"errors": [error_entry(code, detail)]}


def gladly_error(
    status: int,
    code: str,
    detail: str,
    *,
    attr: str | None = None,
    meta: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse({"errors": [error_entry(code, detail, attr, meta)]}, status_code=status, headers=headers)


def not_found(detail: str) -> JSONResponse:
    return gladly_error(404, "not_exist", detail)


def moved(old: str, new: str) -> JSONResponse:
    """A merged-away customer id. Gladly documents the body but not a Location header: none sent."""
    return gladly_error(
        301, "moved", "customer id has changed", attr="customerId", meta={"old": old, "new": new}
    )


def created(location: str) -> Response:
    """201 with the new object's `Location`. The body is undocumented (assumed: none), so a client
    tested here relies on the header only."""
    return Response(status_code=201, headers={"Location": location})


def raw_json(body: str, headers: dict[str, str] | None = None) -> Response:
    return Response(body, media_type="application/json", headers=headers)


def raw_json_array(bodies: list[str], headers: dict[str, str] | None = None) -> Response:
    """A bare JSON array assembled from already-serialised rows (no re-parsing)."""
    return raw_json("[" + ",".join(bodies) + "]", headers)


def limited_data(limited: bool) -> dict[str, str]:
    return {"Gladly-Limited-Data": "true" if limited else "false"}


def stream_file(path: Path, media_type: str) -> StreamingResponse:
    """The file's bytes in fixed-size chunks, with Content-Length, never all in memory."""
    size = path.stat().st_size

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as fh:
            while block := fh.read(CHUNK_SIZE):
                yield block

    return StreamingResponse(chunks(), media_type=media_type, headers={"Content-Length": str(size)})


# -- clock ----------------------------------------------------------------------------------




# -- the attachment file host --------------------------------------------------------------


class FileRule(BaseModel):
    """How the file host treats one attachment id."""

    model_config = ConfigDict(extra="forbid")

    status: int | None = Field(None, ge=400, le=599, description="always answer this (404, 403, 410, ...)")
    fail: int = Field(0, ge=0, description="answer `fail_status` to the first N requests for the file, then serve it")
    fail_status: int = Field(503, ge=400, le=599)
    redirects: int = Field(0, ge=0, le=50, description="302s to another URL before the file is served")


class FileHostConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signature: str | None = Field(None, description="sign file URLs: `?X-Amz-Signature=<this>`, required to download")
    attachments: dict[str, FileRule] = Field(default_factory=dict)


class FileHost:
    """Emulator-only misbehaviour of the host behind the attachment 303 (not part of Gladly's
    API): `PUT /_emulator/file-host` with a `FileHostConfig`; `GET` shows it with the number of
    file requests seen per attachment and how many carried an Authorization header (a client
    must send none: the URL is the grant). The default is a well-behaved, unsigned host."""

    def __init__(self) -> None:
        self.config = FileHostConfig()
        self.requests: Counter[str] = Counter()
        self.with_credentials = 0
        self._lock = threading.Lock()

    def reset(self, config: FileHostConfig) -> None:
        with self._lock:
            self.config, self.requests, self.with_credentials = config, Counter(), 0

    def url(self, base_url: str, attachment_id: str, hop: int = 0) -> str:
        query = [f"hop={hop}"] if hop else []
        if self.config.signature is not None:
            query += ["X-Amz-Expires=300", f"X-Amz-Signature={quote(self.config.signature, safe='')}"]
        return f"{base_url.rstrip('/')}{FILES_PREFIX}/attachments/{quote(attachment_id, safe='')}" + (
            "?" + "&".join(query) if query else ""
        )

    def answer(self, request: Request, attachment_id: str) -> Response | None:
        """A refusal or a redirect for this request, or None to serve the file."""
        cfg = self.config
        if "authorization" in request.headers:
            with self._lock:
                self.with_credentials += 1
        if cfg.signature is not None and request.query_params.get("X-Amz-Signature") != cfg.signature:
            return PlainTextResponse("SignatureDoesNotMatch", status_code=403)
        rule = cfg.attachments.get(attachment_id)
        if rule is None:
            return None
        hop = request.query_params.get("hop", "0")
        hop_n = int(hop) if hop.isdigit() else 0
        if hop_n < rule.redirects:
            return RedirectResponse(self.url(str(request.base_url), attachment_id, hop_n + 1), status_code=302)
        with self._lock:
            seen = self.requests[attachment_id]
            self.requests[attachment_id] = seen + 1
        if rule.status is not None:
            return PlainTextResponse(f"refused (emulated file host): {rule.status}", status_code=rule.status)
        if seen < rule.fail:
            return PlainTextResponse("SlowDown (emulated file host)", status_code=rule.fail_status)
        return None


def file_host_routes(host: FileHost) -> list[Route]:
    async def get_file_host(_: Request) -> JSONResponse:
        return JSONResponse({**host.config.model_dump(), "requests": dict(host.requests), "with_credentials": host.with_credentials})

    async def put_file_host(request: Request) -> JSONResponse:
        try:
            config = FileHostConfig.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            return JSONResponse({"error": f"invalid file host config: {exc}"}, status_code=400)
        host.reset(config)
        return JSONResponse(config.model_dump())

    return [
        Route("/_emulator/file-host", get_file_host, methods=["GET"]),
        Route("/_emulator/file-host", put_file_host, methods=["PUT"]),
    ]


def close_rules_routes(writes: ConversationWrites) -> list[Route]:
    """`GET/PUT /_emulator/close-rules`: which conversations need a topic before closing."""

    async def get_rules(_: Request) -> JSONResponse:
        return JSONResponse(writes.rules.model_dump())

    async def put_rules(request: Request) -> JSONResponse:
        try:
            rules = CloseRules.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            return JSONResponse({"error": f"invalid close rules: {exc}"}, status_code=400)
        writes.set_rules(rules)
        return JSONResponse(rules.model_dump())

    return [
        Route("/_emulator/close-rules", get_rules, methods=["GET"]),
        Route("/_emulator/close-rules", put_rules, methods=["PUT"]),
    ]


# -- auth and rate limit --------------------------------------------------------------------


class OrgRateLimiter(FixedWindowRateLimiter):
    """The shared limiter plus a non-consuming read of what is left in the current second."""

    def remaining(self) -> int:
        if not self.limit:
            return 0
        with self._lock:
            if int(self._clock()) != self._window:
                return self.limit
            return max(0, self.limit - self._used)




class GladlyGate:
    """Basic auth and the org-wide rate limit for every `/api` path (pure ASGI, streams intact).

    Unauthenticated requests do not spend the organization's budget but still report it.
    """

    def __init__(self, app: ASGIApp, *, api_user: str, api_token: str, limiter: OrgRateLimiter):
        self.app = app
        self._user = api_user.encode()
        self._token = api_token.encode()
        self.limiter = limiter

    def _authorized(self, headers: Headers) -> bool:
        creds = basic_credentials(headers)
        if creds is None:
            return False
        user_ok = hmac.compare_digest(creds[0].encode(), self._user)
        token_ok = hmac.compare_digest(creds[1].encode(), self._token)
        return user_ok and token_ok

    def _rate_headers(self, remaining: int) -> list[tuple[bytes, bytes]]:
        if not self.limiter.limit:
            return []
        return [
            (b"ratelimit-limit-second", str(self.limiter.limit).encode()),
            (b"ratelimit-remaining-second", str(remaining).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        if not self._authorized(Headers(scope=scope)):
            await self._refuse(send, 401, "unauthorized", "invalid API user or API token", self.limiter.remaining())
            return
        allowed, remaining = self.limiter.acquire()
        if not allowed:
            detail = f"rate limit exceeded: {self.limiter.limit} requests per second for the organization"
            await self._refuse(send, 429, "rate_limited", detail, 0)
            return
        extra = self._rate_headers(remaining)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)

    async def _refuse(self, send: Send, status: int, code: str, detail: str, remaining: int) -> None:
        body = json.dumps(gladly_error_body(status, code, detail)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *self._rate_headers(remaining),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# -- the API --------------------------------------------------------------------------------


class GladlyApi:
    """Route handlers over a `GladlyStore` and what the API wrote over it (in memory only)."""

    def __init__(self, store: GladlyStore, clock: Clock, faults: FaultDecider):
        self.store = store
        self.clock = clock
        self.faults = faults
        self.file_host = FileHost()
        self.writes = ConversationWrites(store)
        self.profiles = CustomerProfiles(store, clock.now_ns)
        self.topics = Topics(store)
        self.activity = ActivityItems(store)
        self.deleted_jobs: set[str] = set()

    def stats(self) -> dict[str, int]:
        """How many objects the API created or changed (the dataset's own not counted)."""
        return {
            "customer_profiles_created": self.profiles.created,
            "customer_profiles_updated": self.profiles.updated,
            "topics_created": self.topics.created,
            "activity_items_created": len(self.activity),
        }

    def routes(self) -> list[Route]:
        get = ["GET"]
        return [
            Route(f"{V1}/organization", self.organization, methods=get),
            Route(f"{V1}/agents", self.list_agents, methods=get),
            Route(f"{V1}/agents/{{agent_id}}", self.get_agent, methods=get),
            Route(f"{V1}/topics", self.list_topics, methods=get),
            Route(f"{V1}/topics", self.create_topic, methods=["POST"]),
            Route(f"{V1}/topics/{{topic_id}}", self.get_topic, methods=get),
            Route(f"{V1}/export/schedules", self.list_schedules, methods=get),
            Route(f"{V1}/export/jobs", self.list_jobs, methods=get),
            Route(f"{V1}/export/jobs/{{job_id}}", self.get_job, methods=get),
            Route(f"{V1}/export/jobs/{{job_id}}", self.delete_job, methods=["DELETE"]),
            Route(f"{V1}/export/jobs/{{job_id}}/files/{{name}}", self.get_job_file, methods=get),
            Route(f"{V1}/customer-profiles", self.find_customers, methods=get),
            Route(f"{V1}/customer-profiles", self.create_customer, methods=["POST"]),
            Route(f"{V1}/customer-profiles/{{customer_id}}", self.get_customer, methods=get),
            Route(f"{V1}/customer-profiles/{{customer_id}}", self.patch_customer, methods=["PATCH"]),
            Route(f"{V1}/customers/{{customer_id}}/conversations", self.customer_conversations, methods=get),
            Route(f"{V1}/customers/{{customer_id}}/conversation-items", self.create_activity_item, methods=["POST"]),
            Route(f"{V1}/conversations/{{conversation_id}}", self.get_conversation, methods=get),
            Route(f"{V1}/conversations/{{conversation_id}}", self.patch_conversation, methods=["PATCH"]),
            Route(f"{V1}/conversations/{{conversation_id}}/topics", self.add_topics, methods=["POST"]),
            Route(f"{V1}/conversations/{{conversation_id}}/items", self.conversation_items, methods=get),
            Route(f"{V1}/conversation-items/{{item_id}}", self.get_item, methods=get),
            Route(f"{V1}/conversation-items/{{item_id}}/attachments/{{attachment_id}}", self.attachment, methods=get),
            Route(f"{V1}/conversation-items/{{item_id}}/voice-transcript", self.voice_transcript, methods=get),
            Route(f"{V1}/conversation-items/{{item_id}}/media/recording", self.recording, methods=get),
            Route(f"{FILES_PREFIX}/attachments/{{attachment_id}}", self.attachment_file, methods=get),
        ]

    # -- organization, agents, topics ------------------------------------------------------

    async def organization(self, _: Request) -> JSONResponse:
        org = self.store.organization or {
            "id": "emulator-org",
            "name": "Gladly Emulator",
            "loginDomain": "emulator.gladly.com",
            "timezone": "UTC",
            "gladlyUrl": "https://emulator.gladly.com",
        }
        return JSONResponse(org)

    async def list_agents(self, _: Request) -> JSONResponse:
        return JSONResponse(self.store.agents)

    async def get_agent(self, request: Request) -> JSONResponse:
        agent_id = request.path_params["agent_id"]
        for agent in self.store.agents:
            if agent.get("id") == agent_id:
                return JSONResponse(agent)
        return not_found(f"agent [{agent_id}] does not exist")

    async def list_topics(self, _: Request) -> JSONResponse:
        return JSONResponse(self.topics.all())

    async def get_topic(self, request: Request) -> JSONResponse:
        topic_id = request.path_params["topic_id"]
        topic = self.topics.get(topic_id)
        return JSONResponse(topic) if topic is not None else not_found(f"conversation topic [{topic_id}] does not exist")

    async def create_topic(self, request: Request) -> Response:
        """201 + Location; 400 (id characters, blank name); 409 (id, or name with meta.id)."""
        body = await _json_object(request)
        if body is None:
            return gladly_error(400, "invalid", "request body must be a JSON object")
        result = self.topics.create(body)
        return _refused(result) if isinstance(result, Refusal) else created(f"{V1}/topics/{quote(result, safe='')}")

    # -- export ----------------------------------------------------------------------------

    async def list_schedules(self, _: Request) -> JSONResponse:
        return JSONResponse(self.store.schedules)

    def _visible(self, job: ExportJob, now_ns: int) -> bool:
        """Within the 14-day retention window, not in the future, not deleted."""
        if job.id in self.deleted_jobs or job.updated_ns is None:
            return False
        return now_ns - RETENTION_DAYS * NS_PER_DAY < job.updated_ns <= now_ns

    def _visible_job(self, job_id: str) -> ExportJob | None:
        job = self.store.jobs.get(job_id)
        if job is None or not self._visible(job, self.clock.now_ns()):
            return None
        return job

    def _files_expired(self, job: ExportJob) -> bool:
        """The vanished-files race: the job is listed but its files are already gone."""
        cfg = self.faults.config
        return job.id in cfg.expire_job_ids or self.faults.stable_hit("expire", job.id, cfg.expire_jobs)

    async def list_jobs(self, request: Request) -> Response:
        now_ns = self.clock.now_ns()
        oldest_ns = now_ns - RETENTION_DAYS * NS_PER_DAY
        params = request.query_params
        status = params.get("status")
        if status is not None and status not in JOB_STATUSES:
            return gladly_error(
                400, "invalid", f"status must be one of {', '.join(JOB_STATUSES)}, got [{status}]", attr="status"
            )
        start_ns, error = _time_param(params.get("startAt"), "startAt", oldest_ns)
        if error is not None:
            return error
        end_ns, error = _time_param(params.get("endAt"), "endAt", now_ns)
        if error is not None:
            return error
        if start_ns < oldest_ns:
            return gladly_error(
                400, "invalid", f"startAt cannot be earlier than {RETENTION_DAYS} days ago", attr="startAt"
            )
        if end_ns > now_ns:
            return gladly_error(400, "invalid", "endAt cannot be in the future", attr="endAt")
        if end_ns < start_ns:
            return gladly_error(400, "invalid", "endAt cannot be before startAt", attr="endAt")
        jobs = [
            job
            for job in self.store.jobs.values()
            if self._visible(job, now_ns)
            and start_ns <= (job.updated_ns or 0) <= end_ns
            and (status is None or job.status == status)
        ]
        # Gladly documents no order; newest first, so clients that assume one must sort.
        jobs.sort(key=lambda j: (j.updated_ns or 0, j.id), reverse=True)
        return JSONResponse([job.body for job in jobs])

    async def get_job(self, request: Request) -> JSONResponse:
        job_id = request.path_params["job_id"]
        job = self._visible_job(job_id)
        if job is None:
            return not_found(f"export job [{job_id}] does not exist")
        return JSONResponse(job.body)

    async def delete_job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        job = self._visible_job(job_id)
        if job is None:
            return not_found(f"export job [{job_id}] does not exist")
        if job.status not in DELETABLE_STATUSES:
            detail = f"unable to delete job with status [{job.status}]. Please try again after it has finished"
            return gladly_error(400, "temporary_failure", detail, attr="status")
        self.deleted_jobs.add(job.id)
        return Response(status_code=204)

    async def get_job_file(self, request: Request) -> Response:
        job_id, name = request.path_params["job_id"], request.path_params["name"]
        job = self._visible_job(job_id)
        if job is None:
            return not_found(f"export job [{job_id}] does not exist")
        path = None if self._files_expired(job) else self.store.job_file_path(job, name)
        if path is None:
            return not_found(f"file [{name}] does not exist for export job [{job_id}]")
        return stream_file(path, NDJSON)

    # -- customers and conversations ---------------------------------------------------------

    async def find_customers(self, request: Request) -> Response:
        given = [(key, value) for key, value in request.query_params.multi_items() if key in LOOKUP_PARAMS]
        if not given:
            return gladly_error(400, "blank", "one of email, phoneNumber, externalCustomerId must be present")
        if len(given) > 1:
            return gladly_error(400, "invalid", "only one of email, phoneNumber, externalCustomerId may be given")
        key, value = given[0]
        if not value.strip():
            return gladly_error(400, "blank", f"{key} cannot be blank", attr=key)
        kind = {"email": "email", "phoneNumber": "phone", "externalCustomerId": "external"}[key]
        lookup = value.strip().lower() if kind == "email" else value
        return raw_json_array(self.profiles.find(kind, lookup, MAX_CUSTOMER_MATCHES))

    async def get_customer(self, request: Request) -> Response:
        customer_id = request.path_params["customer_id"]
        survivor = self.store.survivor(customer_id)
        if survivor is not None:
            return moved(customer_id, survivor)
        body = self.profiles.body(customer_id)
        if body is None:
            return not_found(f"customer profile [{customer_id}] does not exist")
        return raw_json(body)

    async def create_customer(self, request: Request) -> Response:
        """201 + Location; 400; 409 `taken` naming the field (id, emails or phones)."""
        body = await _json_object(request)
        if body is None:
            return gladly_error(400, "invalid", "request body must be a JSON object")
        result = self.profiles.create(body)
        if isinstance(result, Refusal):
            return _refused(result)
        return created(f"{V1}/customer-profiles/{quote(result, safe='')}")

    async def patch_customer(self, request: Request) -> Response:
        """204; 400; 404 (merged-away ids too); 409 on an email or mobile of another profile."""
        body = await _json_object(request)
        if body is None:
            return gladly_error(400, "invalid", "request body must be a JSON object")
        refusal = self.profiles.patch(request.path_params["customer_id"], body)
        return _refused(refusal) if refusal is not None else Response(status_code=204)

    async def create_activity_item(self, request: Request) -> Response:
        """A CUSTOMER_ACTIVITY item on a customer's timeline: 200 with the item; 301 for a merged
        customer (with Location, as documented); 400 (one-year rule ...); 404; 409 `taken`."""
        customer_id = request.path_params["customer_id"]
        survivor = self.store.survivor(customer_id)
        if survivor is not None:
            return gladly_error(
                301, "moved", f"the customer id has changed from [{customer_id}] to [{survivor}]",
                attr="customer id", meta={"old": customer_id, "new": survivor},
                headers={"Location": f"{str(request.base_url).rstrip('/')}{V1}/customers/{quote(survivor, safe='')}"
                         "/conversation-items"},
            )
        if not self.profiles.exists(customer_id):
            return not_found(f"customer profile [{customer_id}] does not exist")
        body = await _json_object(request)
        if body is None:
            return gladly_error(400, "invalid", "request body must be a JSON object")
        result = self.activity.create(customer_id, body, self.clock.now_ns())
        return _refused(result) if isinstance(result, Refusal) else JSONResponse(result)

    async def customer_conversations(self, request: Request) -> Response:
        customer_id = request.path_params["customer_id"]
        survivor = self.store.survivor(customer_id)
        if survivor is not None:
            return moved(customer_id, survivor)
        if self.profiles.body(customer_id) is None:
            return not_found(f"customer profile [{customer_id}] does not exist")
        bodies, limited = self.store.customer_conversations(customer_id, MAX_CONVERSATIONS)
        return raw_json_array(self.writes.bodies(bodies), limited_data(limited))

    async def get_conversation(self, request: Request) -> Response:
        conversation_id = request.path_params["conversation_id"]
        body = self.writes.body(conversation_id)
        if body is None:
            return not_found(f"conversation [{conversation_id}] does not exist")
        return raw_json(body)

    async def patch_conversation(self, request: Request) -> Response:
        """Close/reopen (`status`) and reassign (`assignee`): 204, 400 or 404 (§4.2)."""
        conversation_id = request.path_params["conversation_id"]
        body = await _json_object(request)
        if body is None:
            return gladly_error(400, "invalid", "request body must be a JSON object")
        status, assignee = body.get("status"), body.get("assignee")
        if status is None and assignee is None:
            return gladly_error(400, "blank", "one of assignee, status must be present")
        if status is not None:
            if not isinstance(status, dict) or not isinstance(status.get("value"), str) or not status["value"].strip():
                return gladly_error(400, "blank", "status.value cannot be blank", attr="status.value")
            if status["value"] not in ("OPEN", "CLOSED"):
                return gladly_error(400, "invalid", "status.value must be OPEN or CLOSED", attr="status.value")
            if not isinstance(status.get("force", False), bool):
                return gladly_error(400, "invalid", "status.force must be a boolean", attr="status.force")
        if assignee is not None:
            refusal = self._assignee_refusal(assignee)
            if refusal is not None:
                return _refused(refusal)
        refusal = self.writes.patch(conversation_id, status, assignee, format_ns(self.clock.now_ns()))
        return _refused(refusal) if refusal is not None else Response(status_code=204)

    def _assignee_refusal(self, assignee: Any) -> Refusal | None:
        if not isinstance(assignee, dict) or not isinstance(assignee.get("inboxId"), str) or not assignee["inboxId"].strip():
            return Refusal(400, "blank", "assignee.inboxId cannot be blank", "assignee.inboxId")
        agent_id = assignee.get("agentId")
        if agent_id is not None and not any(a.get("id") == agent_id for a in self.store.agents):
            return Refusal(400, "invalid_state", "agent does not belong to inbox")
        return None

    async def add_topics(self, request: Request) -> Response:
        """Add topics to a conversation; those already on it are ignored. 204, 400 or 404."""
        conversation_id = request.path_params["conversation_id"]
        body = await _json_object(request)
        topic_ids = body.get("topicIds") if body is not None else None
        if not isinstance(topic_ids, list) or not topic_ids or not all(isinstance(t, str) and t for t in topic_ids):
            return gladly_error(400, "blank", "topicIds must be a non-empty list of topic ids", attr="topicIds")
        if self.writes.body(conversation_id) is None:
            return not_found("conversation does not exist")
        topics = {t.get("id"): t for t in self.topics.all()}
        for topic_id in topic_ids:
            if topic_id not in topics:
                return gladly_error(400, "invalid", f"topic [{topic_id}] does not exist", attr="topicIds")
            if topics[topic_id].get("disabled"):
                return gladly_error(400, "invalid", f"topic [{topic_id}] is disabled", attr="topicIds")
        self.writes.add_topics(conversation_id, topic_ids)
        return Response(status_code=204)

    async def conversation_items(self, request: Request) -> Response:
        conversation_id = request.path_params["conversation_id"]
        if self.store.conversation(conversation_id) is None:
            return not_found(f"conversation [{conversation_id}] does not exist")
        session_id = request.query_params.get("sessionId")
        bodies, limited = self.store.conversation_items(conversation_id, session_id, MAX_ITEMS)
        return raw_json_array(bodies, limited_data(limited))

    # -- conversation items ----------------------------------------------------------------

    def _item_or_404(self, item_id: str) -> str | Response:
        body = self.store.item(item_id) or self.activity.body(item_id)
        return body if body is not None else not_found(f"conversation item [{item_id}] does not exist")

    async def get_item(self, request: Request) -> Response:
        found = self._item_or_404(request.path_params["item_id"])
        return raw_json(found) if isinstance(found, str) else found

    async def attachment(self, request: Request) -> Response:
        """303 to a file URL outside /api, like the pre-signed URL Gladly hands out."""
        item_id, attachment_id = request.path_params["item_id"], request.path_params["attachment_id"]
        found = self._item_or_404(item_id)
        if not isinstance(found, str):
            return found
        content = json.loads(found).get("content")
        attachments = content.get("attachments") if isinstance(content, dict) else None
        if not isinstance(attachments, list) or not attachments:
            return gladly_error(400, "invalid", f"conversation item [{item_id}] has no attachments")
        listed = any(isinstance(a, dict) and a.get("id") == attachment_id for a in attachments)
        if not listed or self.store.attachment_file(attachment_id) is None:
            return not_found(f"attachment [{attachment_id}] does not exist on conversation item [{item_id}]")
        return RedirectResponse(self.file_host.url(str(request.base_url), attachment_id), status_code=303)

    async def attachment_file(self, request: Request) -> Response:
        """The redirect target: no auth (the URL is the credential), Range-capable like S3."""
        refusal = self.file_host.answer(request, request.path_params["attachment_id"])
        if refusal is not None:
            return refusal
        found = self.store.attachment_file(request.path_params["attachment_id"])
        if found is None:
            return PlainTextResponse("NoSuchKey: the specified key does not exist", status_code=404)
        return FileResponse(found.path, media_type=found.content_type, filename=found.filename)

    async def voice_transcript(self, request: Request) -> Response:
        item_id = request.path_params["item_id"]
        found = self._item_or_404(item_id)
        if not isinstance(found, str):
            return found
        body = self.store.transcript(item_id)
        if body is None:
            return not_found(f"voice transcript for conversation item [{item_id}] does not exist")
        return raw_json(body)

    async def recording(self, request: Request) -> Response:
        item_id = request.path_params["item_id"]
        found = self._item_or_404(item_id)
        if not isinstance(found, str):
            return found
        path = self.store.recording_path(item_id)
        if path is None:
            return not_found(f"recording for conversation item [{item_id}] does not exist")
        return stream_file(path, "audio/mpeg")


async def _json_object(request: Request) -> dict[str, Any] | None:
    """The request body if it is a JSON object, else None."""
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _refused(refusal: Refusal) -> JSONResponse:
    return gladly_error(refusal.status, refusal.code, refusal.detail, attr=refusal.attr, meta=refusal.meta)


def _time_param(raw: str | None, name: str, default_ns: int) -> tuple[int, Response | None]:
    """Parse an optional RFC3339 query parameter (any fractional precision)."""
    if raw is None:
        return default_ns, None
    parsed = parse_rfc3339_ns(raw)
    if parsed is None:
        return default_ns, gladly_error(400, "invalid", f"{name} must be an RFC3339 timestamp, got [{raw}]", attr=name)
    return parsed, None


async def _http_error(request: Request, exc: Exception) -> Response:
    """Router 404/405 (and any HTTPException) in Gladly's error shape."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        return gladly_error(404, "not_exist", f"resource [{request.url.path}] does not exist", headers=headers)
    if exc.status_code == 405:
        detail = f"method [{request.method}] is not allowed on [{request.url.path}]"
        return gladly_error(405, "method_not_allowed", detail, headers=headers)
    return gladly_error(exc.status_code, "invalid", str(exc.detail), headers=headers)


async def _server_error(_: Request, exc: Exception) -> Response:
    return gladly_error(500, "server_error", f"internal error: {type(exc).__name__}")


def create_app(
    data_dir: Path,
    *,
    api_user: str,
    api_token: str,
    faults: FaultConfig | None = None,
    now: datetime | None = None,
    rate_limit_per_second: int = 10,
    request_log_path: Path | None = None,
    rate_limit_clock: Callable[[], float] = time.time,
) -> ASGIApp:
    """The Gladly emulator over the dataset folder `data_dir`, ready for uvicorn. The org budget
    counts per second of `rate_limit_clock` (the wall clock; tests may hold it still)."""
    store = GladlyStore(Path(data_dir))
    clock = Clock(now)
    state = EmulatorState(
        name="gladly",
        faults=FaultDecider(faults or FaultConfig()),
        log=RequestLog(path=request_log_path),
        api_prefix=API_PREFIX,
        download_pattern=DOWNLOAD_PATTERN,
        error_body=gladly_error_body,
        extra_admin={"clock": clock, "store": store},
    )
    api = GladlyApi(store, clock, state.faults)
    state.extra_admin.update(file_host=api.file_host, conversation_writes=api.writes, profiles=api.profiles,
                             topics=api.topics, activity_items=api.activity)

    async def stats(_: Request) -> JSONResponse:
        return JSONResponse(api.stats())
    limiter = OrgRateLimiter(rate_limit_per_second, clock=rate_limit_clock)
    # An injected 429 or 5xx carries the org budget headers like every real Gladly API answer.
    state.error_headers = lambda status: {
        "Ratelimit-Limit-Second": str(rate_limit_per_second),
        "Ratelimit-Remaining-Second": "0" if status == 429 else str(limiter.remaining()),
    }
    app = Starlette(
        routes=[
            *admin_routes(state), *clock_routes(clock), *file_host_routes(api.file_host),
            *close_rules_routes(api.writes), Route("/_emulator/stats", stats, methods=["GET"]), *api.routes(),
        ],
        middleware=[Middleware(GladlyGate, api_user=api_user, api_token=api_token, limiter=limiter)],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    return EmulatorMiddleware(app, state)
