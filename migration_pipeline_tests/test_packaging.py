"""A plain `pip install .` (not editable) works: the package, its rule files and the top-level
dbt_like_sql/ models are all inside the install, and the code location loads from it alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("pyproject.toml", "setup.py", "README.md", "migration_pipeline", "dbt_like_sql")

PROBE = """
import sys
from pathlib import Path
site = Path(sys.argv[1]).resolve()
import migration_pipeline
assert Path(migration_pipeline.__file__).resolve().is_relative_to(site), migration_pipeline.__file__
from migration_pipeline.lib.staging.sql import SQL_DIR, model_sql
models = sorted(p.name for p in SQL_DIR.iterdir() if p.name.endswith(".sql"))
assert Path(str(SQL_DIR)).resolve().is_relative_to(site), SQL_DIR
for name in models:
    assert model_sql(name[:-4]).strip(), name
from migration_pipeline.pairs.gladly_to_unthread.mappings import load_mappings
from migration_pipeline.lib.split_rules import SplitRules
load_mappings(); SplitRules.load()
from migration_pipeline.definitions import defs
keys = sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())
print(len(models), "models;", ",".join(keys))
"""


@pytest.mark.e2e
def test_a_plain_install_carries_the_sql_models_and_loads_the_code_location(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in SHIPPED:  # build from a copy: an in-tree build would leave build/ in the checkout
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site), str(source)],
        check=True, capture_output=True, text=True,
    )
    assert not (site / "migration_pipeline_tests").exists()
    shipped_sql = sorted(p.name for p in (site / "migration_pipeline" / "dbt_like_sql").glob("*.sql"))
    assert shipped_sql == sorted(p.name for p in (ROOT / "dbt_like_sql").glob("*.sql"))

    # Only the install on the path (the checkout is not the working directory nor on PYTHONPATH).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", PROBE, str(site)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{len(shipped_sql)} models;" in result.stdout and "gladly_to_unthread/unthread_loaded_records" in result.stdout


def test_the_pipeline_never_imports_the_simulator():
    """Emulators, generator and demo live in `sim`; the pipeline's modules import none of it (the
    CLI gets the rehearsal commands through an entry point), so production carries no test rig."""
    import ast

    offenders = []
    for path in (ROOT / "migration_pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n == "sim" or n.startswith("sim.")]
    assert not offenders, offenders
    probe = "import sys, migration_pipeline.definitions, migration_pipeline.cli; print(sorted(m for m in sys.modules if m == 'sim' or m.startswith('sim.')))"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert loaded.strip().splitlines()[-1] == "['sim', 'sim.cli']"  # only the CLI plugin, loaded by its entry point
