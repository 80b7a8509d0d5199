"""The production deployment files agree with each other (no Docker engine runs here).

docker-compose.yml, the Dockerfile, deploy/dagster.yaml, deploy/workspace.yaml and .env.example
are read as data: services, commands, ports, env names and volumes must line up, and
deploy/dagster.yaml must pass Dagster's own instance-config validation.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from migration_pipeline.settings import env_names as settings_env_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
INSTANCE_YAML = ROOT / "deploy" / "dagster.yaml"
WORKSPACE_YAML = ROOT / "deploy" / "workspace.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
PACKAGE = ROOT / "migration_pipeline"

DAGSTER_SERVICES = ("instance-init", "code-server", "webserver", "daemon")
# Tooling that is not part of a deployed code location: emulators, generator, CLI, rehearsal.
NOT_DEPLOYED = ("emulators", "synth", "cli.py", "demo.py")


# -- readers ---------------------------------------------------------------------------------
def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _services() -> dict:
    return _compose()["services"]


def _command(service: dict) -> list[str]:
    command = service.get("command") or service.get("entrypoint")
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _flag(command: list[str], *names: str) -> str:
    for i, part in enumerate(command):
        if part in names:
            return command[i + 1]
    raise AssertionError(f"none of {names} in {command}")


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            pairs.append((instruction.upper(), rest.strip()))
    return pairs


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, rest in _dockerfile():
        if instruction == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Z_][A-Z0-9_]*)\}?", lambda m: env.get(m.group(1), m.group(0)), value)


def _env_refs(node) -> set[str]:
    """Every `{env: NAME}` in a Dagster config tree."""
    found: set[str] = set()
    if isinstance(node, dict):
        if set(node) == {"env"}:
            found.add(node["env"])
        for value in node.values():
            found |= _env_refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _env_refs(value)
    return found


def _env_example_names() -> set[str]:
    """Names in .env.example, including optional ones left commented out (`# NAME=...`)."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.M))


def _env_example_values() -> dict[str, str]:
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.M))


def _package_env_names() -> set[str]:
    """Env names the deployed code reads: every field of the settings (migration_pipeline/settings.py),
    os.getenv / os.environ / dg.EnvVar literals and `*_ENV = "NAME"` constants, in every module a
    code location imports."""
    patterns = [
        r"os\.getenv\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']",
        r"os\.environ\.get\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']",
        r"os\.environ\[\s*[\"']([A-Z][A-Z0-9_]*)[\"']\s*\]",
        r"EnvVar\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']",
        r"^[A-Z_]*_ENV\s*=\s*[\"']([A-Z][A-Z0-9_]*)[\"']",
    ]
    names: set[str] = set(settings_env_names())  # pydantic-settings: one variable per field
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if any(relative == part or relative.startswith(part + "/") for part in NOT_DEPLOYED):
            continue
        text = path.read_text()
        for pattern in patterns:
            names |= set(re.findall(pattern, text, flags=re.M))
    return names


def _compose_substitutions() -> set[str]:
    text = COMPOSE.read_text().replace("$$", "")
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))


def _service_env_names(service: dict) -> set[str]:
    """What a service's containers get: its env_file (.env, documented by .env.example) plus
    `environment`."""
    names: set[str] = set()
    env_files = service.get("env_file") or []
    env_files = [env_files] if isinstance(env_files, (str, dict)) else env_files
    for entry in env_files:
        path = entry["path"] if isinstance(entry, dict) else entry
        assert Path(path).name == ".env", f"secrets come from .env only, not {path}"
        names |= _env_example_names()
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        names |= {item.partition("=")[0] for item in environment}
    else:
        names |= set(environment)
    return names


# -- compose topology ------------------------------------------------------------------------
def test_compose_has_postgres_code_server_webserver_and_daemon():
    services = _services()
    assert set(services) == {"postgres", *DAGSTER_SERVICES}

    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])

    # One image for all three Dagster services, built from the top-level Dockerfile.
    images = {services[name]["image"] for name in DAGSTER_SERVICES}
    assert len(images) == 1
    for name in DAGSTER_SERVICES:
        build = services[name]["build"]
        assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE

    assert services["instance-init"]["restart"] == "no"
    assert _command(services["daemon"])[:2] == ["dagster-daemon", "run"]
    assert _command(services["webserver"])[0] == "dagster-webserver"


def _published(service: dict) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of every published port, compose's
    `${VAR:-default}` read as its default (what runs when .env leaves VAR unset)."""
    published = []
    for entry in service.get("ports") or []:
        assert isinstance(entry, str), f"use the short syntax with an address: {entry}"
        text = re.sub(r"\$\{[A-Z_][A-Z0-9_]*:-([^}]*)\}", r"\1", entry)
        parts = text.rsplit(":", 2)
        assert len(parts) == 3, f"{entry} publishes on every interface: give a host address"
        published.append((parts[0], parts[1], parts[2]))
    return published


def test_published_ports_bind_to_loopback_unless_configured():
    """The webserver has no authentication: by default only this machine reaches it (put it
    behind an authenticating reverse proxy to share it, README). Nothing else is published."""
    services = _services()
    published = {name: _published(service) for name, service in services.items() if service.get("ports")}
    assert set(published) == {"webserver"}, "only the webserver is published; PostgreSQL stays on the compose network"
    [(address, host_port, container_port)] = published["webserver"]
    assert address == "127.0.0.1"
    assert int(container_port) == int(_flag(_command(services["webserver"]), "-p", "--port"))
    assert host_port == "3000"
    # The address is configurable, and documented where the other settings are.
    assert "${DAGSTER_BIND_ADDRESS:-127.0.0.1}" in services["webserver"]["ports"][0]
    assert "DAGSTER_BIND_ADDRESS" in _env_example_names()


def test_depends_on_waits_for_a_healthy_database_an_initialized_instance_and_a_serving_code_server():
    services = _services()
    assert services["instance-init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["code-server"]
    for name in ("code-server", "webserver", "daemon"):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["instance-init"]["condition"] == "service_completed_successfully"
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"]["code-server"]["condition"] in {"service_healthy", "service_started"}


def test_instance_init_migrates_and_sets_every_pool_the_code_uses():
    """Explicit pool limits: the vendor budget is set, not left to the first run that claims it
    (which races on PostgreSQL, dagster-io/dagster#33552)."""
    import dagster as dg

    from migration_pipeline.definitions import defs

    script = _command(_services()["instance-init"])[-1]
    assert "dagster instance migrate" in script
    explicit = dict(re.findall(r"dagster instance concurrency set (\S+) (\d+)", script))
    used = {a.op.pool for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.op.pool}
    assert used == {"gladly_api", "unthread_api", "zendesk_api"}
    assert {pool: int(limit) for pool, limit in explicit.items()} == {pool: 1 for pool in used}


def test_workspace_grpc_server_matches_the_code_server_command():
    workspace = yaml.safe_load(WORKSPACE_YAML.read_text())
    [entry] = workspace["load_from"]
    grpc = entry["grpc_server"]
    services = _services()
    command = _command(services["code-server"])

    assert command[:3] in (["dagster", "code-server", "start"], ["dagster", "api", "grpc"])
    assert _flag(command, "-m", "--module-name") == "migration_pipeline.definitions"
    assert _flag(command, "-h", "--host") == "0.0.0.0"
    assert int(_flag(command, "-p", "--port")) == int(grpc["port"])
    assert grpc["host"] == "code-server" and grpc["host"] in services
    assert _flag(command, "--location-name") == grpc["location_name"]

    # The code server's health check probes the same port.
    health = [str(p) for p in services["code-server"]["healthcheck"]["test"]]
    assert "grpc-health-check" in health and int(_flag(health, "-p", "--port")) == int(grpc["port"])

    # The image's default command is the same code server.
    [cmd] = [rest for instruction, rest in _dockerfile() if instruction == "CMD"]
    image_command = yaml.safe_load(cmd)
    assert int(_flag(image_command, "-p", "--port")) == int(grpc["port"])
    assert _flag(image_command, "-m", "--module-name") == "migration_pipeline.definitions"


def test_the_image_carries_the_production_instance_and_workspace_in_dagster_home():
    env = _dockerfile_env()
    home = env["DAGSTER_HOME"]
    instructions = _dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(rest for instruction, rest in instructions if instruction == "RUN")
    assert re.search(r"pip install (-e )?\.", runs), "the image installs the project"

    copied: dict[str, str] = {}
    for instruction, rest in instructions:
        if instruction == "COPY" and not rest.startswith("--"):
            *sources, dest = shlex.split(rest)
            dest = _expand(dest, env)
            for source in sources:
                copied[source] = dest.rstrip("/") + "/" + Path(source).name if dest.endswith("/") else dest
    assert copied.get("deploy/dagster.yaml") == f"{home}/dagster.yaml"
    assert copied.get("deploy/workspace.yaml") == f"{home}/workspace.yaml"
    # The SQL models are read from beside the package, so they have to be in the image too.
    assert "dbt_like_sql" in copied

    services = _services()
    for name in ("webserver", "daemon"):
        assert _flag(_command(services[name]), "-w", "--workspace") == f"{home}/workspace.yaml"
    for name in DAGSTER_SERVICES:
        # Nothing overrides DAGSTER_HOME away from the copied instance.
        assert "DAGSTER_HOME" not in (services[name].get("environment") or {})


def test_every_env_var_the_instance_reads_reaches_every_service_that_loads_it():
    instance_env = _env_refs(yaml.safe_load(INSTANCE_YAML.read_text()))
    assert {"DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_HOST", "DAGSTER_PG_DB", "DAGSTER_PG_PORT"} <= instance_env
    services = _services()
    for name in DAGSTER_SERVICES:  # runs execute in the code server, so it loads the instance too
        missing = instance_env - _service_env_names(services[name])
        assert not missing, f"{name} lacks {sorted(missing)}"
    # The database service is created with the same credentials the instance logs in with.
    postgres_env = services["postgres"]["environment"]
    assert "DAGSTER_PG_USERNAME" in postgres_env["POSTGRES_USER"]
    assert "DAGSTER_PG_PASSWORD" in postgres_env["POSTGRES_PASSWORD"]
    assert "DAGSTER_PG_DB" in postgres_env["POSTGRES_DB"]
    for name in DAGSTER_SERVICES:
        assert services[name]["environment"]["DAGSTER_PG_HOST"] == "postgres"


def test_the_code_server_has_every_setting_the_pipeline_reads():
    missing = _package_env_names() - _service_env_names(_services()["code-server"])
    assert not missing, f"code-server (where runs execute) lacks {sorted(missing)}"


def test_volumes_are_declared_and_hold_the_data_dir_and_the_database():
    compose = _compose()
    declared = set(compose.get("volumes") or {})
    mounts: dict[str, dict[str, str]] = {}
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source, target = volume.split(":")[:2]
            mounts.setdefault(name, {})[target] = source
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source}"
    assert mounts["postgres"]["/var/lib/postgresql/data"] in declared

    data_dir = _env_example_values()["MIGRATION_DATA_DIR"]
    assert mounts["code-server"][data_dir] in declared
    assert _dockerfile_env()["MIGRATION_DATA_DIR"] == data_dir
    # The init script that creates the staging database is in the repository.
    for source in mounts["postgres"].values():
        if source.startswith("./"):
            assert (ROOT / source).exists(), source

    staging_db = _env_example_values()["MIGRATION_STAGING_URL"].rsplit("/", 1)[-1]
    assert f"CREATE DATABASE {staging_db}" in (ROOT / "deploy" / "postgres-init.sql").read_text()


def test_env_example_lists_every_variable_compose_the_instance_and_the_code_read():
    needed = (
        _env_refs(yaml.safe_load(INSTANCE_YAML.read_text()))
        | _compose_substitutions()
        | _package_env_names()
    )
    assert {"GLADLY_BASE_URL", "GLADLY_API_TOKEN", "UNTHREAD_API_KEY", "MIGRATION_STAGING_URL"} <= needed
    missing = needed - _env_example_names()
    assert not missing, f".env.example lacks {sorted(missing)}"
    # No secret values in the committed example.
    values = _env_example_values()
    for secret in ("GLADLY_API_TOKEN", "UNTHREAD_API_KEY"):
        assert values[secret] == ""


def test_dot_env_is_never_committed_nor_baked_into_the_image():
    ignore_lines = {line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()}
    assert ignore_lines & {".env", "/.env"}
    if shutil.which("git") and (ROOT / ".git").exists():
        assert subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT).returncode == 0
        assert subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=ROOT).returncode == 1
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_top_level_instance_stays_the_embedded_sqlite_default():
    local = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert "storage" not in local and "run_storage" not in local
    assert local["concurrency"]["pools"]["default_limit"] == 1
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["python_module"]["module_name"] == "migration_pipeline.definitions"


# -- Dagster's own validation ----------------------------------------------------------------
PG_ENV = {
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "secret",
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_PORT": "5432",
}


def _validated(home: Path) -> dict:
    from dagster._core.instance.config import dagster_instance_config

    config, _ = dagster_instance_config(str(home))
    return config


def test_instance_yaml_passes_dagsters_config_schema(tmp_path, monkeypatch):
    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    shutil.copy(INSTANCE_YAML, tmp_path / "dagster.yaml")
    config = _validated(tmp_path)
    # Every connection setting is an env reference, resolved by each process that loads it.
    assert config["storage"]["postgres"]["postgres_db"] == {
        "username": {"env": "DAGSTER_PG_USERNAME"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "scheme": "postgresql+psycopg2",
    }
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= 1
    assert config["run_retries"] == {"enabled": True, "max_retries": config["run_retries"]["max_retries"], "retry_on_asset_or_op_failure": False}
    assert config["run_retries"]["max_retries"] >= 1
    assert config["telemetry"] == {"enabled": False}


@pytest.mark.parametrize(
    "typo",
    [
        ("\n  pools:\n", "\n  pool:\n"),
        ("retry_on_asset_or_op_failure: false", "retry_on_asset_or_op_failures: false"),
        ("hostname:", "host:"),
    ],
)
def test_a_typo_in_the_instance_yaml_fails_validation(tmp_path, monkeypatch, typo):
    from dagster._core.errors import DagsterInvalidConfigError

    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    old, new = typo
    text = INSTANCE_YAML.read_text()
    assert old in text
    (tmp_path / "dagster.yaml").write_text(text.replace(old, new, 1))
    with pytest.raises(DagsterInvalidConfigError):
        _validated(tmp_path)


@pytest.mark.postgres
def test_instance_yaml_loads_a_postgres_instance(tmp_path, monkeypatch, pg_database):
    """Loaded for real against the local PostgreSQL: the storages, coordinator and pool limits
    Dagster builds from the file."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef
    from sqlalchemy.engine import make_url

    url = make_url(pg_database)
    env = {
        "DAGSTER_PG_USERNAME": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_DB": url.database,
        "DAGSTER_PG_PORT": str(url.port or 5432),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    shutil.copy(INSTANCE_YAML, tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path)))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_retries_enabled and not instance.run_retries_retry_on_asset_or_op_failure
        for pool in ("gladly_api", "unthread_api"):
            assert instance.event_log_storage.get_concurrency_info(pool).limit == 1
    finally:
        instance.dispose()
