"""Machinery shared by the vendor emulators: fault injection, rate limiting, the request log,
admin routes and running an ASGI app on loopback.

Each emulator is a Starlette app wrapped in `EmulatorMiddleware`. The middleware records every
request in a `RequestLog` and injects the faults described by a `FaultConfig`; vendor-specific
things (auth, the vendor's rate-limit headers, its error body shape) stay in the vendor's app.

Fault decisions are deterministic under a seed: a decision is a hash of (seed, fault kind,
method, path, how many times that method+path has been seen), so the same sequence of requests
meets the same faults, and a retry of a request (same path, next count) gets a fresh draw.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ErrorBody = Callable[[int, str, str], Any]

ADMIN_PREFIX = "/_emulator"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class FaultConfig(BaseModel):
    """What can go wrong, and how often. Rates are fractions of eligible requests (0..1)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    rate_429: float = Field(0.0, ge=0, le=1, description="API requests answered 429 before the app sees them")
    rate_5xx: float = Field(0.0, ge=0, le=1, description="API requests answered 500/502/503 before the app sees them")
    latency_ms: float = Field(0.0, ge=0, description="added to every API request")
    latency_jitter_ms: float = Field(0.0, ge=0, description="uniform extra latency 0..N ms, drawn per request")
    lost_response: float = Field(
        0.0, ge=0, le=1, description="writes that are applied but whose response is lost (connection dropped)"
    )
    truncate_downloads: float = Field(0.0, ge=0, le=1, description="file downloads cut short mid-body")
    expire_jobs: float = Field(
        0.0, ge=0, le=1, description="Gladly: listed export jobs whose files are already gone (404)"
    )
    expire_job_ids: list[str] = Field(default_factory=list, description="Gladly: these jobs' files are gone")

    @classmethod
    def from_file(cls, path: str | Path) -> FaultConfig:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"fault config {path}: expected a mapping, got {type(data).__name__}")
        return cls.model_validate(data.get("faults", data))

    def merged(self, **overrides: Any) -> FaultConfig:
        """A copy with every override that is not None applied (CLI flags over a config file)."""
        data = self.model_dump()
        data.update({k: v for k, v in overrides.items() if v is not None})
        return FaultConfig.model_validate(data)


class FaultDecider:
    """Deterministic per-(kind, method, path) draws under a seed."""

    def __init__(self, config: FaultConfig):
        self.config = config
        self._counts: dict[tuple[str, str], int] = defaultdict(int)
        self._lock = threading.Lock()

    def reset(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._counts.clear()

    def draw(self, kind: str, key: str) -> float:
        """A number in [0, 1) determined by the seed, the kind, the key and how often it was drawn."""
        with self._lock:
            n = self._counts[(kind, key)]
            self._counts[(kind, key)] = n + 1
            seed = self.config.seed
        digest = hashlib.sha256(f"{seed}|{kind}|{key}|{n}".encode()).digest()
        return int.from_bytes(digest[:7], "big") / float(1 << 56)

    def hit(self, kind: str, key: str, rate: float) -> bool:
        if rate <= 0:
            return False
        return self.draw(kind, key) < rate

    def stable_hit(self, kind: str, key: str, rate: float) -> bool:
        """Like `hit`, but the same key always gets the same answer (for per-object faults)."""
        if rate <= 0:
            return False
        digest = hashlib.sha256(f"{self.config.seed}|{kind}|{key}".encode()).digest()
        return int.from_bytes(digest[:7], "big") / float(1 << 56) < rate


class FixedWindowRateLimiter:
    """Requests per wall-clock second, shared by every client (Gladly's org-wide budget).

    `acquire()` returns (allowed, remaining-in-this-second). A refused request does not consume
    budget, as with a token bucket that rejects rather than queues.
    """

    def __init__(self, limit_per_second: int | None, clock: Callable[[], float] = time.time):
        self.limit = limit_per_second
        self._clock = clock
        self._window = -1
        self._used = 0
        self._lock = threading.Lock()

    def acquire(self) -> tuple[bool, int]:
        if not self.limit:
            return True, 0
        with self._lock:
            window = int(self._clock())
            if window != self._window:
                self._window, self._used = window, 0
            if self._used >= self.limit:
                return False, 0
            self._used += 1
            return True, self.limit - self._used


@dataclass
class RequestRecord:
    t: float
    method: str
    path: str
    status: int | None = None
    fault: str | None = None
    duration_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "fault": self.fault,
            "duration_ms": round(self.duration_ms, 3),
        }


@dataclass
class RequestLog:
    """Every request an emulator received: when, what, the status it got and any injected fault."""

    path: Path | None = None
    records: list[RequestRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self.records.append(record)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record.as_dict()) + "\n")

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.as_dict() for r in self.records]

    def clear(self) -> None:
        with self._lock:
            self.records.clear()


@dataclass
class EmulatorState:
    """What the middleware and the admin routes share with the vendor app."""

    name: str
    faults: FaultDecider
    log: RequestLog
    api_prefix: str
    download_pattern: re.Pattern[str] | None = None
    error_body: ErrorBody = lambda status, code, detail: {"error": detail}
    # Headers an injected error carries, so it looks like the vendor's own (e.g. rate-limit headers).
    error_headers: Callable[[int], dict[str, str]] = lambda status: {}
    extra_admin: dict[str, Any] = field(default_factory=dict)
    # While held, API requests wait (unanswered, connection open) until released: a vendor that
    # stalls, and a way for a rehearsal to stop every client at a known point.
    held: bool = False


class _DropConnection(Exception):
    """Raised inside the middleware to end a response without completing it."""


class EmulatorMiddleware:
    """Records requests and injects faults in front of a vendor app (pure ASGI, streams intact)."""

    def __init__(self, app: ASGIApp, state: EmulatorState):
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        record = RequestRecord(t=time.time(), method=method, path=path)
        started = time.perf_counter()
        try:
            if path.startswith(ADMIN_PREFIX):
                await self._forward(scope, receive, send, record)
                return
            await self._serve_with_faults(scope, receive, send, record, method, path)
        finally:
            record.duration_ms = (time.perf_counter() - started) * 1000
            if not path.startswith(ADMIN_PREFIX):
                self.state.log.add(record)

    async def _serve_with_faults(
        self, scope: Scope, receive: Receive, send: Send, record: RequestRecord, method: str, path: str
    ) -> None:
        cfg = self.state.faults.config
        decider = self.state.faults
        key = f"{method} {path}"
        is_api = path.startswith(self.state.api_prefix)
        is_download = bool(self.state.download_pattern and self.state.download_pattern.search(path))

        while is_api and self.state.held:
            await asyncio.sleep(0.02)
        if is_api and (cfg.latency_ms or cfg.latency_jitter_ms):
            delay = cfg.latency_ms + cfg.latency_jitter_ms * decider.draw("latency", key)
            await asyncio.sleep(delay / 1000)

        if is_api and decider.hit("429", key, cfg.rate_429):
            record.fault = "429"
            await self._error(send, record, 429, "rate_limited", "too many requests (injected fault)")
            return
        if is_api and decider.hit("5xx", key, cfg.rate_5xx):
            status = (500, 502, 503)[int(decider.draw("5xx-status", key) * 3)]
            record.fault = str(status)
            await self._error(send, record, status, "server_error", "internal error (injected fault)")
            return

        if is_api and method in WRITE_METHODS and decider.hit("lost", key, cfg.lost_response):
            record.fault = "lost_response"
            await self._forward_then_drop(scope, receive, send, record)
            return
        if is_download and decider.hit("truncate", key, cfg.truncate_downloads):
            record.fault = "truncated"
            await self._forward_truncated(scope, receive, send, record)
            return
        await self._forward(scope, receive, send, record)

    async def _forward(self, scope: Scope, receive: Receive, send: Send, record: RequestRecord) -> None:
        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        await self.app(scope, receive, capture)

    async def _forward_then_drop(self, scope: Scope, receive: Receive, send: Send, record: RequestRecord) -> None:
        """Let the app apply the write, then start the response and hang up before the body."""
        captured: dict[str, Any] = {}

        async def swallow(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["start"] = message
                record.status = message["status"]

        await self.app(scope, receive, swallow)
        start = captured.get("start") or {"type": "http.response.start", "status": 200, "headers": []}
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", b"4096"))
        await send({"type": "http.response.start", "status": start["status"], "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        # Returning without finishing the body makes uvicorn close the transport: the client sees
        # a dropped connection although the server committed the write.

    async def _forward_truncated(self, scope: Scope, receive: Receive, send: Send, record: RequestRecord) -> None:
        sent = {"bytes": 0, "cutoff": None}

        async def cut(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                await send(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            body: bytes = message.get("body", b"")
            if sent["cutoff"] is None:
                sent["cutoff"] = max(1, len(body) // 2)
            room = sent["cutoff"] - sent["bytes"]
            if room <= 0:
                raise _DropConnection
            chunk = body[:room]
            sent["bytes"] += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if len(body) >= room:
                raise _DropConnection

        try:
            await self.app(scope, receive, cut)
        except _DropConnection:
            return

    async def _error(self, send: Send, record: RequestRecord, status: int, code: str, detail: str) -> None:
        record.status = status
        body = json.dumps(self.state.error_body(status, code, detail)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in self.state.error_headers(status).items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def admin_routes(state: EmulatorState) -> list[Route]:
    """Emulator-only endpoints (not part of any vendor API): request log, faults, hold, health."""

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "emulator": state.name})

    async def requests_log(_: Request) -> JSONResponse:
        return JSONResponse(state.log.snapshot())

    async def clear_log(_: Request) -> JSONResponse:
        state.log.clear()
        return JSONResponse({"cleared": True})

    async def get_faults(_: Request) -> JSONResponse:
        return JSONResponse(state.faults.config.model_dump())

    async def put_faults(request: Request) -> JSONResponse:
        try:
            config = FaultConfig.model_validate(await request.json())
        except Exception as exc:  # pydantic ValidationError or bad JSON
            return JSONResponse({"error": f"invalid fault config: {exc}"}, status_code=400)
        state.faults.reset(config)
        return JSONResponse(config.model_dump())

    async def get_hold(_: Request) -> JSONResponse:
        return JSONResponse({"held": state.held})

    async def put_hold(request: Request) -> JSONResponse:
        try:
            held = (await request.json())["held"]
        except (ValueError, KeyError, TypeError):
            held = None
        if not isinstance(held, bool):
            return JSONResponse({"error": 'expected {"held": true|false}'}, status_code=400)
        state.held = held
        return JSONResponse({"held": state.held})

    return [
        Route(f"{ADMIN_PREFIX}/health", health, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/requests", requests_log, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/requests/clear", clear_log, methods=["POST"]),
        Route(f"{ADMIN_PREFIX}/faults", get_faults, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/faults", put_faults, methods=["PUT"]),
        Route(f"{ADMIN_PREFIX}/hold", get_hold, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/hold", put_hold, methods=["PUT"]),
    ]


class RunningServer:
    """A uvicorn server on a background thread; `url` is http://127.0.0.1:PORT."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.host = host
        self.thread = threading.Thread(target=self.server.run, name="emulator", daemon=True)

    def start(self, timeout: float = 15.0) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("emulator server failed to start")
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(app: ASGIApp, host: str = "127.0.0.1", port: int = 0, log_level: str = "info") -> None:
    """Run an emulator in the foreground (the CLI). Prints the URL once it is listening."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="off")
    server = uvicorn.Server(config)

    async def main() -> None:
        serve_task = asyncio.create_task(server.serve())
        while not server.started and not serve_task.done():
            await asyncio.sleep(0.05)
        if server.started:
            bound = server.servers[0].sockets[0].getsockname()[1]
            print(f"listening on http://{host}:{bound}", flush=True)
        await serve_task

    asyncio.run(main())


def basic_credentials(headers: Headers) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic` header, or None if absent or malformed."""
    value = headers.get("authorization", "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None
