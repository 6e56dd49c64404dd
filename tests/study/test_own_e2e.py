"""A user's own data, model and loop, end to end on SQLite and PostgreSQL with ``--workers 2``
and replicated searches: an ``.npz`` through the built-in MLP, a CSV regression through a
factory model, the batch-norm CNN through the fused path, and a custom loop; each to a report
whose verdict and trials are right. Then, with real processes: a worker whose copy of the data
differs is refused before it claims anything, and ``dynl2 serve`` and ``dynl2 agent`` refuse code
they were not told to run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import storage
import study
from study.cli.dispatch import main
from tests.reliability.helpers import ROOT, child_env, finish
from tests.storage.backends import BACKENDS, empty_url
from tests.study.test_service import start_server, stop_server

EXAMPLES = ROOT / "examples" / "own"
TRIALS, REPLICATES, SEEDS = 2, 2, 2

HEAD = """
[experiment]
name = "{name}"
seed = 0

{data}

{model}

[train]
lr = {{ low = 1e-3, high = 3e-2, log = true }}
epochs = 2
batch_size = 64
device = "cpu"
{train}

[search]
n_trials = {trials}
replicates = {replicates}
sampler = "random"
pruner = "none"
metric = "{metric}"

[arms.fixed]
scheme = "fixed"
lam = {{ low = 1e-6, high = 1e-1, log = true }}

[arms.dynamic]
scheme = "dynamic"
alpha = {{ low = 1e-4, high = 1.0, log = true }}

[evaluate]
seeds = {seeds}
"""


def _digits_npz(path: Path, limit: int = 400) -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        from data import digits_images  # examples/own/data.py
    finally:
        sys.path.remove(str(EXAMPLES))
    np.savez(path, **digits_images(limit))


def _write(folder: Path, name: str, data: str, model: str, train: str = "",
           metric: str = "val_acc") -> Path:  # fmt: skip
    text = HEAD.format(
        name=name, data=data, model=model, train=train, metric=metric, trials=TRIALS,
        replicates=REPLICATES, seeds=SEEDS,
    )  # fmt: skip
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def _models(folder: Path) -> None:
    for name in ("models.py", "loops.py", "data.py", "diabetes.csv"):
        shutil.copy(EXAMPLES / name, folder / name)


SCENARIOS = {
    "npz-mlp": lambda f: _write(
        f, "own-npz", '[data]\npath = "digits.npz"', '[model]\nkind = "mlp"\nhidden = [16]'
    ),
    "csv-regression-factory": lambda f: _write(
        f,
        "own-csv",
        '[data]\npath = "diabetes.csv"\ntarget = "progression"\ntask = "regression"',
        '[model]\nfactory = "models:residual_mlp"\n[model.args]\nwidth = 8\nblocks = 1',
        metric="val_loss",
    ),
    "bn-cnn-fused": lambda f: _write(
        f,
        "own-cnn",
        '[data]\nloader = "data:digits_images"\n[data.args]\nlimit = 400',
        '[model]\nfactory = "models:bn_cnn"\n[model.args]\nchannels = 4',
    ),
    "custom-loop": lambda f: _write(
        f,
        "own-loop",
        '[data]\npath = "digits.npz"',
        '[model]\nfactory = "models:bn_cnn"\n[model.args]\nchannels = 4\ndropout = 0.0',
        train='loop = "loops:smoothed"',
    ),
}


# Every scenario on SQLite; on PostgreSQL the two that carry the most of a user's own (a loader
# or a CSV, a factory model, fused groups): each run starts four worker processes, and the
# suite's time is bounded.
CASES = [(s, "sqlite") for s in SCENARIOS] + [
    ("csv-regression-factory", "postgresql"),
    ("bn-cnn-fused", "postgresql"),
]


@pytest.mark.parametrize(("scenario", "backend"), CASES)
def test_own_problem_end_to_end(backend, scenario, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the report goes to ./dynl2-workspace/reports/
    _models(tmp_path)
    _digits_npz(tmp_path / "digits.npz")
    path = SCENARIOS[scenario](tmp_path)
    name = path.stem
    with empty_url(backend, tmp_path) as url:
        argv = ["run", str(path), "--storage", url, "--workers", "2", "--batch", "2", "--quiet"]
        assert main(argv) == 0
        status = study.experiment_status(name, storage=url)
        assert status.config.data["fingerprint"].startswith("sha256:")
        for key, counts in status.counts.items():
            assert counts.results == TRIALS, (key, counts)
        assert len(status.counts) == 2 * REPLICATES
        with storage.open(url) as store:
            trials = store.trials(name)
            evals = store.evaluations(name)
        assert len(trials) == 2 * REPLICATES * TRIALS
        assert set(trials["state"]) == {"COMPLETE"}
        regression = scenario.startswith("csv")
        for row in trials.itertuples():
            assert np.isfinite(row.value)
            assert regression or 0.0 <= row.value <= 1.0  # a validation accuracy
        assert len(evals) == 2 * REPLICATES * SEEDS and evals["diverged"].isna().all()
        summary = {s.arm: s for s in status.summary}
        assert set(summary) == {"fixed", "dynamic"}
        for arm in summary.values():
            assert arm.seeds == REPLICATES * SEEDS and arm.mean is not None
            assert arm.metric == ("test_loss" if regression else "test_acc")
        made = study.make_report(name, output=str(tmp_path / "r.html"), storage=url).summary
        assert made["metric"] == ("test_loss" if regression else "test_acc")
        assert (made["main"]["arm"], made["main"]["baseline"]) == ("dynamic", "fixed")
        means = {arm: made["arms"][arm]["test"]["mean"] for arm in summary}
        assert made["main"]["diff"]["mean"] == pytest.approx(means["dynamic"] - means["fixed"])
        for arm in summary.values():  # status gives each arm as the report does: one number
            assert means[arm.arm] == pytest.approx(arm.mean)
            assert arm.text == made["arms"][arm.arm]["text"]
        assert (tmp_path / "r.html").read_text().count("dynamic") > 0
        if scenario == "custom-loop":  # the loop trained: it reports the epoch's last λ only,
            with storage.open(url) as store:  # where dynl2's trainer spreads it over the steps
                epochs = store.epochs(name, "dynamic")
            assert len(epochs) > 0 and (epochs["lam_min"] == epochs["lam_max"]).all()


def _dynl2(*argv: str, timeout: float = 300, **env: str) -> tuple[int, str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "study", *argv], cwd=ROOT, env=child_env(**env), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    return finish(proc, timeout)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_worker_with_other_data_is_refused_before_it_claims(backend, tmp_path, capsys):
    _digits_npz(tmp_path / "digits.npz")
    path = _write(tmp_path, "own-fp", '[data]\npath = "digits.npz"',
                  '[model]\nkind = "mlp"\nhidden = [8]')  # fmt: skip
    with empty_url(backend, tmp_path) as url:
        config = study.load_experiment(path)
        with storage.open(url) as store:
            store.create_experiment(config.name, config.to_dict())
        stored = config.data["fingerprint"]
        _digits_npz(tmp_path / "digits.npz", limit=399)  # another copy of the data
        # a worker as a real process (as on another machine); evaluate and a resumed run
        # in this one (the same check, without the cost of starting torch twice more)
        code, _, err = _dynl2("worker", "own-fp", "--storage", url)
        answers = [(code, err)]
        for argv in (["evaluate", "own-fp"], ["run", str(path)]):
            capsys.readouterr()
            answers.append((main([*argv, "--storage", url]), capsys.readouterr().err))
        for code, err in answers:
            lines = err.strip().splitlines()
            assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
            assert stored in lines[0] and "sha256:" in lines[0].replace(stored, ""), lines[0]
        with storage.open(url) as store:
            assert store.trials("own-fp").empty  # nothing claimed, nothing trained


def test_serve_and_agent_run_only_the_code_they_allow(tmp_path):
    folder = tmp_path / "lab"
    folder.mkdir()
    _models(folder)
    (tmp_path / "token").write_text("tok\n")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    text = _write(folder, "own-served", '[data]\nloader = "data:digits_images"\n'
                  "[data.args]\nlimit = 300", '[model]\nfactory = "models:bn_cnn"\n'
                  "[model.args]\nchannels = 2").read_text()  # fmt: skip
    auth = {"Content-Type": "application/toml", "Authorization": "Bearer tok"}
    closed = start_server(url, "--token-file", str(tmp_path / "token"))
    try:
        answer = closed.request("/api/experiments", method="POST", body=text.encode(),
                                headers=auth)  # fmt: skip
        assert answer.status == 403, answer.body
        assert "data:digits_images" in answer.error and "--allow-code: none" in answer.error
        npz = text.replace('loader = "data:digits_images"\n[data.args]\nlimit = 300',
                           'path = "/etc/passwd.npz"')  # fmt: skip
        npz = npz.replace('factory = "models:bn_cnn"\n[model.args]\nchannels = 2',
                          'kind = "mlp"\nhidden = [4]')  # fmt: skip
        answer = closed.request("/api/experiments", method="POST", body=npz.encode(),
                                headers=auth)  # fmt: skip
        assert answer.status == 403 and "--data-root" in answer.error, answer.body
    finally:
        stop_server(closed)
    opened = start_server(url, "--token-file", str(tmp_path / "token"), "--allow-code", "data",
                          "--allow-code", "models", PYTHONPATH=str(folder))  # fmt: skip
    try:
        loader = 'loader = "data:digits_images"\n'
        elsewhere = text.replace(loader, f'{loader}root = "{tmp_path}"\n', 1)
        answer = opened.request("/api/experiments", method="POST", body=elsewhere.encode(),
                                headers=auth)  # fmt: skip
        assert answer.status == 403 and "data.root" in answer.error, answer.body
        answer = opened.request("/api/experiments", method="POST", body=text.encode(),
                                headers=auth)  # fmt: skip
        assert answer.status == 201, answer.body
    finally:
        stop_server(opened)
    code, out, err = _dynl2("agent", "--storage", url, "--once", "--poll", "0.1")
    assert code == 0, err
    assert "leaving own-served to others" in out and "data:digits_images" in out, out
    with storage.open(url) as store:
        assert store.trials("own-served").empty
    code, out, err = _dynl2("agent", "--storage", url, "--once", "--poll", "0.1",
                            "--allow-code", "data", "--allow-code", "models",
                            PYTHONPATH=str(folder))  # fmt: skip
    assert code == 0, err
    with storage.open(url) as store:
        assert len(store.trials("own-served")) == 2 * REPLICATES * TRIALS
        assert len(store.evaluations("own-served")) == 2 * REPLICATES * SEEDS
