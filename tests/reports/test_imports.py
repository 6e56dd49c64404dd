"""The layer rule: reports reads the store and never imports torch, trainers or study."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_reports_imports_neither_torch_nor_study(tmp_path):
    # The report is given the stand-in config: parsing a real one is the caller's side
    # (study), which imports what this test checks reports never does.
    code = (
        "import sys, storage, reports\n"
        "from tests.reports import synthetic as syn\n"
        f"store = storage.open('sqlite:///{tmp_path / 'x.db'}')\n"
        "cfg = syn.create(store, 'e')\n"
        "syn.add_trials(store, cfg, 'fixed', [0.5, 0.6], epochs=2)\n"
        "reports.render_html(reports.build_report_data(store, syn.Unchecked(cfg)))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'trainers', 'study')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
