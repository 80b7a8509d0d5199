"""One HTTP behaviour for every vendor client: timeouts, pacing, retries, secret-free errors.

Vendor clients (`sources/*/client.py`, `targets/*/client.py`) subclass `VendorHttpClient` and get:
- explicit connect/read timeouts;
- client-side pacing below the vendor's limit (pyrate-limiter, a sliding window, so no
  calendar second ever sees more than the limit): per client, or with `shared_budget` one budget
  for every client of the vendor account on the machine, threads and processes alike
  (`lib/budget.py`), for a vendor whose limit is account-wide;
- after a 429, the client (or with a shared budget, every client of the account) holds off;
- retries with exponential backoff and full jitter (tenacity) on 429, 5xx and connection
  errors, never on other 4xx; `Retry-After` honoured when the vendor sends it;
- a hook to read the vendor's remaining-budget headers and slow down before a 429;
- errors that name the method, path, status and vendor message, and never the credentials.
This module imports nothing from Dagster.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from pyrate_limiter import Limiter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from migration_pipeline.lib.budget import SharedRequestBudget, pacing_rates

# Retries are logged here, at INFO; dagster.yaml names this logger so they reach the run log.
RETRY_LOGGER = __name__
log = logging.getLogger(RETRY_LOGGER)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


def path_segment(value: str) -> str:
    """An id from vendor data as exactly ONE URL path segment: every reserved character
    percent-encoded, and a bare `.`/`..` (which URL libraries resolve away) spelled `%2E`, so
    an id like `../export/jobs/J1` can never address another resource with our credentials."""
    encoded = quote(str(value), safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


class VendorAPIError(Exception):
    """A vendor answered with an error status, or could not be reached after every retry."""

    def __init__(self, vendor: str, method: str, path: str, status: int | None, detail: str, body: Any = None):
        self.vendor, self.method, self.path, self.status, self.detail, self.body = (
            vendor,
            method,
            path,
            status,
            detail,
            body,
        )
        where = f"{vendor} {method} {path}"
        super().__init__(f"{where} -> {status}: {detail}" if status else f"{where}: {detail}")

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in RETRYABLE_STATUS


@dataclass
class CallStats:
    """Counters a run reports as metadata (requests, retries, 429s) - per client instance."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def bump(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("requests", "retries", "throttled", "server_errors", "connection_errors")}


def _retry_after_seconds(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class _RetryableResponse(Exception):
    def __init__(self, response: httpx.Response):
        self.response = response


class RetryableStatus(_RetryableResponse):
    """Raise it with a 429/5xx response from requests a client sends itself inside `retrying()`
    (e.g. to a file host): retried like `request()`'s, Retry-After honoured; re-raised when the
    attempts run out."""


class VendorHttpClient:
    """Base for vendor clients. Subclasses set `vendor` and call `self.request(...)`."""

    vendor = "vendor"

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
        requests_per_second: float | None = None,
        timeout_seconds: float = 30.0,
        connect_timeout_seconds: float = 10.0,
        max_attempts: int = 6,
        backoff_initial_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
        max_retry_after_seconds: float = 120.0,
        throttle_pause_seconds: float = 1.0,
        transport: httpx.BaseTransport | None = None,
        shared_budget: SharedRequestBudget | None = None,
    ):
        """`shared_budget` replaces the per-client pacing by that budget (the client closes it);
        every attempt draws from it and a 429 holds off every client of it."""
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            auth=auth,
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds),
            transport=transport,
            follow_redirects=False,
            verify=tls_context(),
        )
        self._budget = shared_budget
        self._limiter = None if shared_budget is not None else _pacer(requests_per_second)
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial_seconds
        self.backoff_max = backoff_max_seconds
        self.max_retry_after = max_retry_after_seconds
        self.throttle_pause = throttle_pause_seconds
        self.stats = CallStats()
        self._pause_until = 0.0
        self._pause_lock = threading.Lock()

    @property
    def shared_budget(self) -> SharedRequestBudget | None:
        """The account-wide budget this client draws from, if it was given one."""
        return self._budget

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self._client.close()
        if self._budget is not None:
            self._budget.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- hooks for subclasses --------------------------------------------------------------
    def observe_rate_headers(self, response: httpx.Response) -> None:
        """Read the vendor's budget headers; call `pause_until_next_second()` when exhausted."""

    def error_detail(self, response: httpx.Response) -> str:
        """The vendor's own message for an error response (shape differs per vendor)."""
        return response.text[:500]

    # -- pacing ----------------------------------------------------------------------------
    def pause_for(self, seconds: float) -> None:
        """Send nothing for `seconds`: this client, and with a shared budget every client of the
        account (the vendor's budget is spent for all of them)."""
        self._pause_locally(seconds)
        if self._budget is not None:
            self._budget.block_for(seconds)

    def _pause_locally(self, seconds: float) -> None:
        with self._pause_lock:
            self._pause_until = max(self._pause_until, time.monotonic() + seconds)

    def _wait_for_budget(self) -> None:
        delay = self._pause_until - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if self._budget is not None:
            self._budget.acquire()
        elif self._limiter is not None:
            self._limiter.try_acquire(self.vendor)

    def _note_throttled(self, response: httpx.Response) -> None:
        """The vendor answered 429: hold off for its Retry-After, or without one for the rest of
        its rate window (`throttle_pause`), now, whether or not this request is retried."""
        hinted = _retry_after_seconds(response)
        self.pause_for(min(hinted, self.max_retry_after) if hinted is not None else self.throttle_pause)

    # -- requests --------------------------------------------------------------------------
    def request(
        self, method: str, path: str, *, ok: tuple[int, ...] = (), idempotent: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """Send with pacing and retries. Returns 2xx/3xx responses and any status in `ok`;
        raises VendorAPIError for other statuses (after retries for retryable ones).

        `idempotent=False` (creates): only a 429 is retried here, since a throttled request was
        not applied. After a 5xx or a broken connection the write may have been applied, so the
        error goes straight to the caller, which must look the object up before sending again
        (the loader's ledger protocol) - a blind retry is how duplicates are made."""
        with self._attempts(method, path, idempotent) as attempt:
            return attempt(lambda: self._send(method, path, ok, kwargs))
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response (body not read), paced; retries only until the headers arrive.
        Callers that need retries across a broken body wrap the whole download in `retrying()`."""

        def open_stream() -> tuple[Any, httpx.Response]:
            self._wait_for_budget()
            self.stats.bump("requests")
            cm = self._client.stream(method, path, **kwargs)
            try:
                response = cm.__enter__()
            except httpx.TransportError:
                self.stats.bump("connection_errors")
                raise
            self.observe_rate_headers(response)
            if response.status_code in RETRYABLE_STATUS:
                response.read()
                cm.__exit__(None, None, None)
                self._count_status(response)
                raise _RetryableResponse(response)
            return cm, response

        with self._attempts(method, path) as attempt:
            cm, response = attempt(open_stream)
        try:
            if response.status_code >= 400:
                response.read()
                raise self._error(method, path, response)
            yield response
        finally:
            cm.__exit__(None, None, None)

    def retrying(self, method: str, path: str):
        """A tenacity `Retrying` with this client's policy, for multi-step operations
        (e.g. a download whose body can break after the headers)."""
        return self._retrying(method, path)

    # -- internals -------------------------------------------------------------------------
    def _send(self, method: str, path: str, ok: tuple[int, ...], kwargs: dict[str, Any]) -> httpx.Response:
        self._wait_for_budget()
        self.stats.bump("requests")
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError:
            self.stats.bump("connection_errors")
            raise
        self.observe_rate_headers(response)
        status = response.status_code
        if status in ok or status < 400:
            return response
        if status in RETRYABLE_STATUS:
            self._count_status(response)
            raise _RetryableResponse(response)
        raise self._error(method, path, response)

    def _count_status(self, response: httpx.Response) -> None:
        """Count a retryable answer of the vendor's API; a 429 also holds the next requests off."""
        if response.status_code == 429:
            self.stats.bump("throttled")
            self._note_throttled(response)
        else:
            self.stats.bump("server_errors")

    def _error(self, method: str, path: str, response: httpx.Response) -> VendorAPIError:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text[:500]
        return VendorAPIError(self.vendor, method, path, response.status_code, self.error_detail(response), body)

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(
            multiplier=self.backoff_initial, max=self.backoff_max, jitter=self.backoff_initial
        )(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableResponse):
            hinted = _retry_after_seconds(exc.response)
            if hinted is not None:
                return min(max(hinted, 0.05), self.max_retry_after)
            if exc.response.status_code == 429 and isinstance(exc, RetryableStatus):
                # Another host's 429 (the vendor API's paused at `_note_throttled`): sit out the
                # rest of its rate window before the backoff, this client only.
                self._pause_locally(self.throttle_pause)
        return backoff

    def _retrying(self, method: str, path: str, idempotent: bool = True) -> Retrying:
        # A file host's URL is pre-signed in its query: the log shows the path only.
        shown = path.split("?", 1)[0]

        def before_sleep(state: RetryCallState) -> None:
            self.stats.bump("retries")
            exc = state.outcome.exception() if state.outcome else None
            status = (str(exc.response.status_code) if isinstance(exc, _RetryableResponse)
                      else f"connection error ({type(exc).__name__})")
            log.info("%s %s %s -> %s: attempt %d of %d failed, retrying in %.2fs", self.vendor, method, shown, status,
                     state.attempt_number, self.max_attempts, state.upcoming_sleep)

        return Retrying(
            retry=retry_if_exception(
                (lambda e: isinstance(e, (_RetryableResponse, httpx.TransportError)))
                if idempotent
                else (lambda e: isinstance(e, _RetryableResponse) and e.response.status_code == 429)
            ),
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            before_sleep=before_sleep,
            reraise=True,
        )

    @contextmanager
    def _attempts(self, method: str, path: str, idempotent: bool = True):
        retrying = self._retrying(method, path, idempotent)

        def attempt(fn):
            try:
                return retrying(fn)
            except _RetryableResponse as exc:
                raise self._error(method, path, exc.response) from None
            except httpx.TransportError as exc:
                raise VendorAPIError(self.vendor, method, path, None, f"connection failed: {exc!r}") from None

        yield attempt


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS settings every client verifies servers with, built once per process: httpx's
    default (certifi's CA bundle, or the SSL_CERT_FILE / SSL_CERT_DIR httpx itself reads). httpx
    builds it for every client otherwise, about 50 ms each (the CA bundle parsed)."""
    return httpx.create_ssl_context()


def _pacer(requests_per_second: float | None) -> Limiter | None:
    if not requests_per_second or requests_per_second <= 0:
        return None
    return Limiter(pacing_rates(requests_per_second))
