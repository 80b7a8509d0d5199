"""Gladly REST client (Export API and the REST reads the migration needs). No Dagster import.

Facts it relies on are in `shared/vendor-apis/gladly-api.md`: HTTP Basic auth (agent email +
API token), an org-wide 10 requests/second budget reported in `Ratelimit-Limit-Second` /
`Ratelimit-Remaining-Second`, bare JSON arrays for lists (no pagination), 301 with `errors[].meta{old,new}` for merged customer profiles, and
export jobs that only the vendor's schedule creates and that vanish after 14 days.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from migration_pipeline.lib.downloads import DownloadedFile as FetchedFile
from migration_pipeline.lib.downloads import FileDownloadError, redact_httpx_logs, redact_url, safe_detail, spool_body
from migration_pipeline.lib.budget import SharedRequestBudget
from migration_pipeline.lib.http import RETRYABLE_STATUS, RetryableStatus, VendorAPIError, VendorHttpClient, tls_context
from migration_pipeline.lib.http import path_segment as segment

API_PREFIX = "/api/v1"
DOWNLOAD_CHUNK = 1 << 16
# Gladly's 303 points at a file host that may redirect again (a CDN, a region): follow a few.
MAX_FILE_REDIRECTS = 5


class _Lenient(BaseModel):
    """Gladly may add fields and enum values without a version change: keep and ignore them."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ExportJobParameters(_Lenient):
    type: str = "CONVERSATIONS"
    start_at: datetime = Field(alias="startAt")
    end_at: datetime = Field(alias="endAt")


class ExportJob(_Lenient):
    id: str
    schedule_id: str | None = Field(default=None, alias="scheduleId")
    status: str
    updated_at: datetime = Field(alias="updatedAt")
    parameters: ExportJobParameters
    files: list[str] = Field(default_factory=list)

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Whether the job's data window [startAt, endAt) intersects [start, end)."""
        return self.parameters.start_at < end and start < self.parameters.end_at


class Agent(_Lenient):
    id: str
    name: str | None = None
    email_address: str | None = Field(default=None, alias="emailAddress")


class Topic(_Lenient):
    id: str
    name: str
    disabled: bool = False
    parent_id: str | None = Field(default=None, alias="parentId")


class CustomerProfile(_Lenient):
    id: str
    name: str | None = None
    emails: list[dict[str, Any]] = Field(default_factory=list)
    phones: list[dict[str, Any]] = Field(default_factory=list)
    custom_attributes: dict[str, Any] = Field(default_factory=dict, alias="customAttributes")
    created_at: datetime | None = Field(default=None, alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")


class TranscriptParagraph(_Lenient):
    transcript: str = ""
    speaker: str | None = None
    start_time: float | None = Field(default=None, alias="startTime")
    end_time: float | None = Field(default=None, alias="endTime")


class VoiceTranscript(_Lenient):
    """GET /conversation-items/{id}/voice-transcript: a call's transcript, paragraph by speaker."""

    paragraphs: list[TranscriptParagraph] = Field(default_factory=list)
    customer_id: str | None = Field(default=None, alias="customerId")
    number_of_speakers: int | None = Field(default=None, alias="numberOfSpeakers")
    language: str | None = None
    created_at: datetime | None = Field(default=None, alias="createdAt")


@dataclass(frozen=True)
class CustomerLookup:
    """The answer to GET customer-profiles/{id}: a profile, a merge redirect, or not found."""

    requested_id: str
    status: Literal["found", "moved", "not_found"]
    profile: CustomerProfile | None = None
    moved_to: str | None = None


@dataclass(frozen=True)
class DownloadedFile:
    """An export file stored byte for byte, with what proves it is whole."""

    path: Path
    bytes: int
    sha256: str
    lines: int


def org_key(base_url: str) -> str:
    """What identifies a Gladly organization's rate budget: the API host (with its port). Gladly
    counts the limit per organization across all of its API users and tokens, so the user is not
    part of it (two users of one org share the budget) and neither is any credential. A regional
    host serving several orgs (`us-1.gladly.com`) makes them share one budget here: slower, never
    over the limit."""
    url = httpx.URL(base_url.strip())
    return f"{url.host}:{url.port}" if url.port else url.host


class GladlyClient(VendorHttpClient):
    """Typed access to the Gladly endpoints the migration uses."""

    vendor = "gladly"

    def __init__(
        self,
        base_url: str,
        api_user: str,
        api_token: str,
        *,
        requests_per_second: float = 9.0,
        budget_dir: str | Path | None = None,
        **kwargs: Any,
    ):
        """With `budget_dir`, `requests_per_second` is the pace of the whole organization on this
        machine: every GladlyClient of the same org given the same folder, in any thread or
        process, draws every attempt from one budget kept there (`lib/budget.py`), and a 429 or
        an exhausted `Ratelimit-Remaining-Second` seen by one holds all of them off. Without it
        the client paces only itself."""
        budget = None
        if budget_dir is not None and requests_per_second and requests_per_second > 0:
            budget = SharedRequestBudget.for_account(budget_dir, self.vendor, org_key(base_url), requests_per_second)
        super().__init__(
            base_url.rstrip("/") + API_PREFIX,
            auth=(api_user, api_token),
            headers={"Accept": "application/json"},
            requests_per_second=requests_per_second,
            shared_budget=budget,
            **kwargs,
        )
        # The file host behind Gladly's 303 gets no credentials: a client of its own (no auth, no
        # default headers), made once (a client per download would build a TLS context per file).
        # It follows the file host's own redirects, at most MAX_FILE_REDIRECTS of them.
        self._file_client = httpx.Client(timeout=self._client.timeout, follow_redirects=True, max_redirects=MAX_FILE_REDIRECTS,
                                         verify=tls_context())
        redact_httpx_logs()  # httpx's request log would print the pre-signed URLs whole

    def close(self) -> None:
        self._file_client.close()
        super().close()

    # Gladly reports the org-wide budget left in this second; other clients of the same org
    # spend it too, so stop for the rest of the second when it runs out.
    def observe_rate_headers(self, response: httpx.Response) -> None:
        remaining = response.headers.get("Ratelimit-Remaining-Second")
        if remaining is not None and remaining.strip().isdigit() and int(remaining) <= 0:
            self.pause_for(1.0 - (datetime.now().timestamp() % 1.0) + 0.02)

    def error_detail(self, response: httpx.Response) -> str:
        parts = []
        for err in error_list(response):
            attr = f"{err['attr']}: " if err.get("attr") else ""
            parts.append(f"{attr}{err.get('code', '')} {err.get('detail', '')}".strip())
        return "; ".join(parts) or response.text[:300]

    # -- export API ------------------------------------------------------------------------
    def list_export_jobs(self, status: str | None = "COMPLETED") -> list[ExportJob]:
        """Jobs of the last 14 days (Gladly keeps no older ones), oldest update first."""
        params = {"status": status} if status else None
        jobs = [ExportJob.model_validate(j) for j in self.request("GET", "/export/jobs", params=params).json()]
        return sorted(jobs, key=lambda j: (j.updated_at, j.id))

    def get_export_job(self, job_id: str) -> ExportJob | None:
        response = self.request("GET", f"/export/jobs/{segment(job_id)}", ok=(404,))
        return None if response.status_code == 404 else ExportJob.model_validate(response.json())

    def download_export_file(self, job_id: str, name: str, dest: Path) -> DownloadedFile:
        """Stream one export file to `dest` byte for byte (never whole in memory).

        A connection that breaks mid-body restarts the download from scratch; the file only
        appears at `dest` once complete, so a crash never leaves a half file that looks whole,
        and the temp file is removed on every failure (a full disk included).
        """
        path = f"/export/jobs/{segment(job_id)}/files/{segment(name)}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Unique per download: two runs archiving the same job at once must not share a temp file.
        partial = dest.with_name(f"{dest.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")

        def attempt() -> DownloadedFile:
            digest, size, lines = hashlib.sha256(), 0, 0
            last = b"\n"
            with self.stream("GET", path) as response, partial.open("wb") as out:
                for chunk in response.iter_raw(DOWNLOAD_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    lines += chunk.count(b"\n")
                    last = chunk[-1:] or last
                out.flush()
                os.fsync(out.fileno())
            if size and last != b"\n":
                lines += 1  # a final line without a newline is still a line
            partial.replace(dest)
            return DownloadedFile(path=dest, bytes=size, sha256=digest.hexdigest(), lines=lines)

        try:
            return self.retrying("GET", path)(attempt)
        except httpx.TransportError as exc:
            raise VendorAPIError(self.vendor, "GET", path, None, f"download kept failing: {exc!r}") from None
        finally:
            # Gone after success (renamed to dest); after any failure, never left behind. A
            # failing unlink must not hide the error that brought us here.
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)

    # -- REST reads ------------------------------------------------------------------------
    def get_customer(self, customer_id: str) -> CustomerLookup:
        response = self.request("GET", f"/customer-profiles/{segment(customer_id)}", ok=(301, 404))
        if response.status_code == 404:
            return CustomerLookup(customer_id, "not_found")
        if response.status_code == 301:
            return CustomerLookup(customer_id, "moved", moved_to=moved_to_id(response))
        return CustomerLookup(customer_id, "found", profile=CustomerProfile.model_validate(response.json()))

    def list_agents(self) -> list[Agent]:
        return [Agent.model_validate(a) for a in self.request("GET", "/agents").json()]

    def list_topics(self) -> list[Topic]:
        return [Topic.model_validate(t) for t in self.request("GET", "/topics").json()]

    def get_organization(self) -> dict[str, Any]:
        return self.request("GET", "/organization").json()

    def voice_transcript(self, item_id: str) -> VoiceTranscript | None:
        """The transcript of a PHONE_CALL / VOICEMAIL item, or None when Gladly has none (404)."""
        response = self.request("GET", f"/conversation-items/{segment(item_id)}/voice-transcript", ok=(404,))
        return None if response.status_code == 404 else VoiceTranscript.model_validate(response.json())

    def download_attachment(
        self, item_id: str, attachment_id: str, *, max_bytes: int | None = None, scratch_dir: Path | None = None
    ) -> FetchedFile:
        """Stream an attachment to an anonymous temp file (under `scratch_dir`), sha256 computed
        on the way; the caller closes the returned file.

        Gladly answers 303 with a pre-signed file URL; that URL (and up to MAX_FILE_REDIRECTS
        more redirects of the file host) is fetched without credentials. 429/5xx and broken
        connections are retried with the client's backoff; whatever still fails raises
        FileDownloadError (FileTooLarge once more than `max_bytes` arrived), whose message shows
        the URL with its query redacted: the signature never reaches a log, a ledger or an event.
        """
        path = f"/conversation-items/{segment(item_id)}/attachments/{segment(attachment_id)}"
        response = self.request("GET", path, ok=(303,))
        location = response.headers.get("Location")
        if not response.is_redirect or not location:
            raise FileDownloadError(self.vendor, "GET", path, response.status_code, "expected a redirect to the file")
        try:
            target = httpx.URL(str(self._client.base_url)).join(location)
        except httpx.InvalidURL:
            raise FileDownloadError(self.vendor, "GET", path, response.status_code, "the redirect's Location is not a URL") from None
        shown = redact_url(target)
        if target.scheme not in ("http", "https"):
            raise FileDownloadError(self.vendor, "GET", shown, response.status_code, "the file URL is not http(s)")
        return self._fetch_file(target, shown, max_bytes, scratch_dir)

    def _fetch_file(self, target: httpx.URL, shown: str, max_bytes: int | None, scratch_dir: Path | None) -> FetchedFile:
        """GET a file URL with no credentials, retried like an API call, body spooled to disk."""
        bare = self._file_client

        def attempt() -> FetchedFile:
            self.stats.bump("requests")
            with bare.stream("GET", target) as file_response:
                status = file_response.status_code
                if status in RETRYABLE_STATUS:
                    self.stats.bump("throttled" if status == 429 else "server_errors")
                    raise RetryableStatus(file_response)
                if status >= 300:  # a 3xx left over is a redirect beyond what httpx follows
                    raise FileDownloadError(self.vendor, "GET", shown, status, "the file host refused it (not retried)")
                return spool_body(file_response, vendor=self.vendor, shown=shown, max_bytes=max_bytes, scratch_dir=scratch_dir)

        try:
            return self.retrying("GET", shown)(attempt)
        except RetryableStatus as exc:
            detail = f"the file host still answered {exc.response.status_code} after {self.max_attempts} attempts"
            raise FileDownloadError(self.vendor, "GET", shown, exc.response.status_code, detail) from None
        except httpx.TooManyRedirects:
            raise FileDownloadError(self.vendor, "GET", shown, None, f"more than {MAX_FILE_REDIRECTS} redirects") from None
        except httpx.TransportError as exc:
            detail = f"the file host kept failing after {self.max_attempts} attempts ({safe_detail(exc, target)})"
            raise FileDownloadError(self.vendor, "GET", shown, None, detail) from None
        except httpx.HTTPError as exc:  # e.g. a body that does not decode
            raise FileDownloadError(self.vendor, "GET", shown, None, safe_detail(exc, target)) from None

    # -- conversation writes (cutover: close what was migrated) ------------------------------
    def get_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        """The Conversation (`status` OPEN / WAITING / CLOSED, `topicIds`), or None on 404."""
        response = self.request("GET", f"/conversations/{segment(conversation_id)}", ok=(404,))
        return None if response.status_code == 404 else response.json()

    def close_conversation(self, conversation_id: str, force: bool = False) -> None:
        """PATCH status CLOSED (204); safe to repeat. Gladly's refusals (400 invalid_state: topics
        required, customer waiting unless `force`; 404) raise VendorAPIError with its message."""
        body = {"status": {"value": "CLOSED", "force": force}}
        self.request("PATCH", f"/conversations/{segment(conversation_id)}", json=body)

    def add_topics(self, conversation_id: str, topic_ids: list[str]) -> None:
        """POST topics (204); topics already on the conversation are ignored, so safe to repeat."""
        self.request("POST", f"/conversations/{segment(conversation_id)}/topics", json={"topicIds": list(topic_ids)})


def error_list(response: httpx.Response) -> list[dict[str, Any]]:
    """Gladly's `errors` entries; some documented 404s use a single object instead of the array."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return []
    if isinstance(errors, dict):
        errors = [errors]
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def moved_to_id(response: httpx.Response) -> str | None:
    for err in error_list(response):
        meta = err.get("meta")
        if isinstance(meta, dict) and meta.get("new"):
            return str(meta["new"])
    return None
