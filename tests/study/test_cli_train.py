"""``dynl2 train``: the JSON schema, human output, and one clean line for each bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from study.cli.dispatch import main

ROOT = Path(__file__).resolve().parents[2]
FAST = ["train", "--dataset", "digits", "--epochs", "2", "--device", "cpu"]
EPOCH_KEYS = {
    "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lam_mean", "lam_min",
    "lam_max", "lam_last", "weight_norm", "seconds",
}  # fmt: skip


def test_json_output_schema(capsys):
    code = main([*FAST, "--hidden", "16", "--scheme", "dynamic", "--alpha", "0.05", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    doc = json.loads(out)
    assert {"config", "history", "test", "seconds"} <= set(doc)
    assert doc["config"]["scheme"] == {
        "scheme": "dynamic", "apply": "coupled", "biases": False,
        "alpha": 0.05, "floor": 1e-8, "ceiling": None, "loss_ema": 0.0,
    }  # fmt: skip
    assert doc["config"]["data"]["dataset"] == "digits"
    assert doc["config"]["model"] == {"kind": "mlp", "hidden": [16]}
    assert [h["epoch"] for h in doc["history"]] == [1, 2]
    assert all(set(h) == EPOCH_KEYS for h in doc["history"])
    assert set(doc["test"]) == {"loss", "acc"}
    assert 0.0 <= doc["test"]["acc"] <= 1.0


def test_human_output(capsys):
    assert main([*FAST, "--scheme", "fixed", "--lam", "0.001"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("dynl2 train: digits / mlp / fixed(")
    assert sum(line.startswith("epoch") for line in lines) == 2
    assert lines[-1].startswith("test_loss")


@pytest.mark.parametrize(
    ("flags", "scheme"),
    [
        (
            ["--scheme", "schedule", "--lam-start", "0", "--lam-end", "0.01", "--shape", "cosine"],
            {"lam_start": 0.0, "lam_end": 0.01, "shape": "cosine", "apply": "coupled"},
        ),
        (["--scheme", "swd", "--lam", "0.001"], {"lam": 0.001, "apply": "decoupled"}),
    ],
)
def test_the_comparator_schemes_train_from_flags(capsys, flags, scheme):
    assert main([*FAST, "--hidden", "16", *flags, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"]["scheme"] == {"scheme": flags[1], "biases": False, **scheme}
    lams = [(h["lam_min"], h["lam_max"]) for h in doc["history"]]
    assert all(high > 0 for _, high in lams) and lams[0] != lams[1]  # λ_t moves


def test_regression_json_has_null_accuracy(capsys):
    args = ["train", "--dataset", "linear", "--n-train", "20", "--n-features", "50"]
    assert main([*args, "--model", "linear", "--epochs", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["test"]["acc"] is None
    assert all(h["val_acc"] is None for h in doc["history"])


BAD = [
    (["--scheme", "l3"], "--scheme"),
    (["--scheme", "dynamic", "--alpha", "-1"], "--alpha"),
    (["--scheme", "dynamic", "--alpha", "0"], "--alpha"),
    (["--scheme", "dynamic", "--alpha", "1", "--floor", "2", "--ceiling", "1"], "--floor"),
    (["--scheme", "dynamic", "--alpha", "1", "--loss-ema", "1.5"], "--loss-ema"),
    (["--scheme", "dynamic", "--lam", "0.1"], "--lam"),
    (["--scheme", "fixed", "--alpha", "0.1"], "--alpha"),
    (["--scheme", "none", "--lam-awd", "0.1"], "--lam-awd"),
    (["--scheme", "fixed", "--lam", "nan"], "--lam"),
    (["--scheme", "swd", "--lam", "0.01", "--optimizer", "sgd"], "--optimizer"),
    (["--scheme", "swd", "--apply", "coupled"], "--apply"),
    (["--scheme", "swd", "--lam-start", "0.1"], "--lam-start"),
    (["--scheme", "schedule", "--shape", "square"], "--shape"),
    (["--scheme", "schedule", "--lam-end", "-1"], "--lam-end"),
    (["--scheme", "fixed", "--shape", "cosine"], "--shape"),
    (["--scheme", "fixed", "--lam", "inf"], "--lam"),
    (["--scheme", "fixed", "--lam", "abc"], "--lam"),
    (["--apply", "sideways", "--scheme", "fixed"], "--apply"),
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "1.5"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--lr", "-0.1"], "--lr"),
    (["--optimizer", "lbfgs"], "--optimizer"),
    (["--momentum", "1"], "--momentum"),
    (["--nesterov"], "--nesterov"),
    (["--dataset", "cifar10"], "--dataset"),
    (["--model", "transformer"], "--model"),
    (["--model", "cnn"], "--model"),  # digits is not sequence data
    (["--hidden", "10,x"], "--hidden"),
    (["--hidden", "0"], "--hidden"),
    (["--n-train", "5"], "--n-train"),  # digits has no such option
    (["--device", "gpu"], "--device"),
    (["--seed", "-3"], "--seed"),
    # issue 17: strict spelling, and the limits a config has
    (["--device", "cpu\n"], "--device"),
    (["--device", "cuda:\u0663"], "--device"),
    (["--device", "cuda:99999999999999999999999"], "--device"),
    (["--data-seed", "-1"], "--data-seed"),
    (["--epochs", "\u0663"], "--epochs"),
    (["--epochs", "1_0"], "--epochs"),
    (["--hidden", "1_0"], "--hidden"),
    (["--hidden", ",".join(["8"] * 65)], "--hidden"),
    (["--lr", "1e-400"], "--lr"),
    (["--lr", "\u0661e-3"], "--lr"),
    (["--scheme", "fixed", "--lam", "5e-324"], "--lam"),
    (["--dataset", "linear", "--model", "linear", "--n-val", "9"], "--n-val"),
    (["--frobnicate"], "--frobnicate"),
]


@pytest.mark.parametrize(("extra", "flag"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_line_and_exit_2(capsys, extra, flag):
    assert main([*FAST, *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing written
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(("dynl2 train: error:", "dynl2: error:"))
    assert flag in lines[0]


@pytest.mark.parametrize(
    "extra",
    [["--epochs", "0"], ["--lam", "abc"], ["--scheme", "dynamic", "--lam", "1"], ["--bogus"]],
)
def test_bad_input_subprocess_exits_2_without_traceback(extra):
    proc = subprocess.run(
        [sys.executable, "-m", "study", *FAST, *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""


def test_divergence_exits_1_with_one_line(capsys):
    args = ["train", "--dataset", "linear", "--model", "linear", "--optimizer", "sgd"]
    args += ["--momentum", "0", "--lr", "10", "--epochs", "30", "--batch-size", "50"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged in epoch" in err[0]


def test_python_dash_m_study_runs_like_dynl2():
    proc = subprocess.run(
        [sys.executable, "-m", "study", *FAST, "--epochs", "1", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["history"][0]["epoch"] == 1
