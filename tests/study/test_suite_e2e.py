"""``dynl2 suite run | status | report`` end to end on SQLite and PostgreSQL: a two-experiment
suite is validated whole, recorded, run, resumed without training twice, and summarized; a bad
suite is refused one line per problem with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

import storage
from study.cli.dispatch import main
from study.config.suite import load_suite
from tests.storage.backends import BACKENDS, empty_url

SUITE = """
[suite]
name = "fam"

[matrix]
"data.dataset" = ["digits", "breast_cancer"]
{extra}
[base.experiment]
seed = 0

[base.model]
kind = "mlp"
hidden = [16]

[base.train]
optimizer = "adam"
lr = {{ low = 1e-3, high = 3e-2, log = true }}
epochs = 2
batch_size = 100
device = "cpu"

[base.search]
n_trials = 2
sampler = "random"
pruner = "none"
metric = "val_acc"

# Strengths that move a 2-epoch run: both arms draw the same lr for trial k and train on the
# same initialization and batch order (common random numbers), so a negligible lambda makes
# them tie on every seed, and a tie has no interval to pool.
[base.arms.fixed]
scheme = "fixed"
lam = {{ low = 1e-2, high = 1e-1, log = true }}

[base.arms.dynamic]
scheme = "dynamic"
alpha = {{ low = 1e-1, high = 1.0, log = true }}

[base.evaluate]
seeds = 3                 # one search each: an interval over seeds needs 3 (reports.stats)
"""


def _suite_file(directory: Path, extra: str = "") -> Path:
    """A two-experiment suite of the tiny study (tests/tiny.py): digits and breast cancer."""
    path = directory / "fam.toml"
    path.write_text(SUITE.format(extra=extra))
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_suite_runs_resumes_and_reports(
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _suite_file(tmp_path)
    with empty_url(backend, tmp_path) as url:
        assert main(["suite", "run", str(path), "--storage", url, "--quiet"]) == 0, (
            capsys.readouterr()
        )
        out = capsys.readouterr().out
        assert "suite report:" in out
        with storage.open(url, create=False) as store:
            info = store.suite("fam")
            trained = len(store.trials("fam-digits")) + len(store.trials("fam-breast_cancer"))
        assert [m.experiment for m in info.members] == ["fam-digits", "fam-breast_cancer"]
        assert [m.factors for m in info.members] == [
            {"data.dataset": "digits"},
            {"data.dataset": "breast_cancer"},
        ]
        assert trained == 2 * 2 * 2  # 2 experiments x 2 arms x 2 trials

        # a rerun resumes: nothing is trained twice
        assert main(["suite", "run", str(path), "--storage", url, "--quiet"]) == 0
        capsys.readouterr()
        with storage.open(url, create=False) as store:
            again = len(store.trials("fam-digits")) + len(store.trials("fam-breast_cancer"))
        assert again == trained

        assert main(["suite", "status", "fam", "--storage", url]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith("suite fam (created ")
        assert [line.split()[0:2] for line in lines[1:]] == [
            ["fam-digits", "done"],
            ["fam-breast_cancer", "done"],
        ]

        assert main(["suite", "report", "fam", "--storage", url, "--json"]) == 0
        numbers = json.loads(capsys.readouterr().out)
        assert [e["experiment"] for e in numbers["experiments"]] == [
            "fam-digits",
            "fam-breast_cancer",
        ]
        assert [e["factors"] for e in numbers["experiments"]] == [
            {"data.dataset": "digits"},
            {"data.dataset": "breast_cancer"},
        ]
        pooled = numbers["pooled"]
        assert set(pooled) >= {"mean", "low", "high", "i2", "tau2"}
        assert pooled["low"] <= pooled["mean"] <= pooled["high"]
        page = tmp_path / "dynl2-workspace" / "reports" / "suites" / "fam.html"
        assert page.read_text().lower().startswith("<!doctype html>")
        with storage.open(url, create=False) as store:
            html, where = store.latest_suite_report("fam")
        assert where == str(page) and html == page.read_text()


def test_a_bad_suite_is_refused_whole_one_line_per_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    extra = '"train.optimizer" = ["adam", "sgd"]\n"train.epochs" = [2, 0]\n'
    path = _suite_file(tmp_path, extra=extra)
    url = f"sqlite:///{tmp_path / 'never.db'}"
    assert main(["suite", "run", str(path), "--storage", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # every experiment with 0 epochs is refused, each on its own line, all in one pass
    assert err == [
        f"dynl2 suite: error: experiment 'fam-{data}-{opt}-0' (data.dataset = '{data}', "
        f"train.optimizer = '{opt}', train.epochs = 0): train.epochs: must be between 1 and "
        + err[0].rsplit("between 1 and ", 1)[1]
        for data in ("digits", "breast_cancer")
        for opt in ("adam", "sgd")
    ]
    assert not (tmp_path / "never.db").exists()  # nothing written
    assert not (tmp_path / "dynl2-workspace").exists()


def test_unknown_suite_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with storage.open(url):
        pass
    assert main(["suite", "status", "nope", "--storage", url]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("dynl2 suite: error: No suite named 'nope'")


def test_an_experiment_of_the_suite_stored_with_another_config_is_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _suite_file(tmp_path)
    url = f"sqlite:///{tmp_path / 's.db'}"
    other = load_suite(path).experiments[1].config.to_dict()
    other["search"]["n_trials"] = 5  # fam-breast_cancer exists with another budget
    with storage.open(url) as store:
        store.create_experiment("fam-breast_cancer", other)
    assert main(["suite", "run", str(path), "--storage", url]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        "dynl2 suite: error: experiment 'fam-breast_cancer': experiment 'fam-breast_cancer' "
        "already exists with a different config (search.n_trials differ)"
    )
    with storage.open(url, create=False) as store:
        assert store.suites() == []  # nothing written: no suite,
        assert list(store.experiments()["name"]) == ["fam-breast_cancer"]  # no experiment


def test_a_foreign_study_under_an_experiment_s_name_is_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _suite_file(tmp_path)
    url = f"sqlite:///{tmp_path / 's.db'}"
    with storage.open(url) as store:  # someone else's study, named like the second experiment's
        optuna.create_study(study_name="fam-breast_cancer/fixed", storage=store.optuna_storage())
    assert main(["suite", "run", str(path), "--storage", url]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("dynl2 suite: error: experiment 'fam-breast_cancer': ")
    assert "fam-breast_cancer/fixed" in line
    with storage.open(url, create=False) as store:
        assert store.suites() == []  # nothing written: no suite, no experiment
        assert store.experiments().empty
