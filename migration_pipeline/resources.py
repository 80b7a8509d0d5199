"""Resources every stage shares, and the one place that builds them from the environment."""

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from migration_pipeline.sources.gladly.resources import GladlyResource
from migration_pipeline.staging.resources import StagingResource
from migration_pipeline.targets.unthread.resources import UnthreadResource


class MigrationStorage(dg.ConfigurableResource):
    """Where the pipeline keeps files (MIGRATION_DATA_DIR): export archive, landing folder, reports."""

    data_dir: str = Field(description="Root folder for the archive, landing folder and reports")

    @property
    def root(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def landing_dir(self) -> Path:
        """Drop already-downloaded Gladly exports (ZIP or JSONL) here; an equal input to the API."""
        return self.root / "landing" / "gladly"


def default_data_dir() -> str:
    return os.getenv("MIGRATION_DATA_DIR", str(Path("data").resolve()))


def default_staging_url() -> str:
    """MIGRATION_STAGING_URL, or a SQLite file under the data dir (the embedded default)."""
    return os.getenv("MIGRATION_STAGING_URL") or f"sqlite:///{Path(default_data_dir()) / 'staging.db'}"


def staging_url_config() -> str:
    """The staging URL as `defs` configure it: MIGRATION_STAGING_URL as an EnvVar when set (it
    may carry a password, which must not land in Dagster's run config or UI), else the SQLite
    file under the data dir."""
    return dg.EnvVar("MIGRATION_STAGING_URL") if os.getenv("MIGRATION_STAGING_URL") else default_staging_url()


def build_resources() -> dict[str, object]:
    """Resources for `defs`: secrets as EnvVar (resolved at launch, never shown in the UI)."""
    return {
        "storage": MigrationStorage(data_dir=default_data_dir()),
        "staging": StagingResource(url=staging_url_config()),
        "gladly": GladlyResource(
            base_url=dg.EnvVar("GLADLY_BASE_URL"),
            api_user=dg.EnvVar("GLADLY_API_USER"),
            api_token=dg.EnvVar("GLADLY_API_TOKEN"),
            # one budget for the whole org on this machine (Gladly allows 10/s per org)
            requests_per_second=float(os.getenv("GLADLY_REQUESTS_PER_SECOND", "9")),
        ),
        "unthread": UnthreadResource(
            base_url=dg.EnvVar("UNTHREAD_BASE_URL"),
            api_key=dg.EnvVar("UNTHREAD_API_KEY"),
            triage_channel_id=dg.EnvVar("UNTHREAD_TRIAGE_CHANNEL_ID"),
            placeholder_user_id=os.getenv("UNTHREAD_PLACEHOLDER_USER_ID") or None,
            requests_per_second=float(os.getenv("UNTHREAD_REQUESTS_PER_SECOND", "20")),
            customer_mode=os.getenv("UNTHREAD_CUSTOMER_MODE", "per_person"),
            lease_ttl_seconds=float(os.getenv("MIGRATION_LEASE_TTL_SECONDS", "120")),
            email_inbox_id=os.getenv("UNTHREAD_EMAIL_INBOX_ID") or None,
            slack_channel_id=os.getenv("UNTHREAD_SLACK_CHANNEL_ID") or None,
            mappings_file=os.getenv("MIGRATION_MAPPINGS_FILE") or None,
            content_rules_file=os.getenv("MIGRATION_CONTENT_RULES_FILE") or None,
        ),
    }
