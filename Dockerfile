# One image for the whole deployment (docker-compose.yml, or the Helm chart's user-code
# deployment): the gRPC code server, dagster-webserver and dagster-daemon all run from it.
# Runs execute as subprocesses of the code server (DefaultRunLauncher), so it holds the project
# and every Dagster package the instance needs (dagster-postgres is a project dependency).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    MIGRATION_DATA_DIR=/opt/dagster/data

WORKDIR /opt/dagster/app

# A plain install: the SQL models of dbt_like_sql/ ship inside the package (setup.py maps them to
# migration_pipeline.dbt_like_sql), so nothing is read from the build folder at run time.
COPY pyproject.toml setup.py README.md ./
COPY migration_pipeline ./migration_pipeline
COPY dbt_like_sql ./dbt_like_sql
RUN pip install . && rm -rf build

# The production instance (PostgreSQL storage, run queue, pools, run retries) and the workspace
# that points the webserver and daemon at the code server over gRPC.
COPY deploy/dagster.yaml deploy/workspace.yaml ${DAGSTER_HOME}/

RUN useradd --create-home --uid 1000 dagster \
    && mkdir -p ${MIGRATION_DATA_DIR} \
    && chown -R dagster:dagster ${DAGSTER_HOME} ${MIGRATION_DATA_DIR}
USER dagster

EXPOSE 3000 4000

# The code server; the webserver and daemon services override the command.
CMD ["dagster", "code-server", "start", "-m", "migration_pipeline.definitions", "-h", "0.0.0.0", "-p", "4000", "--location-name", "migration_pipeline"]
