"""Dagster resource wrapping the Unthread client; the API key only through `dagster.EnvVar`."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

from pydantic import Field

from migration_pipeline.lib.resources import HttpClientSettings
from migration_pipeline.vendors.unthread.client import UnthreadClient


class UnthreadResource(HttpClientSettings):
    """Unthread REST API access and the workspace objects the load needs."""

    base_url: str = Field(description="API base including /api, e.g. https://api.unthread.io/api (UNTHREAD_BASE_URL)")
    api_key: str = Field(description="Service-account key (UNTHREAD_API_KEY); never logged")
    triage_channel_id: str = Field(description="Triage channel the migrated conversations go to (UNTHREAD_TRIAGE_CHANNEL_ID)")
    placeholder_user_id: Optional[str] = Field(
        default=None, description="Unthread user that stands in for Gladly agents with no matching user"
    )
    customer_mode: str = Field(
        default="per_person",
        description="per_person: one Unthread customer per Gladly customer; single: one for all (UNTHREAD_CUSTOMER_MODE)",
    )
    requests_per_second: float = Field(
        default=20.0, description="Client pacing; Unthread publishes no limit, so stay conservative"
    )
    max_attempts: int = Field(default=8, description="Attempts per request on 429/5xx/connection errors")
    max_file_bytes: int = Field(
        default=20 * 1024 * 1024, description="Largest attachment Unthread takes; larger ones are listed, not uploaded"
    )
    lease_ttl_seconds: float = Field(
        default=120.0, description="A crashed run's lease on a ticket expires after this; a restart waits at most that"
    )
    email_inbox_id: Optional[str] = Field(
        default=None,
        description="Unthread email inbox for conversations whose first Gladly item is an email (UNTHREAD_EMAIL_INBOX_ID); "
        "without it they are created in the triage channel",
    )
    slack_channel_id: Optional[str] = Field(
        default=None, description="Slack channel for channels mapped to type slack in the mapping tables (UNTHREAD_SLACK_CHANNEL_ID)"
    )
    mappings_file: Optional[str] = Field(
        default=None,
        description="Override of the status/channel/topic mapping tables (MIGRATION_MAPPINGS_FILE; default: the packaged mappings.yaml)",
    )
    content_rules_file: Optional[str] = Field(
        default=None,
        description="Override of the quote/signature trimming rules (MIGRATION_CONTENT_RULES_FILE; default: the packaged content_rules.yaml)",
    )

    @contextmanager
    def client(self) -> Iterator[UnthreadClient]:
        client = UnthreadClient(
            self.base_url,
            self.api_key,
            requests_per_second=self.requests_per_second,
            **self.http_kwargs(),
        )
        try:
            yield client
        finally:
            client.close()
