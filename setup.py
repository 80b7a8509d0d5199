"""The packages to ship (pyproject.toml holds everything else): the pipeline, the simulator (`sim`:
emulators, generator, demo), plus the top-level
dbt_like_sql/ folder shipped inside it as `migration_pipeline.dbt_like_sql`, so a plain
`pip install .` (not only an editable one) finds the SQL models."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["migration_pipeline", "migration_pipeline.*", "sim", "sim.*"]),
        "migration_pipeline.dbt_like_sql",
    ],
    package_dir={"migration_pipeline.dbt_like_sql": "dbt_like_sql"},
)
