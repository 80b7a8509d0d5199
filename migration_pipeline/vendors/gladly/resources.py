"""Dagster resource wrapping the Gladly client; credentials only through `dagster.EnvVar`.

Every client it makes draws from one request budget per Gladly organization on the machine
(`lib/budget.py`), so the steps, processes, sensors and retries of every run together stay under
Gladly's org-wide limit, with no Dagster pool to configure.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import Field

from migration_pipeline.lib.budget import default_budget_dir
from migration_pipeline.lib.resources import HttpClientSettings
from migration_pipeline.vendors.gladly.client import GladlyClient


class GladlyResource(HttpClientSettings):
    """Gladly REST API access. `base_url` is the host root; the client appends /api/v1."""

    base_url: str = Field(description="Host root, e.g. https://acme.gladly.com (GLADLY_BASE_URL)")
    api_user: str = Field(description="The API user's email address (GLADLY_API_USER)")
    api_token: str = Field(description="API token of that user (GLADLY_API_TOKEN); never logged")
    requests_per_second: float = Field(
        default=9.0,
        description="Pace of the whole Gladly organization on this machine (Gladly allows 10/s per org): "
        "one budget shared by every client, step, process and retry",
    )
    rate_budget_dir: str | None = Field(
        default=None,
        description="Folder holding that shared budget; every process of the deployment must see the same "
        "one. Default: MIGRATION_DATA_DIR/rate-budgets (else a per-user folder in the temp dir)",
    )

    @contextmanager
    def client(self) -> Iterator[GladlyClient]:
        client = GladlyClient(
            self.base_url,
            self.api_user,
            self.api_token,
            requests_per_second=self.requests_per_second,
            budget_dir=self.rate_budget_dir or default_budget_dir(),
            **self.http_kwargs(),
        )
        try:
            yield client
        finally:
            client.close()
