"""The verbs that never train start without the heavy libraries: building the parser imports
no torch, SciPy, plotly, Optuna, pandas or SQLAlchemy (each verb imports what it needs when it
runs), ``dynl2 sql`` needs only SQLAlchemy (pandas for the columns it cannot print alone), and
``dynl2 status NAME`` neither SciPy nor Alembic nor the report's pages. The test suite starts
hundreds of such processes, and a user types them. Checked by what is imported, never by a
timing (``bench/verbs.py`` times them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import storage

ROOT = Path(__file__).resolve().parents[2]

NEVER = ("torch", "scipy", "plotly", "optuna", "pandas")  # sql of whole numbers needs none
PARSER_ONLY = (*NEVER, "pandas", "sqlalchemy")  # --help and a usage error: the parser alone

# Runs --help and a usage error first (what the parser alone imports), then sql, and prints the
# exit statuses and which heavy modules each step left imported, as one JSON object.
CODE = """
import json, sys
from study.cli.dispatch import main

def heavy(names):
    return sorted(n for n in names if n in sys.modules)

out = {{}}
out["help"] = main(["--help"])
out["usage"] = main(["nosuchverb"])
out["parser_imports"] = heavy({parser_only!r})
out["sql"] = main(["sql", "select 41 + 1 AS answer", "--format", "json", "--storage", {url!r}])
out["sql_imports"] = heavy({never!r})
print(json.dumps(out))
"""


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_sql_help_and_a_usage_error_import_no_heavy_library(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with storage.open(url):  # a dynl2 store, made here: the process below must not need to
        pass
    code = CODE.format(url=url, never=NEVER, parser_only=PARSER_ONLY)
    proc = _run("-c", code)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    out = json.loads(lines[-1])
    assert (out["help"], out["usage"], out["sql"]) == (0, 2, 0), proc.stderr
    assert lines[0] == "usage: dynl2 [-h] VERB ..."  # the help
    assert '[{"answer":42}]' in lines  # the query's rows
    assert "invalid choice: 'nosuchverb'" in proc.stderr
    assert out["parser_imports"] == [], "the parser imports a heavy library at the top of a module"
    assert out["sql_imports"] == [], "dynl2 sql imports a library it does not use"


def test_a_training_verb_still_parses_its_flags() -> None:
    proc = _run("-m", "study", "train", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--scheme" in proc.stdout and "--dataset" in proc.stdout


def test_every_public_name_of_storage_comes_from_its_module() -> None:
    """``storage`` imports each public name when first asked for: its table of names and
    ``__all__`` list the same ones, and each resolves."""
    assert sorted(storage._HOME) == sorted(storage.__all__)
    for name in storage.__all__:
        value = getattr(storage, name)
        assert getattr(sys.modules[f"storage.{storage._HOME[name]}"], name) is value


# `dynl2 status NAME` in a process of its own, as a user runs it: its exit status, then the
# heavy packages it left imported, as the last line.
STATUS = """
import json, runpy, sys
sys.argv = ["dynl2", "status", {name!r}, "--storage", {url!r}]
try:
    runpy.run_module("study", run_name="__main__")
except SystemExit as stop:
    code = stop.code
heavy = {heavy!r}
print(json.dumps([code, sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))]))
"""
# What the status never needs: the report's statistics and pages, the migrations, torch.
STATUS_NEVER = ("torch", "scipy", "plotly", "jinja2", "alembic", "sklearn")
# Nor these, which it reads without (storage.read_status), but imports today through
# study.search.studies (Optuna, and pandas by storage.Store) and study.config.experiment
# (Optuna, to check a stored config's ranges): both outside the status's own modules.
STATUS_LATER = ("optuna", "pandas", "numpy")


def _status_imports(tmp_path: Path) -> list[str]:
    from tests.study.test_status import NAME, build

    url = f"sqlite:///{tmp_path / 'store.db'}"
    build(url, tmp_path, replicates=3)
    proc = _run("-c", STATUS.format(name=NAME, url=url, heavy=(*STATUS_NEVER, *STATUS_LATER)))
    assert proc.returncode == 0, proc.stderr
    code, heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    assert code == 0, proc.stderr
    assert "best params" in proc.stdout and "final evaluation" in proc.stdout
    return list(heavy)


def test_status_imports_neither_scipy_nor_the_report_nor_torch(tmp_path: Path) -> None:
    heavy = _status_imports(tmp_path)
    assert [m for m in heavy if m in STATUS_NEVER] == [], "dynl2 status imports what it never uses"


def test_status_imports_neither_optuna_nor_pandas(tmp_path: Path) -> None:
    assert _status_imports(tmp_path) == []
