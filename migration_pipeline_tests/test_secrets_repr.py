"""No secret in a repr, a str, an error or a command line (issue 12, item 12).

Resources are printed by Dagster, debuggers, `rich` and log lines; their repr must name each
field but never show an API key, a token or the password inside a URL. A password given to
`--staging-url` is visible to every user of the machine (`ps`), so the CLI refuses it."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from migration_pipeline.cli import app
from migration_pipeline.resources import build_resources
from migration_pipeline.vendors.gladly.resources import GladlyResource
from migration_pipeline.lib.staging.db import StagingDatabase
from migration_pipeline.lib.staging.resources import StagingResource
from migration_pipeline.vendors.unthread.resources import UnthreadResource

TOKEN = "gladly-token-s3cr3t-0001"
KEY = "unthread-key-s3cr3t-0002"
PASSWORD = "pg-pa55-s3cr3t-0003"
SECRETS = (TOKEN, KEY, PASSWORD)


def _shown(obj: object) -> str:
    return repr(obj) + "\n" + str(obj)


def _assert_hidden(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text


def _gladly(**kw) -> GladlyResource:
    return GladlyResource(**{"base_url": "https://acme.gladly.example", "api_user": "bot@acme.example", "api_token": TOKEN, **kw})


def _unthread(**kw) -> UnthreadResource:
    return UnthreadResource(**{"base_url": "https://api.unthread.example/api", "api_key": KEY, "triage_channel_id": "C0", **kw})


# -- resources ---------------------------------------------------------------------------------
def test_gladly_resource_repr_and_str_hide_the_token():
    resource = _gladly()
    text = _shown(resource)
    _assert_hidden(text)
    assert "api_token=" in text and "bot@acme.example" in text  # still says what is configured


def test_unthread_resource_repr_and_str_hide_the_key():
    resource = _unthread()
    text = _shown(resource)
    _assert_hidden(text)
    assert "api_key=" in text and "C0" in text


def test_staging_resource_repr_and_str_hide_the_password_in_its_url():
    resource = StagingResource(url=f"postgresql://migrator:{PASSWORD}@db.internal:5432/migration_staging")
    text = _shown(resource)
    _assert_hidden(text)
    assert "migrator:***@db.internal:5432/migration_staging" in text


def test_a_password_in_a_vendor_base_url_is_hidden_too():
    text = _shown(_gladly(base_url=f"https://proxy-user:{PASSWORD}@proxy.example/gladly"))
    _assert_hidden(text)
    assert "proxy-user:***@proxy.example/gladly" in text


def test_resources_resolved_from_env_vars_hide_the_values(monkeypatch):
    """What an asset receives at run time: the EnvVar fields resolved to the secrets."""
    monkeypatch.setenv("H12_TOKEN", TOKEN)
    monkeypatch.setenv("H12_KEY", KEY)
    gladly = _gladly(api_token=dg.EnvVar("H12_TOKEN")).process_config_and_initialize()
    unthread = _unthread(api_key=dg.EnvVar("H12_KEY")).process_config_and_initialize()
    assert gladly.api_token == TOKEN and unthread.api_key == KEY
    _assert_hidden(_shown(gladly) + _shown(unthread))


def test_the_definitions_resources_keep_a_staging_password_out_of_dagsters_config(monkeypatch):
    """The staging URL is read through EnvVar like the vendor secrets, so the run snapshot and
    the launchpad show the variable's name, not a password."""
    monkeypatch.setenv("MIGRATION_STAGING_URL", f"postgresql://migrator:{PASSWORD}@db.internal/migration_staging")
    resources = build_resources()
    _assert_hidden("\n".join(_shown(r) for r in resources.values()))
    assert isinstance(resources["staging"].url, dg.EnvVar)
    resolved = resources["staging"].process_config_and_initialize()
    assert PASSWORD in resolved.url
    _assert_hidden(_shown(resolved))


# -- clients and the database handle ----------------------------------------------------------
def test_clients_built_from_the_resources_show_no_secret():
    with _gladly().client() as gladly, _unthread().client() as unthread:
        _assert_hidden(_shown(gladly) + _shown(unthread))


def test_staging_database_repr_hides_the_password(tmp_path):
    db = StagingDatabase(f"postgresql://migrator:{PASSWORD}@127.0.0.1:5432/nowhere")
    try:
        text = _shown(db) + _shown(db.engine)
        _assert_hidden(text)
        assert "migrator:***@127.0.0.1:5432/nowhere" in text
    finally:
        db.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("host", ["127.0.0.1:1", "no-such-host.invalid"], ids=["refused", "unknown-host"])
def test_a_failed_connection_does_not_echo_the_password(host):
    db = StagingDatabase(f"postgresql://migrator:{PASSWORD}@{host}/migration_staging")
    try:
        with pytest.raises(sa.exc.OperationalError) as raised:
            db.create_schema()
    finally:
        db.dispose()
    error = raised.value
    _assert_hidden(f"{error}\n{error!r}\n{error.orig}\n{error.__cause__}")


# -- the command line -------------------------------------------------------------------------
COMMANDS_WITH_STAGING_URL = [
    ["trace", "item-1", "--no-readback"],
    ["split-preview", "--customer", "c-1"],
    ["preflight", "--offline"],
    ["sample"],
    ["dry-run"],
    ["rollback"],
]


@pytest.mark.parametrize("command", COMMANDS_WITH_STAGING_URL, ids=lambda c: c[0])
def test_the_cli_refuses_a_password_on_the_command_line(command):
    url = f"postgresql://migrator:{PASSWORD}@db.internal/migration_staging"
    result = CliRunner().invoke(app, [*command, "--staging-url", url])
    assert result.exit_code == 2, result.output
    assert "MIGRATION_STAGING_URL" in result.output
    assert "password" in result.output
    _assert_hidden(result.output)


@pytest.mark.parametrize(
    "url", ["sqlite:///{tmp}/staging.db", "postgresql://migrator@127.0.0.1:1/migration_staging"], ids=["sqlite", "no-password"]
)
def test_the_cli_takes_a_url_without_a_password(tmp_path, url):
    result = CliRunner().invoke(app, ["trace", "item-1", "--no-readback", "--staging-url", url.format(tmp=tmp_path)])
    assert "--staging-url" not in result.output  # past option parsing: the trace ran (or failed to connect)
    assert result.exit_code != 2, result.output


@pytest.mark.postgres
def test_the_cli_reads_a_password_url_from_the_environment(pg_database, monkeypatch):
    """MIGRATION_STAGING_URL is the way to give a password (the test server trusts loopback, so
    any password logs in)."""
    url = sa.make_url(pg_database).set(password=PASSWORD).render_as_string(hide_password=False)
    db = StagingDatabase(url)
    db.create_schema()
    db.dispose()
    monkeypatch.setenv("MIGRATION_STAGING_URL", url)
    result = CliRunner().invoke(app, ["trace", "item-1", "--no-readback"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output  # typer.Exit, no crash
    assert "item-1" in result.output  # searched the database and did not find it
    _assert_hidden(result.output)
