"""Dagster resource for the staging database (MIGRATION_STAGING_URL)."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from migration_pipeline.staging.db import StagingDatabase


class StagingResource(dg.ConfigurableResource):
    """The staging database by URL: `sqlite:////abs/path.db` (default) or `postgresql://...`."""

    url: str = Field(description="SQLAlchemy-style URL of the staging database (MIGRATION_STAGING_URL)")

    @contextmanager
    def database(self) -> Iterator[StagingDatabase]:
        db = StagingDatabase(self.url)
        try:
            db.create_schema()
            yield db
        finally:
            db.dispose()
