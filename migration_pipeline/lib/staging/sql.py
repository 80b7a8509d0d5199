"""Run the SQL models in dbt_like_sql/ (one model a file) with bound parameters.

The folder sits at the top of the repository and ships inside the package as
`migration_pipeline.dbt_like_sql` (setup.py maps it), so an editable and a plain install read the
same files."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import sqlalchemy as sa

from migration_pipeline.lib.staging.db import StagingDatabase

SQL_DIR = resources.files("migration_pipeline.dbt_like_sql")


@cache
def model_sql(name: str) -> str:
    path = SQL_DIR.joinpath(f"{name}.sql")
    if not path.is_file():
        raise FileNotFoundError(f"SQL model {name} not found in {SQL_DIR}")
    return path.read_text(encoding="utf-8")


def run_model(db: StagingDatabase, name: str, **params: Any) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        return [dict(row) for row in conn.execute(sa.text(model_sql(name)), params).mappings()]
