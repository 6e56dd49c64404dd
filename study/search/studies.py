"""One Optuna study per search: ``EXPERIMENT/ARM`` for an arm's first replicate, and
``EXPERIMENT/ARM/R`` for replicate R >= 2 of ``[search] replicates`` (docs/statistics.md).

Also the bookkeeping every worker and the progress display share: which trials count toward an
arm's budget. A trial counts when it is a *result*: COMPLETE, PRUNED, or FAIL because the run
diverged (the scheme failed: that is an answer). A trial whose worker died (heartbeat lost) or
crashed is not a result: it does not count, and a stale one is retried once.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    distribution_to_json,
    json_to_distribution,
)
from optuna.storages import RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from storage import STUDY_MARK, Store, draw_count, split_study_name, study_name, trial_draws
from study.config.experiment import ExperimentConfig
from study.config.ranges import distribution
from study.errors import UsageError
from study.search.keys import (  # the names that need no Optuna, here too as always
    CONFIG_ATTR,
    DIVERGED,
    RESULT_ATTR,
    ArmCounts,
    Heartbeat,
    SearchKey,
    searched_arms,
    searches,
)
from study.search.optuna_adapter import record_heartbeat, trial_id_of
from study.search.samplers import make_pruner, search_sampler

try:  # renamed in optuna 4.9
    from optuna.storages import RetryHeartbeatStaleTrialCallback as _RetryCallback
except ImportError:  # pragma: no cover - optuna < 4.9
    from optuna.storages import RetryFailedTrialCallback as _RetryCallback  # type: ignore[assignment, unused-ignore]


def distributions(config: ExperimentConfig, arm: str) -> dict[str, BaseDistribution]:
    return {name: distribution(r) for name, r in config.searched(arm).items()}


def optuna_storage(store: Store, heartbeat: Heartbeat) -> RDBStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = store.optuna_storage(heartbeat.interval, heartbeat.grace)
        # A trial whose heartbeat stopped is failed by whoever notices, then queued once more
        # with the same parameters (a WAITING trial the next ask() of any worker picks up).
        retry = _RetryCallback(max_retry=1)
        storage.heartbeat_stale_trial_callback = retry  # optuna >= 4.9
        storage.failed_trial_callback = retry  # optuna < 4.9
    return storage


def search_seed(config: ExperimentConfig, replicate: int = 1) -> int:
    """The seed of a search: every worker's sampler for it, first start or resumed, draws trial
    k from a hash of this seed and k (:func:`samplers.search_sampler`), so trial k's draws do
    not depend on who asks for it. Replicate 1 searches with the experiment seed, replicate
    R >= 2 with one derived from it and R."""
    return config.seed if replicate == 1 else _derived(f"replicate:{config.seed}:{replicate}")


def _derived(text: str) -> int:
    """A seed below 2**31 drawn from ``text`` (the same text, the same seed)."""
    digest = hashlib.sha256(f"dynl2-{text}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 2**31


class ForeignStudy(UsageError):
    """A study named like one of the experiment's arms that dynl2 did not create for it."""


def study_mark(config: ExperimentConfig, arm: str, replicate: int = 1) -> dict[str, Any]:
    """The mark (``storage.STUDY_MARK``) of the study of ``arm``'s replicate ``replicate``:
    what it was created for (replicate 1's mark is the one an arm's study always had)."""
    mark: dict[str, Any] = {
        "experiment": config.name,
        "arm": arm,
        "direction": config.direction,
        "space": {n: distribution_to_json(d) for n, d in distributions(config, arm).items()},
    }
    if replicate != 1:
        mark["replicate"] = replicate
    return mark


def _same_mark(found: object, wanted: Mapping[str, Any]) -> str | None:
    """``None`` when ``found`` is ``wanted``; else what differs, in a few words."""
    if not isinstance(found, Mapping):
        return "its dynl2 mark is damaged"
    for key in ("experiment", "arm", "direction"):
        if found.get(key) != wanted[key]:
            return f"it was created by dynl2 for {key} {found.get(key)!r}, not {wanted[key]!r}"
    if found.get("replicate", 1) != wanted.get("replicate", 1):
        return f"it was created by dynl2 for replicate {found.get('replicate', 1)!r}"
    space = found.get("space")
    try:
        ours = {n: json_to_distribution(d) for n, d in wanted["space"].items()}
        theirs = {n: json_to_distribution(d) for n, d in space.items()}  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError, KeyError):
        return "its dynl2 mark is damaged"
    if theirs != ours:
        return "it was created by dynl2 for another search space"
    return None


def _unmarked(
    storage: RDBStorage, study_id: int, config: ExperimentConfig, arm: str, legacy: bool
) -> str | None:
    """Why an unmarked study is not the arm's search (``None``: a study an older dynl2
    created for it, before studies were marked, which may be adopted).

    ``legacy`` says the experiment was created before this look, as an older dynl2 did before
    creating its studies. Such a study then qualifies when its direction is the experiment's
    and every trial is one dynl2 could have made: the arm's exact search space, and every
    finished trial carrying the resolved config dynl2 records before training.
    """
    if not legacy:
        return "it has no dynl2 mark (another program made it)"
    if storage.get_study_directions(study_id) != [StudyDirection[config.direction.upper()]]:
        return "it has no dynl2 mark and another direction"
    space = distributions(config, arm)
    for trial in storage.get_all_trials(study_id, deepcopy=False):
        if trial.distributions and trial.distributions != space:
            return f"it has no dynl2 mark and trial {trial.number} has other parameters"
        if any(not _inside(space[n], v) for n, v in trial.params.items()):
            return f"it has no dynl2 mark and trial {trial.number} lies outside the ranges"
        finished = trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        if finished and CONFIG_ATTR not in trial.user_attrs:
            return f"it has no dynl2 mark and trial {trial.number} was not trained by dynl2"
    return None


def _inside(d: BaseDistribution, value: Any) -> bool:
    low, high = getattr(d, "low", None), getattr(d, "high", None)
    if low is None or high is None or isinstance(value, bool):
        return False
    return isinstance(value, int | float) and low <= value <= high


def check_studies(store: Store, config: ExperimentConfig, *, legacy: bool) -> list[SearchKey]:
    """Refuse (:class:`ForeignStudy`, one line naming the study) when a study named
    ``EXPERIMENT/...`` in the store is not one dynl2 created for this experiment's searches;
    returns the searches whose study exists. Writes nothing. Under the experiment's study lock,
    so a study is never seen between its creation and its mark (:func:`open_studies`)."""
    with store.lock(_studies_lock(config)):
        return _check_studies(store, config, legacy=legacy, mark=False)


def _studies_lock(config: ExperimentConfig) -> str:
    return f"studies:{config.name}"


def _check_studies(
    store: Store, config: ExperimentConfig, *, legacy: bool, mark: bool
) -> list[SearchKey]:
    """:func:`check_studies` without the lock; with ``mark``, the unmarked studies an older
    dynl2 made (see :func:`_unmarked`) get their mark once every study has passed."""
    storage = store.optuna_storage()
    arms = {arm.name for arm in searched_arms(config)}
    found: list[SearchKey] = []
    adopt: list[tuple[int, str]] = []
    for frozen in storage.get_all_studies():
        parts = split_study_name(frozen.study_name)
        if parts is None or parts[0] != config.name:
            continue
        arm, replicate = parts[1], parts[2]
        study_id = storage.get_study_id_from_name(frozen.study_name)
        if arm not in arms:
            why: str | None = f"the experiment has no searched arm {arm!r}"
        elif replicate > config.search.replicates:
            why = (
                f"the experiment searches each arm {config.search.replicates} time(s), so it "
                f"has no replicate {replicate}"
            )
        elif STUDY_MARK in frozen.system_attrs:
            why = _same_mark(frozen.system_attrs[STUDY_MARK], study_mark(config, arm, replicate))
        elif replicate != 1:
            why = "it has no dynl2 mark (another program made it)"  # replicates came with marks
        else:
            why = _unmarked(storage, study_id, config, arm, legacy)
            adopt.append((study_id, arm))
        if why is not None:
            raise ForeignStudy(
                f"the Optuna study {frozen.study_name!r} in {store.display_url} is not one "
                f"dynl2 created for experiment {config.name!r}: {why}; dynl2 only uses its own "
                "studies: choose another [experiment] name, or delete that study (optuna "
                f"delete-study --study-name {frozen.study_name!r} --storage URL)"
            )
        found.append((arm, replicate))
    for study_id, arm in adopt if mark else ():  # only once every study has passed
        storage.set_study_system_attr(study_id, STUDY_MARK, study_mark(config, arm))
    return found


def open_studies(
    store: Store, config: ExperimentConfig, heartbeat: Heartbeat
) -> dict[SearchKey, optuna.Study]:
    """Create (or load) the study of every search (each searched arm, once per replicate),
    each with its replicate's sampler: the same in every worker (:func:`search_seed`).

    Under the experiment's lock, so that no worker sees a study between its creation and its
    mark: every existing study is checked first (:func:`check_studies`), then the missing ones
    are created and marked."""
    storage = optuna_storage(store, heartbeat)
    with store.lock(_studies_lock(config)):
        existing = set(_check_studies(store, config, legacy=True, mark=True))
        for arm, replicate in searches(config):
            if (arm, replicate) not in existing:
                study_id = storage.create_new_study(
                    [StudyDirection[config.direction.upper()]],
                    study_name(config.name, arm, replicate),
                )
                storage.set_study_system_attr(
                    study_id, STUDY_MARK, study_mark(config, arm, replicate)
                )
    studies = {}
    for arm, replicate in searches(config):
        studies[(arm, replicate)] = optuna.load_study(
            storage=storage,
            study_name=study_name(config.name, arm, replicate),
            sampler=search_sampler(config.search, search_seed(config, replicate)),
            pruner=make_pruner(config.search, config.max_epochs),
        )
    return studies


def adopt_silent_claims(
    store: Store, study: optuna.Study, trials: Sequence[FrozenTrial] | None = None
) -> list[int]:
    """Give a first heartbeat to every RUNNING trial of ``study`` that has none.

    A worker writes its claim's first heartbeat right after asking, under the claim lock; one
    killed (or cut off from the database) in between leaves a RUNNING trial Optuna would never
    declare stale, and its arm would wait for it forever. Called under the same lock, so it
    only ever sees such orphans: the heartbeat written here lapses, and after the grace period
    the trial is failed and retried like any other dead worker's. Returns their trial ids.
    ``trials``: the study's trials as just read under the lock (default: read them now).
    """
    if trials is None:
        trials = study.get_trials(deepcopy=False)
    running = [trial_id_of(t) for t in trials if t.state == TrialState.RUNNING]
    silent = store.without_heartbeat(running)
    for trial_id in silent:
        record_heartbeat(study, trial_id)
    return silent


def is_result(trial: FrozenTrial) -> bool:
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and trial.user_attrs.get(RESULT_ATTR) == DIVERGED


def count(
    study: optuna.Study, direction: str, trials: Sequence[FrozenTrial] | None = None
) -> ArmCounts:
    """The study's trials counted by what became of them; ``trials``: as just read (default:
    read them now)."""
    if trials is None:
        trials = study.get_trials(deepcopy=False)
    by_state: Mapping[TrialState, int] = {s: sum(t.state == s for t in trials) for s in TrialState}
    diverged = sum(
        t.state == TrialState.FAIL and t.user_attrs.get(RESULT_ATTR) == DIVERGED for t in trials
    )
    values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = (max(values) if direction == "maximize" else min(values)) if values else None
    table = trial_draws(trials)
    return ArmCounts(
        complete=by_state[TrialState.COMPLETE],
        pruned=by_state[TrialState.PRUNED],
        diverged=diverged,
        lost=by_state[TrialState.FAIL] - diverged,
        running=by_state[TrialState.RUNNING],
        waiting=by_state[TrialState.WAITING],
        best=best,
        asked=draw_count(table),
        first_open=min(
            (
                table[t.number]
                for t in trials
                if t.state in (TrialState.RUNNING, TrialState.WAITING)
            ),
            default=None,
        ),
    )


def trial_seed(config: ExperimentConfig, draw: int) -> int:
    """A search's ``draw``-th trial (:mod:`storage.draws`; a retry trains with the seed of
    the trial it retries) gets the same trainer seed in every arm and every replicate (common
    random numbers: the replicates differ by their samplers' draws)."""
    return (config.seed * 1_000_003 + draw) % 2**63


def search_order_seed(config: ExperimentConfig) -> int:
    """The batch order of every search trial, in every arm and replicate (common random
    numbers), whichever trials share its fused group: so a trial's result depends on its own
    config alone, not on ``--batch`` or the number of workers. Trial 0's seed: the order a
    group starting at trial 0 always had."""
    return trial_seed(config, 0)


def evaluation_seed(config: ExperimentConfig, index: int) -> int:
    """Evaluation seed ``index`` is shared by every arm and distinct from the search seeds."""
    return (2**40 + config.seed * 1_000_003 + index) % 2**63
