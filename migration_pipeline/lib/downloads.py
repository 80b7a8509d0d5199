"""Source files fetched from pre-signed URLs: streamed to disk, size-capped, never a secret in a message.

A vendor hands out attachment URLs whose query string is the credential (an S3-style signature),
so such a URL is shown everywhere with its query replaced by `<redacted>`: in exceptions, ledger
errors, logs (also httpx's own request log lines) and Dagster events.

The errors here are `VendorAPIError`s that are not retryable by the loader's create loop: the
download was already retried with the client's backoff, and nothing was sent to the target, so
the message is dead-lettered (ledger `failed`) and the next run tries again. No Dagster import.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from migration_pipeline.lib.http import VendorAPIError

REDACTED = "<redacted>"
# A URL and its query; an already redacted query (`?<redacted>`) does not match again.
_URL_QUERY = re.compile(r"""(?i)\b((?:https?|wss?)://[^\s?#'"<>]*)\?[^\s#'"<>]+""")


def redact_url(url: str | httpx.URL) -> str:
    """The URL without what may grant access: query replaced, user info and fragment dropped."""
    try:
        parsed = httpx.URL(str(url))
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<unparseable URL>"
    shown = parsed.copy_with(query=None, fragment=None, username=None, password=None)
    return f"{shown}?{REDACTED}" if parsed.query else str(shown)


def redact_urls_in(text: str) -> str:
    """`text` with the query of every http(s) URL in it redacted (for messages built elsewhere)."""
    return _URL_QUERY.sub(lambda m: f"{m.group(1)}?{REDACTED}", text)


class FileDownloadError(VendorAPIError):
    """A source file that could not be fetched: permanent (404/403/410...), still failing after
    the client's retries, or refused by the file host. The message names the file and the URL
    with its query redacted."""

    @property
    def retryable(self) -> bool:
        return False


class FileTooLarge(FileDownloadError):
    """More bytes arrived (or were announced) than the target accepts; reading stopped there."""

    def __init__(self, vendor: str, path: str, received: int, limit: int):
        self.received, self.limit = received, limit
        super().__init__(vendor, "GET", path, None, f"over the {limit}-byte file limit ({received}+ bytes on the wire)")


@dataclass
class DownloadedFile:
    """A fetched file in an anonymous temp file (no name on disk: nothing left after a crash),
    positioned at its start. Whoever receives it closes it."""

    file: IO[bytes]
    bytes: int
    sha256: str

    def close(self) -> None:
        self.file.close()

    @classmethod
    def from_bytes(cls, content: bytes) -> DownloadedFile:
        """For callers that already hold the content (a dry run's empty stand-in)."""
        spool = tempfile.SpooledTemporaryFile()
        spool.write(content)
        spool.seek(0)
        return cls(spool, len(content), hashlib.sha256(content).hexdigest())  # type: ignore[arg-type]


def spool_body(
    response: httpx.Response, *, vendor: str, shown: str, max_bytes: int | None, scratch_dir: Path | None, chunk_size: int = 1 << 16
) -> DownloadedFile:
    """Stream a response body to a temp file under `scratch_dir` (the system temp dir if None),
    hashing as it goes, and stop as soon as more than `max_bytes` arrived (FileTooLarge).
    `shown` is the redacted URL used in errors."""
    declared = response.headers.get("Content-Length", "")
    if max_bytes is not None and declared.isdigit() and int(declared) > max_bytes:
        raise FileTooLarge(vendor, shown, int(declared), max_bytes)
    if scratch_dir is not None:
        scratch_dir.mkdir(parents=True, exist_ok=True)
    out = tempfile.TemporaryFile(dir=scratch_dir)
    try:
        digest, size = hashlib.sha256(), 0
        for chunk in response.iter_bytes(chunk_size):
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise FileTooLarge(vendor, shown, size, max_bytes)
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        out.seek(0)
        return DownloadedFile(out, size, digest.hexdigest())
    except BaseException:
        out.close()
        raise


# httpx logs each request with its URL (INFO); httpcore's DEBUG traces print response headers,
# a redirect's Location included. Logger filters do not apply to child loggers: name each one.
HTTP_LOGGERS = ("httpx", "httpcore", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy", "httpcore.socks")


class _RedactUrlQueries(logging.Filter):
    """Shows every URL in an HTTP library's log line with its query redacted (a pre-signed URL's
    signature is in its query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            redacted = redact_urls_in(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


def redact_httpx_logs() -> None:
    """Install the filter on the HTTP libraries' loggers once per process (idempotent)."""
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactUrlQueries) for f in logger.filters):
            logger.addFilter(_RedactUrlQueries())


def safe_detail(exc: BaseException, *urls: Any) -> str:
    """A short reason for a transport failure, with any URL's query redacted."""
    text = f"{type(exc).__name__}: {exc}"
    for url in urls:
        try:
            query = httpx.URL(str(url)).query.decode("ascii", "replace")
        except (httpx.InvalidURL, TypeError, ValueError):
            continue
        if query:
            text = text.replace(query, REDACTED)
    return redact_urls_in(text)[:300]
