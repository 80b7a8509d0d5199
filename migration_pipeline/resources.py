"""Resources every stage shares, and the one place that builds them: from the settings
(settings.py), for the Dagster definitions and the CLI alike."""

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from migration_pipeline.lib.budget import default_budget_dir
from migration_pipeline.settings import EnvSettings, MigrationSettings, load_settings
from migration_pipeline.vendors.gladly.archive import ZipLimits
from migration_pipeline.vendors.gladly.resources import GladlyResource
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.vendors.unthread.resources import UnthreadResource
from migration_pipeline.vendors.zendesk.resources import ZendeskResource


class MigrationStorage(dg.ConfigurableResource):
    """Where the pipeline keeps files (MIGRATION_DATA_DIR): export archive, landing folder, reports."""

    data_dir: str = Field(description="Root folder for the archive, landing folder and reports")
    landing_max_unzipped_bytes: int = Field(
        default=ZipLimits.max_unzipped_bytes, gt=0,
        description="How far a landing ZIP may inflate in all (MIGRATION_LANDING_MAX_UNZIPPED_BYTES)",
    )
    landing_max_zip_ratio: float = Field(
        default=ZipLimits.max_ratio, gt=0,
        description="Largest uncompressed:compressed ratio of a landing ZIP member (MIGRATION_LANDING_MAX_ZIP_RATIO)",
    )

    @property
    def root(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def landing_dir(self) -> Path:
        """Drop already-downloaded Gladly exports (ZIP or JSONL) here; an equal input to the API."""
        return self.root / "landing" / "gladly"

    def zip_limits(self) -> ZipLimits:
        """How far a landing ZIP may inflate before it is refused (the archive's other limits kept)."""
        return ZipLimits(max_unzipped_bytes=self.landing_max_unzipped_bytes, max_ratio=self.landing_max_zip_ratio)


def build_resources(settings: MigrationSettings | None = None) -> dict[str, dg.ConfigurableResource]:
    """Resources for `defs`, from the settings (default: the environment's). The vendor URLs,
    credentials and triage channel, and MIGRATION_STAGING_URL when set (it may carry a password),
    are `dg.EnvVar`s: resolved when a run starts, never shown in the UI or stored with a run."""
    settings = settings or load_settings()
    return {
        "storage": storage_resource(settings),
        "staging": staging_resource(settings, env_vars=True),
        "gladly": gladly_resource(settings, env_vars=True),
        "unthread": unthread_resource(settings, env_vars=True),
        "zendesk": zendesk_resource(settings, env_vars=True),
    }


# Each builder below serves `defs` (env_vars=True) and the CLI (env_vars=False: values resolved
# from the settings now, a missing one raising MissingSetting with its variable).
def _given(group: EnvSettings, field: str, env_vars: bool, missing: str | None = None) -> Any:
    """The field as a resource takes it: an EnvVar of its variable, or its value (`missing` when
    unset, if given)."""
    if env_vars:
        return dg.EnvVar(group.env_name(field))
    if missing is not None and getattr(group, field) is None:
        return missing
    return group.required(field)


def storage_resource(settings: MigrationSettings) -> MigrationStorage:
    return MigrationStorage(
        data_dir=str(settings.data_dir),
        landing_max_unzipped_bytes=settings.landing_max_unzipped_bytes,
        landing_max_zip_ratio=settings.landing_max_zip_ratio,
    )


def staging_resource(settings: MigrationSettings, *, env_vars: bool) -> StagingResource:
    url = (
        dg.EnvVar(settings.env_name("staging_url"))
        if env_vars and settings.staging_url is not None
        else settings.staging_database_url
    )
    return StagingResource(
        url=url, sqlite_synchronous=settings.sqlite_synchronous, split_rules_file=_text(settings.split_rules)
    )


def gladly_resource(settings: MigrationSettings, *, env_vars: bool) -> GladlyResource:
    gladly = settings.gladly
    return GladlyResource(
        base_url=_given(gladly, "base_url", env_vars),
        api_user=_given(gladly, "api_user", env_vars),
        api_token=_given(gladly, "api_token", env_vars),
        requests_per_second=gladly.requests_per_second,
        rate_budget_dir=_budget_dir(settings),
    )


def _budget_dir(settings: MigrationSettings) -> str | None:
    """MIGRATION_DATA_DIR/rate-budgets when that variable is set; else None, the resource's
    per-user temp folder (the default data dir is each process's working directory's)."""
    return str(default_budget_dir(settings.data_dir)) if "data_dir" in settings.model_fields_set else None


def unthread_resource(settings: MigrationSettings, *, env_vars: bool, offline: bool = False) -> UnthreadResource:
    """`offline`: the resource only carries the load settings and makes no client (a CLI dry run),
    so an unset URL or key is left empty instead of refused. An unset triage channel is left
    empty for the preflight to report."""
    unthread, unset_api = settings.unthread, "" if offline else None
    return UnthreadResource(
        base_url=_given(unthread, "base_url", env_vars, unset_api),
        api_key=_given(unthread, "api_key", env_vars, unset_api),
        triage_channel_id=_given(unthread, "triage_channel_id", env_vars, ""),
        placeholder_user_id=unthread.placeholder_user_id,
        requests_per_second=unthread.requests_per_second,
        customer_mode=unthread.customer_mode,
        lease_ttl_seconds=settings.lease_ttl_seconds,
        email_inbox_id=unthread.email_inbox_id,
        slack_channel_id=unthread.slack_channel_id,
        mappings_file=_text(settings.mappings_file),
        content_rules_file=_text(settings.content_rules_file),
    )


def zendesk_resource(settings: MigrationSettings, *, env_vars: bool) -> ZendeskResource:
    """Optional: without ZENDESK_BASE_URL the pair reads the export files only (empty fields, no
    client; `ZendeskResource.configured` is False), so a file-only migration needs no token."""
    zendesk, unset = settings.zendesk, "" if settings.zendesk.base_url is None else None
    return ZendeskResource(
        base_url=_given(zendesk, "base_url", env_vars and unset is None, unset),
        email=_given(zendesk, "email", env_vars and unset is None, unset),
        api_token=_given(zendesk, "api_token", env_vars and unset is None, unset),
        requests_per_minute=zendesk.requests_per_minute,
        incremental_requests_per_minute=zendesk.incremental_requests_per_minute,
    )


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)
