"""Run the SQL models in dbt_like_sql/ (one model a file) with bound parameters."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from migration_pipeline.staging.db import StagingDatabase

SQL_DIR = Path(__file__).resolve().parents[2] / "dbt_like_sql"


@cache
def model_sql(name: str) -> str:
    path = SQL_DIR / f"{name}.sql"
    if not path.exists():
        raise FileNotFoundError(f"SQL model {name} not found in {SQL_DIR}")
    return path.read_text(encoding="utf-8")


def run_model(db: StagingDatabase, name: str, **params: Any) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        return [dict(row) for row in conn.execute(sa.text(model_sql(name)), params).mappings()]
