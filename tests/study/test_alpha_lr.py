"""``alpha = "lr"``: the dynamic scheme as its source's code runs it, α the learning rate. Read
from a TOML arm (nothing of its own to search), searched and evaluated end to end with two
workers and replicates on SQLite and PostgreSQL, and named in the report as the source's
literal reading beside the generous one (α searched)."""

from __future__ import annotations

from pathlib import Path

import pytest
from markupsafe import escape

import study
from reports.experiment_setup import GENEROUS, LITERAL
from study.config.experiment import parse_experiment
from tests.storage.backends import BACKENDS, empty_url
from tests.tiny import tiny_config

ARMS = ("dynamic", "dynamic_as_written", "fixed")


def _config(name: str, *, replicates: int = 3) -> str:
    text = tiny_config(name, epochs=2, n_trials=3, seeds=3, arms=ARMS)
    return text.replace('metric = "val_acc"\n', f'metric = "val_acc"\nreplicates = {replicates}\n')


def test_the_literal_arm_searches_the_learning_rate_only() -> None:
    import tomllib

    config = parse_experiment(tomllib.loads(_config("lit")))
    literal = next(a for a in config.arms if a.name == "dynamic_as_written")
    assert dict(literal.fixed) == {"alpha": "lr"} and not literal.ranges
    assert set(config.searched("dynamic_as_written")) == {"lr"}  # the train range, as every arm
    assert set(config.searched("dynamic")) == {"lr", "alpha"}
    made = config.train_config("dynamic_as_written", {"lr": 0.02}, seed=0)
    assert made.scheme.alpha == "lr" and made.scheme.floor == 1e-8 and made.lr == 0.02
    assert config.to_dict()["arms"]["dynamic_as_written"] == {"scheme": "dynamic", "alpha": "lr"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_literal_arm_runs_end_to_end_with_two_workers_and_replicates(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "lit.toml"
    path.write_text(_config("lit"))
    with empty_url(backend, tmp_path) as url:
        result = study.run_experiment(path, storage=url, workers=2, batch=2)
        assert result.complete and result.report is not None
        trials = study.experiment_trials("lit", storage=url)
        status = study.experiment_status("lit", storage=url)
        summary = result.report.summary
        html = result.report.path.read_text()
    literal = trials[trials["arm"] == "dynamic_as_written"]
    assert len(literal) == 3 * 3 and set(literal["replicate"]) == {1, 2, 3}
    assert all(set(params) == {"lr"} for params in literal["params"])  # lr, and no alpha
    assert {key: set(p) for key, p in status.best.items() if key[0] == "dynamic_as_written"} == {
        ("dynamic_as_written", r): {"lr"} for r in (1, 2, 3)
    }
    by_arm = {s.arm: s for s in status.summary}
    assert by_arm["dynamic_as_written"].seeds == 3 * 3  # replicates × seeds evaluated
    compared = {c["arm"] for c in summary["comparisons"]}
    assert compared == {"dynamic", "dynamic_as_written"}  # both readings against fixed
    assert summary["main"]["arm"] == "dynamic"  # the verdict's headline stays the generous one
    assert escape(LITERAL) in html and escape(GENEROUS) in html  # each arm's reading named
    assert "dynamic_as_written's expected best" in (summary["budget_sentence"] or "")


@pytest.mark.parametrize("example", ["when.toml", "when-mnist1d.toml"])
def test_the_published_suites_carry_the_literal_arm_in_every_experiment(example: str) -> None:
    from study.config.suite import load_suite

    root = Path(__file__).resolve().parents[2]
    suite = load_suite(root / "examples" / example, confirmed=True)
    assert suite.experiments
    for member in suite.experiments:
        literal = next(a for a in member.config.arms if a.name == "dynamic_as_written")
        assert dict(literal.fixed) == {"alpha": "lr"} and not literal.ranges
        assert set(member.config.searched("dynamic_as_written")) == {"lr"}
