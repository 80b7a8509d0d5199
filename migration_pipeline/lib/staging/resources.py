"""Dagster resource for the staging database (MIGRATION_STAGING_URL)."""

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import Field

from migration_pipeline.lib.resources import SecretSafeResource
from migration_pipeline.lib.staging.db import StagingDatabase


class StagingResource(SecretSafeResource):
    """The staging database by URL: `sqlite:////abs/path.db` (default) or `postgresql://...`.
    A URL with a password comes from the environment (`dg.EnvVar`), and its repr hides it.
    resources.py fills every field from the settings."""

    url: str = Field(description="SQLAlchemy-style URL of the staging database (MIGRATION_STAGING_URL)")
    sqlite_synchronous: str = Field(
        default="FULL", description="SQLite staging durability: EXTRA, FULL, NORMAL or OFF (MIGRATION_SQLITE_SYNCHRONOUS)"
    )
    split_rules_file: str | None = Field(
        default=None,
        description="Ticket-splitting rules file (MIGRATION_SPLIT_RULES); default the shipped splitting_rules.yaml",
    )

    @contextmanager
    def database(self, namespace: str | None = None) -> Iterator[StagingDatabase]:
        """The staging database; `namespace` is a pair's own tables (see StagingDatabase)."""
        db = StagingDatabase(self.url, namespace, sqlite_synchronous=self.sqlite_synchronous)
        try:
            db.create_schema()
            yield db
        finally:
            db.dispose()
