"""Every setting of the pipeline (README, Configuration), read from the environment once and
validated: the Dagster definitions and the CLI both build their resources from this one object
(resources.py), so the two cannot drift apart.

Credentials and the staging URL (which may carry a password) are `SecretStr`: the repr and str of
the settings show `**********`, and a validation error names the variable, never its value.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, FilePath, PositiveFloat, PositiveInt, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    """Settings that cannot be used; each problem is named by its environment variable."""


class MissingSetting(SettingsError):
    """A variable the command at hand needs is not set."""


class MigrationPair(StrEnum):
    """The source and target a migration runs between; a new pair adds a value here."""

    gladly_to_unthread = "gladly_to_unthread"
    zendesk_to_gladly = "zendesk_to_gladly"


# -- value checks (their messages never repeat the value: it may be a secret) ------------------------
def _http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        host = None
    if host is None or parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


def _database_url(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    import sqlalchemy as sa

    try:
        backend = sa.make_url(value.get_secret_value()).get_backend_name()
    except (sa.exc.ArgumentError, ValueError):
        backend = None
    if backend not in ("sqlite", "postgresql"):
        raise ValueError("must be sqlite:////abs/path.db or postgresql://user:password@host:5432/db")
    return value


# A rules file given in the environment is loaded with the settings, so a bad one is refused (file,
# field path, reason) before anything runs. The rule modules are imported late: they are heavy.
def _split_rules(path: Path | None) -> Path | None:
    if path is not None:
        from migration_pipeline.lib.split_rules import SplitRules

        SplitRules.load(path)
    return path


def _mappings(path: Path | None) -> Path | None:
    if path is not None:
        from migration_pipeline.pairs.gladly_to_unthread.mappings import load_mappings

        load_mappings(path)
    return path


def _content_rules(path: Path | None) -> Path | None:
    if path is not None:
        from migration_pipeline.lib.content import load_rules

        load_rules(path)
    return path


def _zip_limit(name: str):
    def default() -> Any:
        from migration_pipeline.vendors.gladly.archive import ZipLimits

        return getattr(ZipLimits, name)

    return default


HttpUrl = Annotated[str, AfterValidator(_http_url)]
SqliteSynchronous = Annotated[
    Literal["EXTRA", "FULL", "NORMAL", "OFF"], BeforeValidator(lambda v: v.strip().upper() if isinstance(v, str) else v)
]


class EnvSettings(BaseSettings):
    """Settings read from variables named `<env_prefix><FIELD>`; empty variables count as unset."""

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore", hide_input_in_errors=True)

    @classmethod
    def env_name(cls, field: str) -> str:
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()

    @classmethod
    def from_env(cls, **values: Any) -> Self:
        """The settings from the environment (`values` replace fields); `SettingsError` naming
        every bad variable otherwise."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise SettingsError(
                "; ".join(
                    f"{cls.env_name(str(e['loc'][0])) if e['loc'] else cls.__name__}: {e['msg']}" for e in exc.errors()
                )
            ) from None

    def required(self, field: str) -> Any:
        """The field's value (a secret unwrapped), or `MissingSetting` naming its variable."""
        value = getattr(self, field)
        if value is None:
            raise MissingSetting(f"set {self.env_name(field)} in the environment")
        return value.get_secret_value() if isinstance(value, SecretStr) else value


class GladlySettings(EnvSettings):
    """The source, Gladly's REST API (GLADLY_*). Unset values are only an error where a command
    needs them: `defs` reads them through `dg.EnvVar` when a run starts."""

    model_config = SettingsConfigDict(env_prefix="GLADLY_")

    base_url: HttpUrl | None = Field(default=None, description="Host root, e.g. https://acme.gladly.com (the client appends /api/v1)")
    api_user: str | None = Field(default=None, description="The API user's email address")
    api_token: SecretStr | None = Field(default=None, description="API token of that user")
    requests_per_second: PositiveFloat = Field(
        default=9.0, description="Pace of the whole Gladly organization on this machine (Gladly allows 10/s per org)"
    )


class UnthreadSettings(EnvSettings):
    """The target, Unthread's REST API and the workspace objects the load uses (UNTHREAD_*)."""

    model_config = SettingsConfigDict(env_prefix="UNTHREAD_")

    base_url: HttpUrl | None = Field(default=None, description="API base including /api, e.g. https://api.unthread.io/api")
    api_key: SecretStr | None = Field(default=None, description="Service-account key")
    triage_channel_id: str | None = Field(default=None, description="Triage channel the conversations are created in")
    placeholder_user_id: str | None = Field(default=None, description="User that posts for agents without an Unthread account")
    requests_per_second: PositiveFloat = Field(default=20.0, description="Client pacing (Unthread's limit is undocumented)")
    customer_mode: Literal["per_person", "single"] = Field(
        default="per_person", description="per_person: one Unthread customer per Gladly customer; single: one for all"
    )
    email_inbox_id: str | None = Field(default=None, description="Inbox for conversations mapped to type email")
    slack_channel_id: str | None = Field(default=None, description="Slack channel for conversations mapped to type slack")


class ZendeskSettings(EnvSettings):
    """The source Zendesk's API (ZENDESK_*): comments and deltas; the full export comes as files."""

    model_config = SettingsConfigDict(env_prefix="ZENDESK_")

    base_url: HttpUrl | None = Field(default=None, description="Account root, e.g. https://acme.zendesk.com (the client appends /api/v2)")
    email: str | None = Field(default=None, description="Email of the agent the API token belongs to (sent as {email}/token)")
    api_token: SecretStr | None = Field(default=None, description="API token (secret)")
    requests_per_minute: PositiveFloat = Field(
        default=200.0, description="Pace of every Zendesk call but the incremental export's; keep under the account's X-Rate-Limit"
    )
    incremental_requests_per_minute: PositiveFloat = Field(
        default=9.0, description="Pace of the incremental ticket export (Zendesk allows 10/min)"
    )


class HistorySettings(EnvSettings):
    """MIGRATION_HISTORY_START on its own: the daily partitions are built when partitions.py is
    imported, before anything loads the whole settings (see `history_start`)."""

    model_config = SettingsConfigDict(env_prefix="MIGRATION_")

    history_start: date = Field(default=date(2026, 1, 1), description="First UTC day of the daily partitions")


class MigrationSettings(HistorySettings):
    """The pipeline's own settings (MIGRATION_*) and the two vendors'. Build it with
    `load_settings()`, which reports every bad variable at once."""

    model_config = SettingsConfigDict(env_prefix="MIGRATION_")

    pair: MigrationPair = Field(default=MigrationPair.gladly_to_unthread, description="Source and target of the migration")
    data_dir: Path = Field(default_factory=lambda: Path("data").resolve(), description="Export archive, landing folder, reports")
    staging_url: Annotated[SecretStr | None, AfterValidator(_database_url)] = Field(
        default=None, description="Staging database URL (default: staging.db in the data dir); may carry a password"
    )
    sqlite_synchronous: SqliteSynchronous = Field(default="FULL", description="SQLite staging durability")
    landing_max_unzipped_bytes: PositiveInt = Field(
        default_factory=_zip_limit("max_unzipped_bytes"), description="How far a landing ZIP may inflate in all"
    )
    landing_max_zip_ratio: PositiveFloat = Field(
        default_factory=_zip_limit("max_ratio"), description="Largest uncompressed:compressed ratio of a landing ZIP member"
    )
    lease_ttl_seconds: PositiveFloat = Field(default=120.0, description="How long a crashed run's lease blocks a restart")
    max_quarantine_rate: float = Field(
        default=0.01, ge=0, le=1, description="Share of a window's export lines that may be quarantined (and not accepted) before staging's check stops the run"
    )
    split_rules: Annotated[FilePath | None, AfterValidator(_split_rules)] = Field(
        default=None, description="Ticket-splitting rules file (default: the shipped splitting_rules.yaml)"
    )
    mappings_file: Annotated[FilePath | None, AfterValidator(_mappings)] = Field(
        default=None, description="Status / channel / topic mapping tables (default: the shipped mappings.yaml)"
    )
    content_rules_file: Annotated[FilePath | None, AfterValidator(_content_rules)] = Field(
        default=None, description="Quote and signature trimming rules (default: the shipped content_rules.yaml)"
    )
    gladly: GladlySettings = Field(default_factory=GladlySettings)
    unthread: UnthreadSettings = Field(default_factory=UnthreadSettings)
    zendesk: ZendeskSettings = Field(default_factory=ZendeskSettings)

    @property
    def staging_database_url(self) -> str:
        """MIGRATION_STAGING_URL, or the SQLite file in the data dir (the embedded default)."""
        if self.staging_url is not None:
            return self.staging_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'staging.db'}"


def env_names() -> set[str]:
    """Every environment variable the settings read (what a deployment must be able to pass)."""
    groups = (GladlySettings, UnthreadSettings, ZendeskSettings, MigrationSettings)
    return {group.env_name(field) for group in groups for field in group.model_fields if field not in ("gladly", "unthread", "zendesk")}


def history_start() -> date:
    """The first day of the daily partitions (MIGRATION_HISTORY_START), validated like every
    setting; for partitions.py, whose definition is built at import."""
    try:
        return HistorySettings.from_env().history_start
    except SettingsError as exc:
        raise SettingsError(f"invalid settings: {exc}") from None


def load_settings(**overrides: Any) -> MigrationSettings:
    """The settings from the environment (`overrides` replace MIGRATION_* fields, e.g. the CLI's
    `--pair`). `SettingsError` lists every bad variable of the three groups at once."""
    problems: list[str] = []
    vendors: dict[str, EnvSettings] = {}
    for field, model in (("gladly", GladlySettings), ("unthread", UnthreadSettings), ("zendesk", ZendeskSettings)):
        try:
            vendors[field] = model.from_env()
        except SettingsError as exc:
            problems.append(str(exc))
            vendors[field] = model.model_construct()  # a stand-in, so the MIGRATION_* problems are listed too
    try:
        settings = MigrationSettings.from_env(**vendors, **overrides)
    except SettingsError as exc:
        problems.append(str(exc))
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    return settings
