"""psycopg is the optional `postgres` extra: dynl2 must import and run on SQLite without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cli_and_sqlite_store_work_without_psycopg(tmp_path):
    code = (
        "import sys; sys.modules['psycopg'] = None\n"  # import psycopg now raises ImportError
        "import storage, study.cli.dispatch\n"
        f"with storage.open('sqlite:///{tmp_path / 'x.db'}') as s: print(len(s.experiments()))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"
