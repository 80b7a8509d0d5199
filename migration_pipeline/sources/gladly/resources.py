"""Dagster resource wrapping the Gladly client; credentials only through `dagster.EnvVar`."""

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import Field

from migration_pipeline.core.resources import HttpClientSettings
from migration_pipeline.sources.gladly.client import GladlyClient


class GladlyResource(HttpClientSettings):
    """Gladly REST API access. `base_url` is the host root; the client appends /api/v1."""

    base_url: str = Field(description="Host root, e.g. https://acme.gladly.com (GLADLY_BASE_URL)")
    api_user: str = Field(description="The API user's email address (GLADLY_API_USER)")
    api_token: str = Field(description="API token of that user (GLADLY_API_TOKEN); never logged")
    requests_per_second: float = Field(
        default=9.0, description="Client pacing; Gladly's org-wide budget is 10/s shared by every client"
    )

    @contextmanager
    def client(self) -> Iterator[GladlyClient]:
        client = GladlyClient(
            self.base_url,
            self.api_user,
            self.api_token,
            requests_per_second=self.requests_per_second,
            **self.http_kwargs(),
        )
        try:
            yield client
        finally:
            client.close()
