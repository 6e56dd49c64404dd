"""dynl2's generic import names (``study``, ``trainers``, ``storage``, ``reports``): a package of
another distribution or folder that shadows one is named in one line, and nothing runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["trainers", "storage", "reports"])
def test_a_shadowed_layer_is_refused_in_one_line(tmp_path: Path, name: str) -> None:
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("raise SystemExit('imported the impostor')\n")
    proc = subprocess.run(
        [sys.executable, "-m", "study", "status"],
        cwd=tmp_path,  # `python -m` puts the current folder first on sys.path
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"the import name {name!r} is {tmp_path / name / '__init__.py'}" in lines[0]
    assert not (tmp_path / "dynl2-workspace").exists()


def test_no_clash_from_the_checkout() -> None:
    from study.__main__ import shadowed

    assert shadowed() is None
