"""Issue 33, reruns that reproduce: trial k's parameters are a function of (experiment seed,
replicate, k) whichever worker, group or resumed run asks for it; with ``[search] reproducible``
TPE's too, through a history that is a function of k; a trial's metrics are a function of its
config whichever group it trains in. First each mechanism alone, then ``examples/tiny.toml`` end
to end on SQLite and PostgreSQL with 1, 2 and 4 workers, other ``--batch``, and a resume."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import torch

import storage
from storage import trial_draws
from study.config.experiment import ExperimentConfigError, SearchConfig
from study.search import fused as fused_trials
from study.search import signals, worker
from study.search.keys import ArmCounts
from study.search.optuna_adapter import History
from study.search.samplers import (
    make_pruner,
    reproducible_lag,
    search_sampler,
    trial_draw_seed,
)
from tests.storage.backends import BACKENDS, empty_url
from tests.trainers.histories import result_of, same_history
from trainers import DigitsData, DynamicScheme, MLPModel, TrainConfig, load_dataset, train_fused

ROOT = Path(__file__).resolve().parents[2]
RETRY_CALLBACK = getattr(  # renamed in Optuna 4.9
    optuna.storages, "RetryHeartbeatStaleTrialCallback", optuna.storages.RetryFailedTrialCallback
)
SPACE = {
    "lr": optuna.distributions.FloatDistribution(1e-3, 3e-2, log=True),
    "lam": optuna.distributions.FloatDistribution(1e-6, 1e-1, log=True),
}


@pytest.fixture(autouse=True)
def _quiet_optuna() -> Iterator[None]:
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    yield
    optuna.logging.set_verbosity(level)


def _value(params: dict[str, float]) -> float:
    return -((math.log(params["lr"]) + 4.0) ** 2) - (math.log(params["lam"]) + 9.0) ** 2


def _asked(
    search: SearchConfig, n: int, workers: int, *, tell_late: int = 0
) -> list[dict[str, float]]:
    """The parameters of trials 0 .. n-1 of one in-memory study asked by ``workers`` samplers
    in turn (each as a worker process would hold it), each trial told ``tell_late`` asks after
    it was asked (0: at once)."""
    study = optuna.create_study(direction="maximize")
    samplers = [search_sampler(search, seed=7) for _ in range(workers)]
    open_trials: list[optuna.trial.Trial] = []
    for k in range(n):
        study.sampler = samplers[k % workers]
        trial = study.ask(SPACE)
        open_trials.append(trial)
        while len(open_trials) > tell_late:
            done = open_trials.pop(0)
            study.tell(done, _value(done.params))
    return [t.params for t in study.get_trials()[:n]]


def _asked_with_a_retry(
    search: SearchConfig, n: int, workers: int, tell_late: int, handed_back: int
) -> list[dict[str, float]]:
    """As :func:`_asked`, but trial ``handed_back`` is failed as soon as it is asked and
    retried as a stop hands a trial back (Optuna's retry callback; the next ask pops it):
    the parameters of the first ``n`` draws, each by its trial that was not handed back."""
    study = optuna.create_study(direction="maximize")
    samplers = [search_sampler(search, seed=7) for _ in range(workers)]
    open_trials: list[optuna.trial.Trial] = []
    asks = 0
    while len(set(trial_draws(study.get_trials(deepcopy=False)).values())) < n or any(
        t.state == optuna.trial.TrialState.WAITING for t in study.get_trials(deepcopy=False)
    ):
        study.sampler = samplers[asks % workers]
        asks += 1
        trial = study.ask(SPACE)
        if trial.number == handed_back:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            RETRY_CALLBACK(max_retry=1)(study, study.trials[handed_back])
            continue
        open_trials.append(trial)
        while len(open_trials) > tell_late:
            done = open_trials.pop(0)
            study.tell(done, _value(done.params))
    trials = [t for t in study.get_trials() if t.state != optuna.trial.TrialState.FAIL]
    draw = trial_draws(study.get_trials())
    return [t.params for t in sorted(trials, key=lambda t: draw[t.number])][:n]


# ------------------------------------------------------- trial k drawn from (seed, k) alone


@pytest.mark.parametrize("sampler", ["random", "qmc"])
def test_independent_samplers_draw_trial_k_alike_whoever_asks(sampler: str) -> None:
    search = SearchConfig(sampler=sampler)
    alone = _asked(search, 8, workers=1)
    assert _asked(search, 8, workers=3, tell_late=2) == alone
    assert len({tuple(p.values()) for p in alone}) == 8


def test_tpe_start_up_trials_are_drawn_alike_whoever_asks() -> None:
    search = SearchConfig(sampler="tpe")
    alone = _asked(search, 10, workers=1)  # TPE's 10 random start-up trials
    assert _asked(search, 10, workers=4, tell_late=3) == alone


def test_tpe_after_start_up_depends_on_what_has_ended_unless_reproducible() -> None:
    """Told at once, or three asks late: the model sees other histories, and proposes other
    points; with ``reproducible`` (lag 4) trial k sees trials up to k - 4 either way."""
    plain = SearchConfig(sampler="tpe", n_trials=16)
    assert _asked(plain, 16, workers=1) != _asked(plain, 16, workers=2, tell_late=3)
    fixed = SearchConfig(sampler="tpe", n_trials=16, reproducible=True)
    assert reproducible_lag(fixed) == 4
    alone = _asked(fixed, 16, workers=1, tell_late=3)
    assert _asked(fixed, 16, workers=3, tell_late=3) == alone
    assert _asked(fixed, 16, workers=2, tell_late=1) == alone  # ended earlier: not seen
    # where the study holds just that history, the view changes nothing
    assert _asked(plain, 16, workers=1, tell_late=3) == alone


@pytest.mark.parametrize("sampler", ["random", "qmc"])
def test_a_trial_handed_back_shifts_no_later_draw(sampler: str) -> None:
    """Trial 3 handed back and retried as trial 4: the trials after it draw what trials 4, 5,
    ... drew in a search without the stop (by draw, not by trial number)."""
    search = SearchConfig(sampler=sampler)
    alone = _asked(search, 8, workers=1)
    assert _asked_with_a_retry(search, 8, workers=2, tell_late=1, handed_back=3) == alone


def test_reproducible_tpe_proposes_alike_after_a_trial_handed_back() -> None:
    """Trial 12 (after the start-up) handed back and retried: every draw, the modelled ones
    after it included, proposes what it proposes without the stop (the history in draws)."""
    fixed = SearchConfig(sampler="tpe", n_trials=18, reproducible=True)
    alone = _asked(fixed, 18, workers=1, tell_late=3)
    assert _asked_with_a_retry(fixed, 18, workers=2, tell_late=3, handed_back=12) == alone
    assert _asked_with_a_retry(fixed, 18, workers=1, tell_late=2, handed_back=4) == alone


def test_each_trial_has_its_own_draw_seed() -> None:
    assert len({trial_draw_seed(0, k) for k in range(1000)}) == 1000
    assert trial_draw_seed(0, 5) != trial_draw_seed(1, 5)


def test_the_history_of_trial_k_hides_what_ended_after_k_minus_lag() -> None:
    study = optuna.create_study(direction="maximize")
    for _ in range(6):
        trial = study.ask(SPACE)
        study.tell(trial, _value(trial.params))
    asking = study.ask(SPACE)  # trial 6
    seen = History(study, asking.number, lag=3)
    states = {t.number: t.state for t in seen.get_trials(deepcopy=False)}
    complete = optuna.trial.TrialState.COMPLETE
    running = optuna.trial.TrialState.RUNNING
    assert states == {0: complete, 1: complete, 2: complete, 3: complete} | dict.fromkeys(
        (4, 5, 6), running
    )
    hidden = seen._get_trials(deepcopy=False, states=(running,), use_cache=True)
    assert [t.number for t in hidden] == [4, 5, 6]
    assert all(t.value is None and not t.intermediate_values for t in hidden)
    assert [t.params for t in hidden[:2]] == [t.params for t in study.get_trials()[4:6]]
    assert study.get_trials()[4].state == complete  # the study itself is untouched


def test_the_history_shows_a_retry_in_the_place_of_the_trial_it_retries() -> None:
    """Trial 2 handed back and retried as trial 3; trial 4 asks with lag 1: it sees draws 0,
    1 and 2 (trial 3, numbered 2), the handed-back trial not at all, then itself."""
    study = optuna.create_study(direction="maximize")
    first, second, handed = (study.ask(SPACE) for _ in range(3))
    study.tell(first, 0.1)
    study.tell(second, 0.2)
    study.tell(handed, state=optuna.trial.TrialState.FAIL)
    RETRY_CALLBACK(max_retry=1)(study, study.trials[2])
    retry = study.ask(SPACE)
    study.tell(retry, 0.3)
    asking = study.ask(SPACE)
    assert (retry.number, asking.number) == (3, 4)
    seen = History(study, asking.number, lag=1).get_trials(deepcopy=False)
    assert [(t.number, t.state.name, t.value) for t in seen] == [
        (0, "COMPLETE", 0.1),
        (1, "COMPLETE", 0.2),
        (2, "COMPLETE", 0.3),
        (4, "RUNNING", None),
    ]
    assert seen[2].params == handed.params
    assert study.trials[3].number == 3  # the study's own trial keeps its number


def test_the_lagged_median_pruner_judges_against_the_history() -> None:
    """Trial 7 with lag 4 sees trials 0..3: four complete trials, below the five the median
    pruner needs, so it never prunes; the plain pruner sees seven and prunes the worst curve."""
    search = SearchConfig(sampler="random", pruner="median", reproducible=True, batch=4)
    lagged, plain = make_pruner(search, 10), make_pruner(SearchConfig(pruner="median"), 10)
    study = optuna.create_study(direction="maximize")
    for k in range(7):
        trial = study.ask(SPACE)
        for epoch in range(1, 4):
            trial.report(0.5 + 0.01 * k, epoch)
        study.tell(trial, 0.5 + 0.01 * k)
    worst = study.ask(SPACE)
    for epoch in range(1, 4):
        worst.report(0.1, epoch)
    frozen = study.get_trials()[-1]
    assert plain.prune(study, frozen)
    assert not lagged.prune(study, frozen)


# ------------------------------------------------------------- the claim waits for k - lag


def _counts(results: int, running: int, waiting: int, asked: int, first_open: int | None):
    return ArmCounts(results, 0, 0, 0, running, waiting, None, asked, first_open)


@pytest.mark.parametrize(
    ("counts", "lag", "free"),
    [
        (_counts(0, 0, 0, 0, None), None, 10),
        (_counts(0, 0, 0, 0, None), 4, 4),  # trials 0..3 see nothing yet
        (_counts(3, 1, 0, 4, 0), 4, 0),  # trial 4 must see trial 0, still running
        (_counts(3, 1, 0, 4, 3), 4, 3),  # 0..2 ended: trials 4, 5, 6 may start
        (_counts(8, 2, 0, 10, 8), 1, 0),  # lag 1: one at a time
        (_counts(4, 1, 1, 10, 8), 4, 3),  # a retry waiting, and two new ones
        (_counts(9, 0, 0, 9, None), 4, 1),  # the budget's last
    ],
)
def test_a_claim_asks_only_trials_whose_history_has_ended(counts, lag, free) -> None:
    assert worker._free(counts, 10, lag) == free


# ------------------------------------------------------------------------- the config key


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"reproducible": "yes"}, "search.reproducible: must be true or false, got 'yes'"),
        ({"reproducible": 1}, "search.reproducible: must be true or false, got 1"),
        (
            {"reproducible": True, "sampler": "cmaes"},
            "search.reproducible: is implemented for the tpe, random, qmc samplers, not cmaes",
        ),
        (
            {"reproducible": True, "sampler": "gp"},
            "search.reproducible: is implemented for the tpe, random, qmc samplers, not gp",
        ),
        (
            {"reproducible": True, "pruner": "hyperband"},
            "search.reproducible: is implemented with the none and median pruners, not hyperband",
        ),
    ],
)
def test_a_bad_reproducible_is_one_line_naming_the_key(settings, message) -> None:
    with pytest.raises(ExperimentConfigError) as info:
        SearchConfig(**settings)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_reproducible_is_stored_only_when_set() -> None:
    assert "reproducible" not in SearchConfig().to_dict()
    assert SearchConfig(reproducible=True).to_dict()["reproducible"] is True
    assert SearchConfig(**SearchConfig(reproducible=True).to_dict()).reproducible


def test_the_cli_refuses_it_for_cmaes_with_exit_2(tmp_path: Path) -> None:
    text = (ROOT / "examples/tiny.toml").read_text()
    text = text.replace('sampler = "random"', 'sampler = "cmaes"\nreproducible = true')
    (tmp_path / "tiny.toml").write_text(text)
    url = f"sqlite:///{tmp_path / 'dynl2.db'}"
    code, _, err = _cli("run", str(tmp_path / "tiny.toml"), "--storage", url)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "search.reproducible" in err, err


# ----------------------------------------------------- a trial's metrics, whatever its group


def test_a_config_trains_alike_in_any_group_size_and_position() -> None:
    """A search trial (shared batch order) alone, and in groups of 2, 4 and 6 at any position:
    equal up to float32 rounding (a fused group sums the same products in another order; the
    tolerance of tests/trainers/histories.py); its accuracies here are identical."""
    small = TrainConfig(
        data=DigitsData(), model=MLPModel(hidden=(16,)), epochs=3, batch_size=100, device="cpu"
    )
    data = load_dataset(small.data, torch.device("cpu"))
    configs = [
        small.with_(scheme=DynamicScheme(alpha=1e-2 * (1 + k)), seed=100 + k, lr=4e-3 * (1 + k))
        for k in range(6)
    ]
    target, others = configs[3], configs[:3] + configs[4:]
    alone = result_of(train_fused([target], data=data, shared_order=42)[0])  # type: ignore[arg-type]
    for size, position in [(2, 0), (2, 1), (4, 2), (6, 5)]:
        group = [*others[:position], target, *others[position : size - 1]]
        fused = train_fused(group, data=data, shared_order=42)  # type: ignore[arg-type]
        member = result_of(fused[position])
        same_history(alone.history, member.history, len(data.y_val))
        assert [e.val_acc for e in member.history] == [e.val_acc for e in alone.history]
        assert member.test_acc == alone.test_acc


# ------------------------------------------------------------------------- end to end

EPOCHS_TOL = {"rel": 1e-4, "abs": 1e-6}  # losses: float32 rounding of fused groups
ACC_TOL = 1.5 / 360  # accuracies: one borderline example of the digits' val/test splits


def _cli(*args: str) -> tuple[int, str, str]:
    from study.cli.dispatch import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _tiny(directory: Path, *changes: tuple[str, str]) -> Path:
    """examples/tiny.toml, made smaller (and changed) by text replacement."""
    text = (ROOT / "examples/tiny.toml").read_text()
    for old, new in (("epochs = 3", "epochs = 2"), ("replicates = 3", "replicates = 2"), *changes):
        assert old in text, f"examples/tiny.toml no longer has {old!r}"
        text = text.replace(old, new)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tiny.toml"
    path.write_text(text)
    return path


def _run(backend: str, directory: Path, config: Path, *flags: str) -> tuple[pd.DataFrame, ...]:
    """``dynl2 run CONFIG FLAGS`` on a fresh database; its trials and evaluations."""
    with empty_url(backend, directory) as url:
        _ran(config, url, *flags)
        return _read(url)


def _ran(config: Path, url: str, *flags: str) -> None:
    code, _, err = _cli("run", str(config), "--storage", url, "--quiet", *flags)
    assert code == 0, err


def _read(url: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    with storage.open(url, create=False) as store:
        trials = store.trials("tiny").sort_values(["arm", "replicate", "number"])
        evals = store.evaluations("tiny").sort_values(["arm", "replicate", "seed"])
    return trials.reset_index(drop=True), evals.reset_index(drop=True)


def _same(a: tuple[pd.DataFrame, ...], b: tuple[pd.DataFrame, ...]) -> None:
    """The same trials (parameters exactly; values to the tolerance) per (arm, replicate,
    draw), each draw by its trial that was not handed back, and the same evaluation rows
    (parameters and seeds exactly; metrics to it)."""
    (trials_a, evals_a), (trials_b, evals_b) = (_by_draw(a[0]), a[1]), (_by_draw(b[0]), b[1])
    key = ["arm", "replicate", "number", "state"]
    assert trials_a[key].values.tolist() == trials_b[key].values.tolist()
    assert trials_a["params"].tolist() == trials_b["params"].tolist()
    assert trials_a["value"].tolist() == pytest.approx(trials_b["value"].tolist(), abs=ACC_TOL)
    key = ["arm", "replicate", "seed", "trainer_seed"]
    assert evals_a[key].values.tolist() == evals_b[key].values.tolist()
    assert evals_a["params"].tolist() == evals_b["params"].tolist()
    for column in ("test_loss", "val_loss"):
        assert evals_a[column].tolist() == pytest.approx(evals_b[column].tolist(), **EPOCHS_TOL)
    for column in ("test_acc", "val_acc"):
        assert evals_a[column].tolist() == pytest.approx(evals_b[column].tolist(), abs=ACC_TOL)


def _by_draw(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials not handed back, numbered by draw (a run without stops: as they were)."""
    kept = trials[trials["state"] != "FAIL"].assign(number=lambda t: t["draw"])
    return kept.sort_values(["arm", "replicate", "number"]).reset_index(drop=True)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Runs in this process (their reports land under ``tmp_path``); torch's threads put back."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DYNL2_THREADS", "1")
    before = torch.get_num_threads()
    yield tmp_path
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_random_search_repeats_with_1_and_4_workers_and_any_batch(backend, here) -> None:
    """One worker a trial at a time, then four in groups of 3 (claims interleave, and a
    group's members train beside others than before); two workers meet in the TPE test."""
    config = _tiny(here, ("n_trials = 4", "n_trials = 6"))
    alone = _run(backend, here / "w1", config, "--workers", "1", "--batch", "1")
    assert alone[0]["state"].eq("COMPLETE").all() and len(alone[0]) == 3 * 2 * 6
    _same(_run(backend, here / "w4", config, "--workers", "4", "--batch", "3"), alone)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_reproducible_tpe_repeats_with_workers_batch_and_a_resume(
    backend, here, monkeypatch
) -> None:
    """TPE with ``reproducible`` (lag 2 from ``[search] batch``), 14 trials: 10 start-up, 4
    modelled. One worker in groups of 2; two workers in groups of 3; and a run stopped (as by
    Ctrl-C) in the first epoch of its fourth group of 2, which hands those two trials back,
    then run again to the end in groups of 1: the retries train with their draws' seeds and
    the draws after them are those of the run left alone."""
    tpe = ('sampler = "random"', 'sampler = "tpe"\nreproducible = true\nbatch = 2')
    config = _tiny(here, tpe, ("n_trials = 4", "n_trials = 14"), ("replicates = 2", ""))
    alone = _run(backend, here / "w1", config, "--workers", "1")
    assert alone[0]["state"].eq("COMPLETE").all() and len(alone[0]) == 3 * 14
    _same(_run(backend, here / "w2", config, "--workers", "2", "--batch", "3"), alone)
    with empty_url(backend, here / "resumed") as url:
        with monkeypatch.context() as patched:
            reports = fused_trials.report_many  # a call per group and epoch: 6 for three groups
            patched.setattr(fused_trials, "report_many", _stopping_after(6, reports))
            patched.setattr(signals, "_stopping", False)  # restored: the stop sets it
            code, _, err = _cli("run", str(config), "--storage", url, "--quiet")
        assert code == 130, err
        stopped, _ = _read(url)
        states = stopped["state"].value_counts().to_dict()
        assert states == {"COMPLETE": 6, "FAIL": 2, "WAITING": 2}, states
        _ran(config, url, "--workers", "1", "--batch", "1")
        resumed = _read(url)
    assert resumed[0]["state"].value_counts().to_dict() == {"COMPLETE": 3 * 14, "FAIL": 2}
    assert not resumed[0]["draw"].eq(resumed[0]["number"]).all()  # the retries came later
    _same(resumed, alone)


def _stopping_after(calls: int, call: Callable[..., Any]) -> Callable[..., Any]:
    """``call`` that raises KeyboardInterrupt (a stop) at its call ``calls + 1``."""
    made: list[int] = []

    def stopping(*args: Any, **kwargs: Any) -> Any:
        if len(made) == calls:
            raise KeyboardInterrupt
        made.append(1)
        return call(*args, **kwargs)

    return stopping
