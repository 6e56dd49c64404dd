"""The private Optuna names dynl2 uses (:data:`PRIVATE_NAMES`, each with what it is for, checked
against the installed Optuna by the tests) and the accessors the rest of dynl2 goes through
instead of touching one: a trial's id, a study's storage, its heartbeats, a trial as the
pruner sees it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, cast

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial


@dataclass(frozen=True)
class PrivateName:
    """A private Optuna name this module uses: ``path`` (dotted) looked up from ``where`` (a
    module or class; ``instance``: from an object of that class, whose ``__init__`` sets it).
    A function or method called here names the parameters it is passed, in order (``self``
    left out): Optuna changes these too (``_set_trial_value_without_commit`` took a trial id
    before 4.6, and takes the trial's row since)."""

    where: str
    path: str
    use: str  # what for, to finish the sentence "... which study/search/optuna_adapter uses for"
    instance: bool = False
    parameters: tuple[str, ...] | None = None  # a callable's, as called here; None: not called

    @property
    def name(self) -> str:
        return f"{self.where}.{self.path}"


_BATCH = "writing a fused group's reports and tells in one transaction"
_ASKS = "creating a fused group's trials, and writing their parameters, in one transaction each"
PRIVATE_NAMES: tuple[PrivateName, ...] = (
    PrivateName("optuna.storages._rdb.models", "TrialModel", _BATCH),
    PrivateName("optuna.storages._rdb.models", "StudyModel", _ASKS),
    PrivateName("optuna.storages._rdb.models", "TrialHeartbeatModel", _ASKS),
    PrivateName("optuna.storages._rdb.models", "TrialParamModel", _ASKS),
    PrivateName("optuna.storages._rdb.models", "TrialSystemAttributeModel", _ASKS),
    PrivateName("optuna.storages._rdb.models", "TrialIntermediateValueModel", _BATCH),
    PrivateName(
        "optuna.storages._rdb.models",
        "TrialIntermediateValueModel.intermediate_value_to_stored_repr",
        "storing a reported value as Trial.report stores it (inf, -inf, nan)",
        parameters=("value",),
    ),
    PrivateName("optuna.storages._rdb.models", "TrialUserAttributeModel", _BATCH),
    PrivateName("optuna.storages._rdb.models", "TrialValueModel", _BATCH),
    PrivateName(
        "optuna.storages._rdb.models",
        "TrialValueModel.value_to_stored_repr",
        "storing a told value as Study.tell stores it (inf, -inf)",
        parameters=("value",),
    ),
    PrivateName(
        "optuna.Study",
        "_storage",
        "the study's storage: heartbeats, the worker's attribute, handing a trial back",
        instance=True,
    ),
    PrivateName(
        "optuna.Study",
        "_storage._backend",
        "finding the RDBStorage under Optuna's cache, to batch writes",
        instance=True,
    ),
    PrivateName(
        "optuna.Study",
        "_study_id",
        "creating a fused group's trials without Study.ask",
        instance=True,
    ),
    PrivateName(
        "optuna.Study",
        "_thread_local.cached_all_trials",
        "handing the sampler the study as a fresh read would show it (ask_many)",
        instance=True,
    ),
    PrivateName(
        "optuna.Study",
        "_get_trials",
        "serving TPE's constant-liar read of the study from ask_many's view, samplers' "
        "and pruners' reads from History's lagged view, and reading the trials a sampler "
        "sees (trials_seen)",
        parameters=("deepcopy", "states", "use_cache"),
    ),
    PrivateName("optuna.trial.Trial", "_trial_id", "naming a trial to the storage", instance=True),
    PrivateName(
        "optuna.trial.FrozenTrial", "_trial_id", "naming a trial to the storage", instance=True
    ),
    PrivateName(
        "optuna.trial.Trial",
        "_cached_frozen_trial",
        "the trial's local copy that pruners and samplers read, kept as Optuna keeps it",
        instance=True,
    ),
    PrivateName(
        "optuna.trial.Trial",
        "_suggest",
        "suggesting a fused group's parameters as Study.ask(distributions) does",
        parameters=("name", "distribution"),
    ),
    PrivateName(
        "optuna.trial.Trial",
        "_get_latest_trial",
        "handing a pruner the trial as Trial.should_prune does",
        parameters=(),
    ),
    PrivateName(
        "optuna.pruners",
        "_filter_study",
        "telling the sampler through Hyperband's bracket study, as Study.tell does",
        parameters=("study", "trial"),
    ),
    PrivateName(
        "optuna.pruners.HyperbandPruner",
        "_get_bracket_id",
        "making one bracket study per Hyperband bracket in a batch tell",
        parameters=("study", "trial"),
    ),
)


class _Heartbeats(Protocol):
    """What Optuna's heartbeat storages (RDBStorage and its cache) offer."""

    def record_heartbeat(self, trial_id: int) -> None: ...

    def get_heartbeat_interval(self) -> int | None: ...


def trial_id_of(trial: optuna.trial.Trial | FrozenTrial) -> int:
    """The trial's id in its storage (not its number, which counts within the study)."""
    return trial._trial_id


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage the study reads and writes, as Optuna wraps it (RDBStorage in a cache)."""
    return study._storage


def rdb_of(study: optuna.Study) -> RDBStorage | None:
    """The RDBStorage under the study's storage (Optuna wraps one in a cache), or None on
    another kind of storage (Optuna's in-memory one)."""
    storage = storage_of(study)
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


def record_heartbeat(study: optuna.Study, trial_id: int) -> None:
    """Record the trial's heartbeat now (an AttributeError on a storage without heartbeats)."""
    cast(_Heartbeats, storage_of(study)).record_heartbeat(trial_id)


def heartbeat_interval(study: optuna.Study) -> int | None:
    """Seconds between the heartbeats the study's storage expects (None: no heartbeats)."""
    return cast(_Heartbeats, storage_of(study)).get_heartbeat_interval()


def latest_trial(trial: optuna.trial.Trial) -> FrozenTrial:
    """The trial as ``Trial.should_prune`` hands it to the pruner."""
    return trial._get_latest_trial()


def trials_seen(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials as its sampler reads them while it asks (the read Optuna caches for
    the ask; :func:`ask_many`'s view), not copied: not to be changed."""
    return study._get_trials(deepcopy=False, use_cache=True)
