"""One settings path (settings.py): the environment is read once, validated, and both the Dagster
definitions and the CLI build their resources from it; the CLI's loads get what the asset's get;
every rules file is checked when it is loaded, naming the file, the field and the reason."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from migration_pipeline.cli import app
from migration_pipeline.lib.content import load_rules
from migration_pipeline.pairs.gladly_to_unthread.mappings import load_mappings
from migration_pipeline.lib.rule_files import RulesFileError, packaged_file
from migration_pipeline.lib.split_rules import SplitRules
from migration_pipeline.pairs.gladly_to_unthread.load_setup import loader_settings
from migration_pipeline.resources import build_resources, gladly_resource, staging_resource, storage_resource, unthread_resource, zendesk_resource
from migration_pipeline.settings import GladlySettings, MigrationSettings, SettingsError, UnthreadSettings, load_settings
from migration_pipeline.lib.staging.db import attachment_transfers, conversation_items, ledger, load_leases, ticket_items, tickets
from sim.synth.dataset import DatasetLayout
from migration_pipeline_tests.conftest import GLADLY_TOKEN, UNTHREAD_KEY
from migration_pipeline_tests.rehearsal import _api_rows
from migration_pipeline_tests.targets.test_review_ops import _cli

TOKEN = "gladly-token-s3tt1ngs-0001"
KEY = "unthread-key-s3tt1ngs-0002"
PASSWORD = "pg-pa55-s3tt1ngs-0003"
ZENDESK_TOKEN = "zendesk-token-s3tt1ngs-0003"
SECRETS = (TOKEN, KEY, PASSWORD, ZENDESK_TOKEN)
GROUPS = (GladlySettings, UnthreadSettings, MigrationSettings)


def _full_environment(tmp_path: Path) -> dict[str, str]:
    """A value for every variable, none of them a default."""
    rules = {}
    for variable, name in (("MIGRATION_SPLIT_RULES", "splitting_rules.yaml"), ("MIGRATION_MAPPINGS_FILE", "mappings.yaml"),
                           ("MIGRATION_CONTENT_RULES_FILE", "content_rules.yaml")):
        rules[variable] = str(tmp_path / name)
        Path(rules[variable]).write_text(Path(packaged_file(name)).read_text(encoding="utf-8"), encoding="utf-8")
    return {
        "GLADLY_BASE_URL": "https://acme.gladly.example", "GLADLY_API_USER": "bot@acme.example", "GLADLY_API_TOKEN": TOKEN,
        "GLADLY_REQUESTS_PER_SECOND": "7.5",
        "UNTHREAD_BASE_URL": "https://api.unthread.example/api", "UNTHREAD_API_KEY": KEY,
        "UNTHREAD_TRIAGE_CHANNEL_ID": "C0TRIAGE", "UNTHREAD_PLACEHOLDER_USER_ID": "U0PLACEHOLDER",
        "UNTHREAD_REQUESTS_PER_SECOND": "15", "UNTHREAD_CUSTOMER_MODE": "single",
        "UNTHREAD_EMAIL_INBOX_ID": "inbox-1", "UNTHREAD_SLACK_CHANNEL_ID": "C0SLACK",
        "MIGRATION_DATA_DIR": str(tmp_path / "data"),
        "MIGRATION_STAGING_URL": f"postgresql://migrator:{PASSWORD}@db.internal:5432/staging",
        "MIGRATION_SQLITE_SYNCHRONOUS": "normal", "MIGRATION_LANDING_MAX_UNZIPPED_BYTES": "1000",
        "MIGRATION_LANDING_MAX_ZIP_RATIO": "50", "MIGRATION_HISTORY_START": "2026-02-01",
        "MIGRATION_LEASE_TTL_SECONDS": "45",
        "ZENDESK_BASE_URL": "https://acme.zendesk.example", "ZENDESK_EMAIL": "bot@acme.example",
        "ZENDESK_API_TOKEN": ZENDESK_TOKEN, "ZENDESK_REQUESTS_PER_MINUTE": "120", "ZENDESK_INCREMENTAL_REQUESTS_PER_MINUTE": "6",
        **rules,
    }


def _fields(resource: dg.ConfigurableResource) -> dict:
    return {name: getattr(resource, name) for name in type(resource).model_fields}


def _shown(obj: object) -> str:
    return repr(obj) + "\n" + str(obj)


def test_every_variable_of_the_readme_is_a_setting():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`((?:GLADLY|UNTHREAD|MIGRATION)_[A-Z_]+)`", table))
    known = {group.env_name(field) for group in GROUPS for field in group.model_fields if field not in ("gladly", "unthread")}
    assert len(documented) > 15 and documented <= known, documented - known


def test_dagster_and_the_cli_build_the_same_resources_from_one_environment(tmp_path, monkeypatch):
    env = _full_environment(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.unthread.email_inbox_id == "inbox-1" and settings.history_start.isoformat() == "2026-02-01"
    assert settings.sqlite_synchronous == "NORMAL" and settings.landing_max_unzipped_bytes == 1000

    dagster = build_resources(settings)
    # in `defs` the credentials, URLs, triage channel and the staging URL are only variable names
    for name, field in [("gladly", "base_url"), ("gladly", "api_user"), ("gladly", "api_token"), ("unthread", "base_url"),
                        ("unthread", "api_key"), ("unthread", "triage_channel_id"), ("staging", "url"),
                        ("zendesk", "base_url"), ("zendesk", "email"), ("zendesk", "api_token")]:
        assert isinstance(getattr(dagster[name], field), dg.EnvVar), (name, field)
    resolved = {name: resource.process_config_and_initialize() for name, resource in dagster.items()}
    cli = {
        "storage": storage_resource(settings),
        "staging": staging_resource(settings, env_vars=False),
        "gladly": gladly_resource(settings, env_vars=False),
        "unthread": unthread_resource(settings, env_vars=False),
        "zendesk": zendesk_resource(settings, env_vars=False),
    }
    for name in cli:
        assert _fields(resolved[name]) == _fields(cli[name]), name
    unthread = _fields(cli["unthread"])
    assert {k: unthread[k] for k in ("base_url", "api_key", "triage_channel_id", "placeholder_user_id", "requests_per_second",
                                     "customer_mode", "lease_ttl_seconds", "email_inbox_id", "slack_channel_id",
                                     "mappings_file", "content_rules_file")} == {
        "base_url": env["UNTHREAD_BASE_URL"], "api_key": KEY, "triage_channel_id": "C0TRIAGE",
        "placeholder_user_id": "U0PLACEHOLDER", "requests_per_second": 15.0, "customer_mode": "single",
        "lease_ttl_seconds": 45.0, "email_inbox_id": "inbox-1", "slack_channel_id": "C0SLACK",
        "mappings_file": env["MIGRATION_MAPPINGS_FILE"], "content_rules_file": env["MIGRATION_CONTENT_RULES_FILE"],
    }
    assert _fields(cli["gladly"])["requests_per_second"] == 7.5 and resolved["staging"].url == env["MIGRATION_STAGING_URL"]
    assert cli["storage"].data_dir == env["MIGRATION_DATA_DIR"]
    assert (_fields(cli["zendesk"])["requests_per_minute"], _fields(cli["zendesk"])["incremental_requests_per_minute"]) == (120.0, 6.0)

    # the loader gets the same settings from either resource: inbox, Slack channel, rules files
    from_dagster, from_cli = loader_settings(resolved["unthread"], "run-1"), loader_settings(cli["unthread"], "run-1")
    assert from_dagster == from_cli
    assert (from_cli.email_inbox_id, from_cli.slack_channel_id, from_cli.content_rules_file) == (
        "inbox-1", "C0SLACK", env["MIGRATION_CONTENT_RULES_FILE"])
    for text in (_shown(settings), *(_shown(r) for r in (*dagster.values(), *resolved.values(), *cli.values()))):
        assert not any(secret in text for secret in SECRETS), text


def test_unset_variables_fall_back_to_the_documented_defaults(tmp_path, monkeypatch):
    for group in GROUPS:
        for field in group.model_fields:
            monkeypatch.delenv(group.env_name(field), raising=False)
    monkeypatch.setenv("UNTHREAD_EMAIL_INBOX_ID", "")  # empty counts as unset (.env.example leaves them empty)
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.staging_database_url == f"sqlite:///{tmp_path / 'data' / 'staging.db'}"
    assert (settings.gladly.requests_per_second, settings.unthread.requests_per_second, settings.lease_ttl_seconds) == (9, 20, 120)
    assert settings.unthread.customer_mode == "per_person" and settings.unthread.email_inbox_id is None
    assert not isinstance(build_resources(settings)["staging"].url, dg.EnvVar)  # no variable to defer to
    with pytest.raises(SettingsError, match="set GLADLY_BASE_URL in the environment"):
        gladly_resource(settings, env_vars=False)
    offline = unthread_resource(settings, env_vars=False, offline=True)  # a dry run needs no credentials
    assert (offline.base_url, offline.api_key, offline.triage_channel_id) == ("", "", "")


def test_bad_settings_are_refused_together_by_variable_without_their_values(tmp_path, monkeypatch):
    bad = {
        "GLADLY_BASE_URL": f"ftp://proxy:{PASSWORD}@gladly.example", "GLADLY_REQUESTS_PER_SECOND": "0",
        "UNTHREAD_CUSTOMER_MODE": "everyone", "UNTHREAD_REQUESTS_PER_SECOND": "fast",
        "MIGRATION_STAGING_URL": f"mysql://migrator:{PASSWORD}@db.internal/staging", "MIGRATION_LEASE_TTL_SECONDS": "-1",
        "MIGRATION_MAPPINGS_FILE": str(tmp_path / "missing.yaml"), "MIGRATION_SQLITE_SYNCHRONOUS": "sometimes",
        "MIGRATION_PAIR": "zendesk_to_unthread",
    }
    for name, value in bad.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    for name in bad:
        assert f"{name}: " in message, (name, message)
    assert PASSWORD not in message and "must be an http:// or https:// URL" in message
    result = CliRunner().invoke(app, ["dry-run"])
    assert result.exit_code == 2 and "MIGRATION_STAGING_URL" in result.output and PASSWORD not in result.output


# -- --pair ------------------------------------------------------------------------------------
def test_the_pair_is_a_validated_choice_of_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MIGRATION_DATA_DIR", str(tmp_path))
    refused = CliRunner().invoke(app, ["--pair", "zendesk_to_unthread", "rollback", "--sample"])
    assert refused.exit_code == 2 and "gladly_to_unthread" in refused.output
    chosen = CliRunner().invoke(app, ["--pair", "gladly_to_unthread", "rollback", "--sample"])
    assert chosen.exit_code == 0 and "nothing in the ledger to delete" in chosen.output, chosen.output
    monkeypatch.setenv("MIGRATION_PAIR", "zendesk_to_unthread")  # the command line wins over the variable
    assert CliRunner().invoke(app, ["--pair", "gladly_to_unthread", "rollback", "--sample"]).exit_code == 0
    assert "MIGRATION_PAIR" in CliRunner().invoke(app, ["rollback", "--sample"]).output


# -- rules files --------------------------------------------------------------------------------
def _edited(tmp_path: Path, name: str, edit) -> Path:
    document = yaml.safe_load(Path(packaged_file(name)).read_text(encoding="utf-8"))
    edit(document)
    path = tmp_path / f"bad-{name}"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


BAD_RULES = {
    "mappings": ("mappings.yaml", lambda d: d["status"].update(OPEN="resolved"), load_mappings,
                 "status.OPEN: Value error, status targets must be one of", "MIGRATION_MAPPINGS_FILE"),
    "mappings typo": ("mappings.yaml", lambda d: d.update(channel_type=d.pop("channel_types")), load_mappings,
                      "channel_type: Extra inputs are not permitted", "MIGRATION_MAPPINGS_FILE"),
    "content rules": ("content_rules.yaml", lambda d: d["quote"]["cut_from_text"][1].update(pattern="(From: "), load_rules,
                      "quote.cut_from_text.1.pattern: Value error, not a valid regular expression", "MIGRATION_CONTENT_RULES_FILE"),
    "content selector": ("content_rules.yaml", lambda d: d["signature"]["remove_selectors"][0].update(css="div[class"),
                         load_rules, "signature.remove_selectors.0.css: Value error, not a valid CSS selector",
                         "MIGRATION_CONTENT_RULES_FILE"),
    "splitting rules": ("splitting_rules.yaml", lambda d: d["rules"]["time_gap"].update(days=0), SplitRules.load,
                        "rules.time_gap.days: Input should be greater than 0", "MIGRATION_SPLIT_RULES"),
}


@pytest.mark.parametrize("case", list(BAD_RULES))
def test_a_bad_rules_file_is_refused_naming_the_file_the_field_and_the_reason(case, tmp_path, monkeypatch):
    name, edit, load, problem, variable = BAD_RULES[case]
    path = _edited(tmp_path, name, edit)
    with pytest.raises(RulesFileError) as raised:
        load(path)
    assert f" {path}: " in str(raised.value) and problem in str(raised.value), str(raised.value)
    # given in the environment, the settings refuse it (and so every command and `defs`)
    monkeypatch.setenv(variable, str(path))
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert f"{variable}: " in str(raised.value) and str(path) in str(raised.value) and problem in str(raised.value)


def test_shipped_rules_files_load():
    assert load_mappings(packaged_file("mappings.yaml")).version == load_mappings().version
    assert load_rules(packaged_file("content_rules.yaml")).version == load_rules().version
    assert SplitRules.load(packaged_file("splitting_rules.yaml")).rule_version == SplitRules.load().rule_version


# -- the CLI's load is the asset's load ------------------------------------------------------------
@pytest.mark.parametrize("migrated", ["sqlite"], indirect=True)
def test_cli_sample_uses_the_inbox_slack_channel_rules_and_transcripts_like_the_asset(migrated, unthread_server_factory, tmp_path):
    """The migrated staging database with its load forgotten, sampled by the real CLI into a fresh
    Unthread workspace: email tickets go to the email inbox, chat ones (mapped to slack by a rules
    file) to the Slack channel, and phone calls carry Gladly's voice transcript."""
    r = migrated
    db = r.db()
    try:
        with db.begin() as conn:
            for table in (ledger, load_leases, attachment_transfers):
                conn.execute(table.delete())
    finally:
        db.dispose()
    fresh = unthread_server_factory(r.workspace, name="fresh")
    mappings = _edited(tmp_path, "mappings.yaml",
                       lambda d: d.update(version="chat-to-slack", channel_types={**d["channel_types"], "chat": "slack"}))
    inbox, slack = r.workspace["emailInboxes"][0]["id"], r.workspace["slackChannels"][0]["id"]
    proc = _cli(["--pair", "gladly_to_unthread", "sample", "--customers", "3"], r, UNTHREAD_BASE_URL=f"{fresh.url}/api",
                UNTHREAD_EMAIL_INBOX_ID=inbox, UNTHREAD_SLACK_CHANNEL_ID=slack, MIGRATION_MAPPINGS_FILE=str(mappings))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not any(secret in proc.stdout + proc.stderr for secret in (GLADLY_TOKEN, UNTHREAD_KEY))

    with httpx.Client(base_url=fresh.url, headers={"X-Api-Key": UNTHREAD_KEY}, timeout=60) as client:
        conversations = _api_rows(client, "/conversations/list", {})
        text = "\n".join(m.get("text") or "" for c in conversations
                         for m in _api_rows(client, f"/conversations/{c['id']}/messages/list", {}))
    db = r.db()
    try:
        with db.engine.connect() as conn:
            first_channel = dict(conn.execute(
                sa.select(tickets.c.ticket_id, conversation_items.c.channel)
                .join(conversation_items, conversation_items.c.source_id == tickets.c.first_item_id)).all())
            calls = set(conn.execute(
                sa.select(conversation_items.c.source_id)
                .join(ticket_items, ticket_items.c.item_id == conversation_items.c.source_id)
                .where(conversation_items.c.source_kind == "PHONE_CALL",
                       ticket_items.c.ticket_id.in_([c["metadata"]["gladlyTicketId"] for c in conversations]))).scalars())
    finally:
        db.dispose()
    by_type: dict[str, list[dict]] = {}
    for c in conversations:
        by_type.setdefault(c["sourceType"], []).append(c)
        assert c["metadata"]["mappingVersion"] == load_mappings(mappings).version
    assert {first_channel[c["metadata"]["gladlyTicketId"]] for c in by_type["slack"]} == {"chat"}
    assert all(c["channelId"] == slack for c in by_type["slack"])
    assert by_type["email"] and all(c["emailInboxId"] == inbox for c in by_type["email"])
    assert {first_channel[c["metadata"]["gladlyTicketId"]] for c in by_type["email"]} == {"email"}
    transcripts = [t for t in map(json.loads, DatasetLayout(r.dataset).transcripts.read_text(encoding="utf-8").splitlines())
                   if t["itemId"] in calls]
    assert transcripts, "the sampled customers should have a transcribed call"
    for transcript in transcripts:
        for paragraph in transcript["paragraphs"]:
            assert f"**{paragraph['speaker'].title()}:** {paragraph['transcript']}" in text
