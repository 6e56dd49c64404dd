"""``dynl2 plan``: on synthetic stores (no training), through the real CLI. Its JSON against the
stored differences and costs, the verdict it plans for, a suite, each refusal as one line with
exit status 2 and nothing written, and no torch."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa

import storage
from reports import build_report_verdict
from reports.plan import (
    REPLICATES,
    SEEDS,
    estimate_components,
    power_equivalence,
    power_test,
)
from reports.plan_store import plan_input
from study.run.runs import stored_experiment
from tests.reports import synthetic as syn

from ..reliability.helpers import run_cli, store_fingerprint

ROOT = Path(__file__).resolve().parents[2]
ARMS = dict(syn.ARMS)  # dynamic, fixed and none: three searched arms (lr is searched in all)
TRIAL_SECONDS = 12.0


def add_experiment(
    store: storage.Store, name: str, replicates: int, *, seeds: int = 5, shift: float = 0.01,
    seed: int = 0, margin: float | None = None,
) -> dict[int, list[float]]:  # fmt: skip
    """An experiment of ``replicates`` searches × ``seeds`` evaluation seeds, the dynamic arm
    ahead by about ``shift`` in accuracy; returns the paired differences in points."""
    rng = random.Random(seed)
    cfg = syn.config(name, arms=ARMS, n_trials=3, seeds=seeds)
    cfg["search"]["replicates"] = replicates
    if margin is not None:
        cfg["evaluate"]["margin"] = margin
    store.create_experiment(name, cfg)
    differences: dict[int, list[float]] = {}
    for r in range(1, replicates + 1):
        for arm in ARMS:
            syn.add_trials(store, cfg, arm, [0.7, 0.72, 0.71], seed=10 * r + len(arm),
                           replicate=r)  # fmt: skip
        search = rng.gauss(0, 0.004)
        dynamic = [0.80 + shift + search + rng.gauss(0, 0.01) for _ in range(seeds)]
        fixed = [0.80 + rng.gauss(0, 0.004) for _ in range(seeds)]
        syn.add_evaluations(store, name, "dynamic", dynamic, replicate=r)
        syn.add_evaluations(store, name, "fixed", fixed, replicate=r)
        syn.add_evaluations(store, name, "none", [0.78] * seeds, replicate=r)
        differences[r] = [100 * a - 100 * b for a, b in zip(dynamic, fixed, strict=True)]
    return differences


def time_trials(store: storage.Store) -> None:
    """Every trial took :data:`TRIAL_SECONDS` (the synthetic ones take none)."""
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE trials SET datetime_start = :start, datetime_complete = :end"),
            {"start": "2024-01-01 00:00:00.000000", "end": "2024-01-01 00:00:12.000000"},
        )


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[int, list[float]]]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path_factory.mktemp('plan') / 'p.db'}"
    with storage.open(url) as store:
        differences = add_experiment(store, "p", 4)
        add_experiment(store, "q", 3, shift=0.02, seed=1)
        add_experiment(store, "one", 1, seed=2)
        time_trials(store)
        members = [("p", {"x": 1}), ("q", {"x": 2}), ("one", {"x": 3}), ("later", {"x": 4})]
        store.create_suite("s", {"factors": ["x"]}, members)
    return url, differences


def plan(url: str, capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run_cli(["plan", *argv, "--json", "--storage", url], capsys)
    assert code == 0, err
    assert err == ""
    data: dict[str, Any] = json.loads(out)  # stdout is the one object
    return data


def test_the_json_plans_from_the_stored_differences_and_costs(stored, capsys) -> None:
    url, differences = stored
    data = plan(url, capsys, "p", "--effect", "1.5")
    assert (data["kind"], data["experiment"], data["mode"]) == ("experiment", "p", "effect")
    assert (data["delta"], data["power"], data["unit"], data["level"]) == (1.5, 0.8, "points", 0.8)
    parts = estimate_components(differences)
    got = data["components"]
    assert (got["replicates"], got["seeds"]) == (4, 5)
    for key in ("mean", "search_sd", "seed_sd", "search_sd_upper", "seed_sd_upper"):
        assert got[key] == pytest.approx(getattr(parts, key)), key
    assert data["costs"] == {"arms": 3, "searched_arms": 3, "n_trials": 3,
                             "trial_seconds": TRIAL_SECONDS, "eval_seconds": 0.5}  # fmt: skip
    cells = {(c["replicates"], c["seeds"]): c for c in data["cells"]}
    assert set(cells) == {(r, s) for r in REPLICATES for s in SEEDS}
    cell = cells[(6, 10)]
    assert cell["power"] == pytest.approx(power_test(1.5, (parts.variance(10) / 6) ** 0.5, 5))
    assert cell["trials"] == 3 * 6 * 3 and cell["runs"] == 54 + 10 * 3 * 6
    assert cell["seconds"] == pytest.approx(54 * TRIAL_SECONDS + 180 * 0.5)
    best = data["recommended"]
    assert best["power"] >= 0.8
    assert best["seconds"] == min(c["seconds"] for c in data["cells"] if c["power"] >= 0.8)


def test_the_plan_is_over_the_verdicts_differences(stored) -> None:
    """The differences the plan reads are those the verdict compares: the same mean over
    replicate means and the same two spreads."""
    url, _ = stored
    with storage.open(url, create=False) as store:
        config = stored_experiment(store, "p")
        found = plan_input(store, config)
        verdict = build_report_verdict(store, config)
    parts = estimate_components(found.differences)
    assert verdict.main is not None and verdict.main.diff is not None
    assert parts.mean == pytest.approx(verdict.main.diff.mean)
    assert verdict.components is not None
    assert parts.search_sd == pytest.approx(verdict.components.search_sd)
    assert parts.seed_sd == pytest.approx(verdict.components.seed_sd)


def test_equivalence_within_a_margin(stored, capsys) -> None:
    url, differences = stored
    data = plan(url, capsys, "p", "--margin", "2", "--power", "0.9")
    assert (data["mode"], data["delta"], data["power"]) == ("equivalence", 2.0, 0.9)
    parts = estimate_components(differences)
    cell = next(c for c in data["cells"] if (c["replicates"], c["seeds"]) == (8, 20))
    expected = power_equivalence(2.0, (parts.variance(20) / 8) ** 0.5, 7)
    assert cell["power"] == pytest.approx(expected)


def test_the_table_and_the_recommendation_in_words(stored, capsys) -> None:
    url, _ = stored
    code, out, err = run_cli(["plan", "p", "--effect", "1.5", "--storage", url], capsys)
    assert code == 0 and err == ""
    assert "plan for experiment 'p': dynamic − fixed, in accuracy points" in out
    assert "80% upper bound" in out
    header = next(line for line in out.splitlines() if line.strip().startswith("R "))
    assert header.split() == ["R", *(f"S={s}" for s in SEEDS)]
    assert sum(1 for line in out.splitlines() if line.split()[:1] == ["20"]) == 1
    (answer,) = [line for line in out.splitlines() if line.startswith(("recommended", "no (R"))]
    assert "trials" in answer if answer.startswith("recommended") else "highest" in answer


def test_an_unreachable_power_says_so(stored, capsys) -> None:
    url, _ = stored
    data = plan(url, capsys, "p", "--effect", "0.001", "--power", "0.99")
    assert data["recommended"] is None
    code, out, _ = run_cli(["plan", "p", "--effect", "0.001", "--power", "0.99",
                            "--storage", url], capsys)  # fmt: skip
    assert code == 0 and "no (R, S) of the grid reaches power 99%" in out


def test_a_suite_plans_its_pooled_difference(stored, capsys) -> None:
    url, _ = stored
    data = plan(url, capsys, "s", "--effect", "1")
    assert (data["kind"], data["suite"]) == ("suite", "s")
    left = {e["experiment"]: e["left_out"] for e in data["experiments"]}
    assert left["p"] is None and left["q"] is None
    assert left["later"] == "not started"
    assert "1 replicate" in left["one"] and "replicates >= 2" in left["one"]
    assert data["heterogeneity"]["k"] == 2
    assert data["heterogeneity"]["tau2_upper"] >= data["heterogeneity"]["tau2"] >= 0
    cell = next(c for c in data["cells"] if (c["replicates"], c["seeds"]) == (4, 5))
    assert cell["trials"] == 2 * 3 * 4 * 3  # p and q, three searched arms each
    code, out, _ = run_cli(["plan", "s", "--effect", "1", "--storage", url], capsys)
    assert code == 0 and "plan for suite 's'" in out and "left out: not started" in out


def test_the_margin_of_the_config_is_the_default_effect(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with storage.open(url) as store:
        add_experiment(store, "m", 3, margin=0.75)
    data = plan(url, capsys, "m")
    assert (data["mode"], data["delta"]) == ("effect", 0.75)


REFUSED = [
    (["nope", "--effect", "1"], "no experiment or suite named 'nope'"),
    (["one", "--effect", "1"], "1 replicate with paired evaluations"),
    (["p", "--power", "1"], "--power"),
    (["p", "--effect", "1", "--power", "0"], "--power"),
    (["p", "--effect", "1", "--power", "1.5"], "--power"),
    (["p", "--effect", "1", "--power", "nan"], "--power"),
    (["p", "--effect", "0"], "--effect"),
    (["p", "--effect", "-1"], "--effect"),
    (["p", "--effect", "nan"], "--effect"),
    (["p", "--effect", "inf"], "--effect"),
    (["p", "--margin", "0"], "--margin"),
    (["p", "--margin", "-inf"], "--margin"),
    (["p", "--margin", "NaN"], "--margin"),
    (["p", "--effect", "1", "--margin", "1"], "not both"),
    (["p"], "give --effect"),
]


@pytest.mark.parametrize(
    ("argv", "said"), REFUSED, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(stored, capsys, argv, said) -> None:
    url, _ = stored
    before = store_fingerprint(url)
    code, out, err = run_cli(["plan", *argv, "--storage", url], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("dynl2 plan: error:"), err
    assert said in err, err
    assert "Traceback" not in err
    if argv == ["one", "--effect", "1"]:
        assert "[search] replicates >= 2" in err
    if argv == ["p"]:
        assert "--margin" in err
    assert store_fingerprint(url) == before


def test_plan_never_imports_torch(stored) -> None:
    url, _ = stored
    code = (
        "import sys\n"
        "from study.cli.dispatch import main\n"
        f"code = main(['plan', 'p', '--effect', '1', '--storage', {url!r}])\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "NO-TORCH 0", proc.stdout + proc.stderr
