"""Dagster resource wrapping the Gladly client; credentials only through `dagster.EnvVar`."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from migration_pipeline.sources.gladly.client import GladlyClient


class GladlyResource(dg.ConfigurableResource):
    """Gladly REST API access. `base_url` is the host root; the client appends /api/v1."""

    base_url: str = Field(description="Host root, e.g. https://acme.gladly.com (GLADLY_BASE_URL)")
    api_user: str = Field(description="The API user's email address (GLADLY_API_USER)")
    api_token: str = Field(description="API token of that user (GLADLY_API_TOKEN); never logged")
    requests_per_second: float = Field(
        default=9.0, description="Client pacing; Gladly's org-wide budget is 10/s shared by every client"
    )
    timeout_seconds: float = Field(default=60.0, description="Read timeout per request")
    max_attempts: int = Field(default=6, description="Attempts per request on 429/5xx/connection errors")
    backoff_initial_seconds: float = Field(default=0.5, description="First retry wait (exponential, jittered)")
    backoff_max_seconds: float = Field(default=30.0, description="Longest wait between retries")
    throttle_pause_seconds: float = Field(default=1.0, description="Pause after a 429 without Retry-After")

    @contextmanager
    def client(self) -> Iterator[GladlyClient]:
        client = GladlyClient(
            self.base_url,
            self.api_user,
            self.api_token,
            requests_per_second=self.requests_per_second,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
            backoff_initial_seconds=self.backoff_initial_seconds,
            backoff_max_seconds=self.backoff_max_seconds,
            throttle_pause_seconds=self.throttle_pause_seconds,
        )
        try:
            yield client
        finally:
            client.close()
