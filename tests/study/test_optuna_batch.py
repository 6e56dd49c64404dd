"""report_many, ask_many and tell_many (study.search.optuna_adapter): what a fused group asks of
Optuna for all its trials at once stores exactly what Optuna's own one-at-a-time calls store, on
SQLite, PostgreSQL and Optuna's in-memory storage."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import storage
from study.search.optuna_adapter import ask_many, report_many, storage_of, tell_many, trial_id_of
from tests.storage.backends import empty_url

VALUES = [0.25, -3.5, math.inf, -math.inf, math.nan, 1e-300]


@pytest.fixture(params=["sqlite", "postgresql", "memory"])
def make_study(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    if request.param == "memory":
        memory = optuna.storages.InMemoryStorage()
        yield lambda name: optuna.create_study(storage=memory, study_name=name)
        return
    with empty_url(request.param, tmp_path) as url, storage.open(url) as store:
        rdb = store.optuna_storage()
        yield lambda name: optuna.create_study(storage=rdb, study_name=name)
        rdb.remove_session()
        rdb.engine.dispose()


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_stores_what_trial_report_stores(make_study):  # type: ignore[no-untyped-def]
    by_report, by_batch = make_study("one-by-one"), make_study("batched")
    singles = [by_report.ask() for _ in VALUES]
    batched = [by_batch.ask() for _ in VALUES]
    for step in (0, 1):
        for trial, value in zip(singles, VALUES, strict=True):
            trial.report(value + step, step)
        finished = report_many(
            by_batch, [(t, step, v + step) for t, v in zip(batched, VALUES, strict=True)]
        )
        assert finished == set()
    expected = [t.intermediate_values for t in by_report.get_trials()]
    stored = [t.intermediate_values for t in by_batch.get_trials()]
    local = [t._cached_frozen_trial.intermediate_values for t in batched]  # what pruners read
    for want, got, kept in zip(expected, stored, local, strict=True):
        assert sorted(got) == sorted(kept) == sorted(want) == [0, 1]
        assert all(_same(got[s], want[s]) and _same(kept[s], want[s]) for s in want)


def test_a_finished_trial_is_skipped_and_named(make_study):  # type: ignore[no-untyped-def]
    study = make_study("stale")
    live, gone = study.ask(), study.ask()
    study.tell(gone, state=TrialState.FAIL)  # as when another worker declares it stale
    finished = report_many(study, [(live, 3, 0.5), (gone, 3, 0.7)])
    assert finished == {trial_id_of(gone)}
    trials = {t.number: t for t in study.get_trials()}
    assert trials[live.number].intermediate_values == {3: 0.5}
    assert trials[gone.number].intermediate_values == {}
    assert 3 not in gone._cached_frozen_trial.intermediate_values


def test_running_it_again_writes_nothing_twice(make_study):  # type: ignore[no-untyped-def]
    """A retry after a commit that landed but whose answer was lost must not fail."""
    study = make_study("again")
    trials = [study.ask() for _ in range(3)]
    report_many(study, [(t, 0, float(i)) for i, t in enumerate(trials)])
    for t in trials:  # as a fresh retry would find them: the local copies not yet updated
        t._cached_frozen_trial.intermediate_values.clear()
    assert report_many(study, [(t, 0, float(i)) for i, t in enumerate(trials)]) == set()
    assert [t.intermediate_values for t in study.get_trials()] == [{0: 0.0}, {0: 1.0}, {0: 2.0}]


def test_one_report_per_trial(make_study):  # type: ignore[no-untyped-def]
    study = make_study("twice")
    trial = study.ask()
    with pytest.raises(ValueError, match="one report per trial"):
        report_many(study, [(trial, 0, 1.0), (trial, 1, 2.0)])
    assert study.get_trials()[0].intermediate_values == {}


DISTS = {
    "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
    "lam": optuna.distributions.FloatDistribution(1e-6, 1e-1, log=True),
    "width": optuna.distributions.IntDistribution(8, 64),
}


def _history(study: optuna.Study, waiting: int) -> None:
    """The same past in every study: 12 told trials, one still running, ``waiting`` retries."""
    for i in range(12):
        study.enqueue_trial({"lr": 1e-3 * (1 + i), "lam": 1e-5 * (1 + i), "width": 8 + 4 * i})
        trial = study.ask(DISTS)
        study.tell(trial, (i * 7919 % 13) / 13)
    study.ask(DISTS)
    for i in range(waiting):
        study.enqueue_trial({"lr": 2e-3 * (1 + i), "lam": 3e-4, "width": 16 + i})


@pytest.mark.parametrize("sampler", ["tpe", "random"])
@pytest.mark.parametrize("waiting", [0, 2])
@pytest.mark.parametrize("given", [False, True], ids=["read", "seen"])
def test_ask_many_asks_what_ask_asks(make_study, sampler, waiting, given):  # type: ignore[no-untyped-def]
    """Same sampler seed, same past: K asks in a row and ask_many give the same trials, whether
    ask_many reads the study itself or is handed it as just read (``seen``, as the claim does)."""

    def fresh(name: str) -> optuna.Study:
        study = make_study(name)
        if sampler == "tpe":  # as dynl2's make_sampler builds it
            study.sampler = optuna.samplers.TPESampler(
                seed=7, multivariate=True, constant_liar=True, n_startup_trials=5
            )
        else:
            study.sampler = optuna.samplers.RandomSampler(seed=7)
        _history(study, waiting)
        return study

    plain, batched = fresh("plain"), fresh("batched")
    asked = [plain.ask(DISTS) for _ in range(8)]
    seen: list[int] = []
    past = batched.get_trials(deepcopy=False) if given else None
    got = ask_many(batched, DISTS, 8, waiting=waiting, then=seen.append, seen=past)
    assert seen == [trial_id_of(t) for t in got]  # each heard of as soon as it was created
    assert [t.number for t in got] == [t.number for t in asked]
    assert [t.params for t in got] == [t.params for t in asked]
    stored = {t.number: t for t in batched.get_trials()}
    for trial in got:
        assert stored[trial.number].state == TrialState.RUNNING
        assert stored[trial.number].params == trial.params
    assert len({tuple(t.params.values()) for t in got}) == 8
    if waiting:  # the retries come first, with their own parameters
        assert [t.params["width"] for t in got[:waiting]] == [16 + i for i in range(waiting)]
    assert batched._thread_local.cached_all_trials is None


def test_ask_many_reads_the_study_once_for_a_whole_group(make_study):  # type: ignore[no-untyped-def]
    """TPE's constant liar reads every finished and running trial at each ask; after the first
    ask of a group those reads come from ask_many's view, not the database."""

    def fresh(name: str) -> optuna.Study:
        study = make_study(name)
        study.sampler = optuna.samplers.TPESampler(
            seed=7, multivariate=True, constant_liar=True, n_startup_trials=5
        )
        _history(study, 0)
        return study

    def reads(study: optuna.Study, ask: Callable[[], object]) -> int:
        backend = storage_of(study)
        calls = []
        original = backend.get_all_trials

        def counted(*args: object, **kwargs: object) -> object:
            calls.append(1)
            return original(*args, **kwargs)

        backend.get_all_trials = counted  # type: ignore[method-assign]
        try:
            ask()
        finally:
            del backend.get_all_trials
        return len(calls)

    one = fresh("one")
    once = reads(one, lambda: one.ask(DISTS))
    assert once >= 2  # Optuna's own ask: its reads, the constant liar's among them
    batched = fresh("group")
    assert reads(batched, lambda: ask_many(batched, DISTS, 8, waiting=0)) == once
    assert "_get_trials" not in vars(batched)  # Study's own method again
    plain = fresh("plain")
    assert reads(plain, lambda: [plain.ask(DISTS) for _ in range(8)]) == 8 * once


# --------------------------------------------------------------------------------- tell_many


def _ended(study: optuna.Study) -> list[optuna.trial.Trial]:
    """Five running trials with reports: to end COMPLETE, PRUNED, PRUNED at a NaN, FAIL, and
    PRUNED before any report."""
    trials = [study.ask(DISTS) for _ in range(5)]
    for trial, last in zip(trials[:4], [0.9, 0.4, math.nan, 0.2], strict=True):
        trial.report(0.1, 0)
        trial.report(last, 1)
    return trials


ENDINGS = [
    (TrialState.COMPLETE, 0.75, {"result": "complete", "best_epoch": 2}),
    (TrialState.PRUNED, None, {"result": "pruned", "best_epoch": 1}),
    (TrialState.PRUNED, None, {"result": "pruned"}),
    (TrialState.FAIL, None, {"result": "diverged", "fail_reason": "loss is nan <b>"}),
    (TrialState.PRUNED, None, {}),
]


def _told(study: optuna.Study) -> list[tuple[object, ...]]:
    return [
        (t.number, t.state, t.values, t.user_attrs, t.params, t.datetime_complete is not None)
        for t in study.get_trials()
    ]


def test_tell_many_stores_what_set_user_attr_and_tell_store(make_study):  # type: ignore[no-untyped-def]
    plain, batched = make_study("plain"), make_study("batched")
    for study in (plain, batched):  # the same sampler and seed: the same parameters
        study.sampler = optuna.samplers.RandomSampler(seed=3)
    one_by_one, together = _ended(plain), _ended(batched)
    for trial, (state, value, attrs) in zip(one_by_one, ENDINGS, strict=True):
        for key, item in attrs.items():
            trial.set_user_attr(key, item)
        plain.tell(trial, value, state=state)
    tells = [(t, *ending) for t, ending in zip(together, ENDINGS, strict=True)]
    states = tell_many(batched, tells)
    assert states == {trial_id_of(t): e[0] for t, e in zip(together, ENDINGS, strict=True)}
    assert _told(batched) == _told(plain)
    assert [t.values for t in batched.get_trials()] == [[0.75], [0.4], None, None, None]
    # the sampler's next draw is the same
    assert batched.ask(DISTS).params == plain.ask(DISTS).params


@pytest.fixture
def far_from_utc() -> Iterator[None]:
    """The process's local time 5 h 30 min ahead of UTC (a POSIX TZ string: no tz database)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "XST-5:30"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_tell_many_stamps_the_end_as_tell_does_away_from_utc(make_study, far_from_utc):  # type: ignore[no-untyped-def]
    """Optuna stores a trial's times as naive UTC and shows them in local time; the batch tell
    must stamp its trials the same way, or a trial's end would be hours off its start."""
    plain, batched = make_study("plain"), make_study("batched")
    one, other = plain.ask(), batched.ask()
    plain.tell(one, 0.5)
    tell_many(batched, [(other, TrialState.COMPLETE, 0.5, {})])
    now = datetime.now()
    for trial in (*plain.get_trials(), *batched.get_trials()):
        assert trial.datetime_start is not None and trial.datetime_complete is not None
        assert abs(trial.datetime_complete - now) < timedelta(minutes=1)
        assert (
            timedelta(0) <= trial.datetime_complete - trial.datetime_start < timedelta(minutes=1)
        )


def test_tell_many_tells_the_sampler_each_trial(make_study):  # type: ignore[no-untyped-def]
    heard: list[tuple[int, TrialState, list[float] | None]] = []

    class Listening(optuna.samplers.RandomSampler):
        def after_trial(self, study, trial, state, values):  # type: ignore[no-untyped-def]
            heard.append((trial.number, state, values))

    study = make_study("heard")
    study.sampler = Listening(seed=0)
    trials = _ended(study)
    tell_many(study, [(t, *e) for t, e in zip(trials, ENDINGS, strict=True)])
    assert heard == [
        (0, TrialState.COMPLETE, [0.75]), (1, TrialState.PRUNED, [0.4]),
        (2, TrialState.PRUNED, None), (3, TrialState.FAIL, None), (4, TrialState.PRUNED, None),
    ]  # fmt: skip


def test_a_trial_finished_elsewhere_keeps_its_state_and_attrs(make_study):  # type: ignore[no-untyped-def]
    study = make_study("stale")
    live, gone = study.ask(), study.ask()
    study.tell(gone, state=TrialState.FAIL)  # as when another worker declares it stale
    states = tell_many(
        study,
        [
            (live, TrialState.COMPLETE, 0.5, {"result": "complete"}),
            (gone, TrialState.COMPLETE, 0.7, {"result": "complete"}),
        ],
    )
    assert states == {trial_id_of(live): TrialState.COMPLETE, trial_id_of(gone): TrialState.FAIL}
    stored = {t.number: t for t in study.get_trials()}
    assert stored[live.number].values == [0.5] and stored[live.number].user_attrs
    assert stored[gone.number].values is None and stored[gone.number].user_attrs == {}


def test_telling_again_after_a_landed_commit_changes_nothing(make_study):  # type: ignore[no-untyped-def]
    study = make_study("again")
    trials = _ended(study)
    tells = [(t, *e) for t, e in zip(trials, ENDINGS, strict=True)]
    first = tell_many(study, tells)
    before = _told(study)
    assert tell_many(study, tells) == first  # each found in the state it was told
    assert _told(study) == before


@pytest.mark.parametrize(
    ("tell", "message"),
    [
        ((TrialState.COMPLETE, None, {}), "finite value"),
        ((TrialState.COMPLETE, math.nan, {}), "finite value"),
        ((TrialState.COMPLETE, math.inf, {}), "finite value"),
        ((TrialState.PRUNED, 0.5, {}), "takes no value"),
        ((TrialState.RUNNING, None, {}), "RUNNING"),
    ],
    ids=repr,
)
def test_a_bad_tell_writes_nothing(make_study, tell, message):  # type: ignore[no-untyped-def]
    study = make_study("bad")
    good, bad = study.ask(), study.ask()
    with pytest.raises(ValueError, match=message):
        tell_many(study, [(good, TrialState.COMPLETE, 0.5, {"a": 1}), (bad, *tell)])
    with pytest.raises(ValueError, match="one tell per trial"):
        tell_many(study, [(good, TrialState.FAIL, None, {}), (good, TrialState.FAIL, None, {})])
    assert [(t.state, t.user_attrs) for t in study.get_trials()] == [(TrialState.RUNNING, {})] * 2


def test_a_sampler_that_raises_leaves_the_batch_unwritten(make_study):  # type: ignore[no-untyped-def]
    class Failing(optuna.samplers.RandomSampler):
        def after_trial(self, study, trial, state, values):  # type: ignore[no-untyped-def]
            if trial.number == 1:
                raise RuntimeError("the sampler broke")

    study = make_study("raising")
    study.sampler = Failing(seed=0)
    trials = [study.ask(), study.ask()]
    with pytest.raises(RuntimeError, match="the sampler broke"):
        tell_many(study, [(t, TrialState.COMPLETE, 0.5, {"a": 1}) for t in trials])
    stored = study.get_trials()
    if not isinstance(storage_of(study), optuna.storages.InMemoryStorage):  # one transaction
        assert [(t.state, t.user_attrs) for t in stored] == [(TrialState.RUNNING, {})] * 2


def _hyperband() -> optuna.pruners.HyperbandPruner:
    """Hyperband as ``make_pruner`` builds it for 9 epochs, initialized (as the first
    ``should_prune`` of a run does): its trials fall into three brackets."""
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)
    pruner._try_initialization(optuna.create_study())
    return pruner


class _Listening(optuna.samplers.RandomSampler):
    """Random search that notes each trial it hears of, with the study it hears it through."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed)
        self.heard: list[tuple[int, TrialState, int | None]] = []

    def after_trial(self, study, trial, state, values):  # type: ignore[no-untyped-def]
        bracket = getattr(study, "_bracket_id", None)  # Hyperband's per-bracket study
        self.heard.append((trial.number, state, bracket))


def test_tell_many_under_hyperband_tells_the_sampler_through_each_bracket(make_study):  # type: ignore[no-untyped-def]
    """Hyperband hands the sampler a study per bracket, and making one reads the storage: read
    inside the write transaction, it committed half the batch and detached its rows
    (DetachedInstanceError). Stored and heard as ``Study.tell`` stores and tells."""
    plain, batched = make_study("plain"), make_study("batched")
    for study in (plain, batched):
        study.pruner = _hyperband()
        study.sampler = _Listening(seed=3)
    one_by_one, together = _ended(plain), _ended(batched)
    for trial, (state, value, attrs) in zip(one_by_one, ENDINGS, strict=True):
        for key, item in attrs.items():
            trial.set_user_attr(key, item)
        plain.tell(trial, value, state=state)
    states = tell_many(batched, [(t, *e) for t, e in zip(together, ENDINGS, strict=True)])
    assert states == {trial_id_of(t): e[0] for t, e in zip(together, ENDINGS, strict=True)}
    assert _told(batched) == _told(plain)
    pruner = batched.pruner
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    for study, trials in ((plain, one_by_one), (batched, together)):
        sampler = study.sampler
        assert isinstance(sampler, _Listening)
        assert sampler.heard == [  # each through its own bracket, as Optuna's tell does
            (t.number, e[0], pruner._get_bracket_id(study, t._cached_frozen_trial))
            for t, e in zip(trials, ENDINGS, strict=True)
        ]


def test_a_sampler_that_writes_in_after_trial_does_not_split_the_batch(make_study):  # type: ignore[no-untyped-def]
    """A sampler may write to the storage as it hears of a trial (Optuna's own samplers store
    their constraints so). That write must not run inside tell_many's transaction, where it
    would commit it half done and leave the rest of the batch on detached rows."""

    class Noting(optuna.samplers.RandomSampler):
        def after_trial(self, study, trial, state, values):  # type: ignore[no-untyped-def]
            storage_of(study).set_trial_system_attr(trial_id_of(trial), "heard", state.name)

    study = make_study("noting")
    study.sampler = Noting(seed=0)
    trials = [study.ask(DISTS) for _ in range(3)]
    states = tell_many(study, [(t, TrialState.COMPLETE, 0.5, {"a": t.number}) for t in trials])
    assert set(states.values()) == {TrialState.COMPLETE}
    assert [(t.state, t.values, t.user_attrs, t.system_attrs) for t in study.get_trials()] == [
        (TrialState.COMPLETE, [0.5], {"a": n}, {"heard": "COMPLETE"}) for n in range(3)
    ]
