"""The public study API (``import study``): what the CLI verbs do, as functions; and the verbs
that only read the store never import torch."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import study
from tests.tiny import write_tiny

ROOT = Path(__file__).resolve().parents[2]


# The public API as it stood before study/ was cut into rooms: a move must not change it.
PUBLIC = {
    "ExperimentConfig", "ExperimentConfigError", "ExperimentOverview", "ExperimentStatus",
    "ReportResult", "RunResult", "StudyError", "Suite", "SuiteConfigError", "SuiteReportResult",
    "SuiteRunResult", "SuiteStatus", "UsageError", "evaluate_experiment", "experiment_status",
    "experiment_trials", "experiment_verdict", "join_experiment", "list_experiments",
    "load_experiment", "load_suite", "main", "make_plan", "make_report", "make_suite_report",
    "parse_experiment", "resume_experiment", "run_experiment", "run_suite", "suite_status",
}  # fmt: skip


def test_every_public_name_resolves_to_its_home() -> None:
    assert set(study.__all__) == PUBLIC
    assert sorted(study.__all__) == sorted(study._homes())
    for name in study.__all__:
        home = importlib.import_module(study._homes()[name])
        assert getattr(study, name) is getattr(home, name), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = study.nope  # type: ignore[attr-defined]
    names: dict[str, object] = {}
    exec("from study import *", names)
    assert set(names) >= PUBLIC


def test_importing_study_imports_none_of_its_rooms() -> None:
    """The public names are read from study/__init__.py's own text, not imported: ``import
    study`` stays cheap (``python -m study`` installs its signal handlers before torch)."""
    code = (
        "import sys, study; study.__all__; "
        "print(sorted(m for m in sys.modules if m.startswith('study.')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_run_status_trials_evaluate_report_resume_from_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default report folder is ./dynl2-workspace/reports
    url = f"sqlite:///{tmp_path / 'api.db'}"
    path = write_tiny(tmp_path, "api", epochs=2, n_trials=3, seeds=2, arms=("fixed", "none"))
    lines: list[str] = []

    result = study.run_experiment(path, storage=url, say=lines.append)

    assert result.complete and result.report is not None
    assert result.report.path == tmp_path / "dynl2-workspace" / "reports" / "api.html"
    assert result.report.path.read_text().lower().startswith("<!doctype html>")
    assert {s.arm for s in result.summary} == {"fixed", "none"}
    assert all(s.seeds == 2 for s in result.summary)
    assert lines[0].startswith("dynl2 run: experiment 'api' in ")
    assert any(line.startswith("evaluate 4/4: ") for line in lines), lines

    status = study.experiment_status("api", storage=url)
    assert status.config == study.load_experiment(path)
    assert status.counts["fixed"].results == 3
    assert status.counts["none"].results == 3  # lr is searched in every arm
    assert {key: set(params) for key, params in status.best.items()} == {
        ("fixed", 1): {"lr", "lam"},
        ("none", 1): {"lr"},
    }
    where, overviews = study.list_experiments(storage=url)
    assert "api.db" in where
    assert [(o.name, o.results, o.budget, o.evaluations) for o in overviews] == [("api", 6, 6, 4)]

    trials = study.experiment_trials("api", storage=url, arm="fixed")
    assert len(trials) == 3 and set(trials["arm"]) == {"fixed"}
    assert int(trials["test_seeds"].max()) == 2  # the best trial carries its test scores
    with pytest.raises(study.UsageError, match="no arm 'nope'"):
        study.experiment_trials("api", storage=url, arm="nope")

    summary = study.evaluate_experiment("api", storage=url, seeds=3)  # one more seed per arm
    assert all(s.seeds == 3 for s in summary)

    report = study.make_report("api", storage=url, output=tmp_path / "out" / "r.html")
    assert report.path.is_file() and report.summary["experiment"] == "api"
    assert json.loads(json.dumps(report.summary)) == report.summary

    again = study.resume_experiment("api", storage=url)  # nothing left to do: nothing redone
    assert again.complete
    assert len(study.experiment_trials("api", storage=url)) == 6


def test_a_bad_config_raises_before_anything_is_written(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(write_tiny(tmp_path, "x", epochs=1, n_trials=1, seeds=1, arms=("none",))
                   .read_text().replace("epochs = 1", "epochs = 0"))  # fmt: skip
    with pytest.raises(study.ExperimentConfigError, match=r"train\.epochs"):
        study.run_experiment(bad, storage=f"sqlite:///{tmp_path / 'b.db'}")
    assert not (tmp_path / "b.db").exists()


READ_ONLY_VERBS = [
    ["status"],
    ["status", "syn"],
    ["trials", "syn"],
    ["sql", "select count(*) from dynl2_experiments"],
    ["report", "syn", "-o", "{tmp}/r.html"],
    ["reports"],
]


@pytest.mark.parametrize("argv", READ_ONLY_VERBS, ids=lambda a: " ".join(a[:2]))
def test_verbs_that_do_not_train_never_import_torch(tmp_path: Path, argv: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'syn.db'}"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = (
        "import sys, storage\n"
        "from tests.reports import synthetic as syn\n"
        f"with storage.open({url!r}) as store:\n"
        "    cfg = syn.create(store, 'syn')\n"
        "    syn.add_trials(store, cfg, 'fixed', [0.5, 0.6], epochs=2)\n"
        "from study.cli.dispatch import main\n"
        f"code = main({[*argv, '--storage', url]!r})\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "NO-TORCH 0", proc.stdout + proc.stderr
