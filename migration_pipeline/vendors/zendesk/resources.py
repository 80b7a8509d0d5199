"""Dagster resource wrapping the Zendesk client; the token only through `dagster.EnvVar`."""

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import Field

from migration_pipeline.lib.resources import HttpClientSettings
from migration_pipeline.vendors.zendesk.client import ZendeskClient


class ZendeskResource(HttpClientSettings):
    """Zendesk REST API access (the source's comments and deltas; the full export comes as files).
    `base_url` is the account root; the client appends /api/v2."""

    base_url: str = Field(description="Account root, e.g. https://acme.zendesk.com (ZENDESK_BASE_URL)")
    email: str = Field(description="Email of the agent the API token belongs to (ZENDESK_EMAIL), sent as {email}/token")
    api_token: str = Field(description="API token (ZENDESK_API_TOKEN); never logged")
    requests_per_minute: float = Field(
        default=200.0,
        description="Pace of every call but the incremental export's; keep it under the account's limit "
        "(Zendesk's X-Rate-Limit header shows it; it depends on the plan) less the incremental pace",
    )
    incremental_requests_per_minute: float = Field(
        default=9.0, description="Pace of the incremental ticket export, which Zendesk limits to 10 a minute"
    )

    @property
    def configured(self) -> bool:
        """Whether the API is set up; without it the pair reads the export files only."""
        return bool(self.base_url and self.email and self.api_token)

    @contextmanager
    def client(self) -> Iterator[ZendeskClient]:
        client = ZendeskClient(
            self.base_url,
            self.email,
            self.api_token,
            requests_per_minute=self.requests_per_minute,
            incremental_requests_per_minute=self.incremental_requests_per_minute,
            **self.http_kwargs(),
        )
        try:
            yield client
        finally:
            client.close()
