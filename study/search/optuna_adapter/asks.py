"""Asks: a fused group's K trials asked as K calls of ``Study.ask(distributions)`` in a row would
ask them, in a few transactions instead of some six for each trial.

``Study.ask`` reads all the study's trials twice before its sampler reads them again: once to
look for a WAITING trial (a retry) to pop, and once for the sampler's cached view of the study,
which it drops at every ask (measured: about 48 ms an ask in a 128-trial study, two thirds of it
in three such reads, before any was saved). And each trial it asks costs a transaction to
create, a read of the new trial, one transaction for each parameter, and then dynl2's first
heartbeat, its config and its worker attributes one transaction each: about 8 ms a trial on
SQLite (bench/loop.py, 2026-12-07), where the training of a small model in a fused group takes
less.

:func:`ask_many` asks the first ``max(1, waiting)`` trials through Optuna's own ``Study.ask``
(the retries it pops, and the view of the study its sampler reads). For the others, on an
RDBStorage:

1. one transaction creates them all, RUNNING, numbered as ``create_new_trial`` numbers them (the
   study's row locked as Optuna locks it), each with its first heartbeat when asked for;
2. the sampler proposes their parameters one trial after the other, through ``optuna.Trial``'s
   own ``_suggest``, reading the view the first ask read plus the trials asked since (as a fresh
   read would show them: RUNNING, with their parameters), while the study's storage answers for
   the new trials from memory and keeps what they write (parameters, system attributes);
3. one transaction writes those, as ``set_trial_param`` and ``set_trial_system_attr`` would.

What the sampler sees is what it sees when each trial is asked on its own (tested:
``tests/study/test_optuna_batch.py``, same seed, same trials); a trial another worker finished
meanwhile shows as it was at the first ask, as if the asks had come a moment earlier. Other
storages (Optuna's in-memory one) ask each trial Optuna's own way, reading from the same view.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Container, Mapping, Sequence
from datetime import datetime
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    check_distribution_compatibility,
    distribution_to_json,
)
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import delete, func, insert, select

from study.search.optuna_adapter.names import rdb_of, storage_of, trial_id_of


def ask_many(
    study: optuna.Study,
    distributions: Mapping[str, BaseDistribution],
    n: int,
    waiting: int,
    then: Callable[[int], None] | None = None,
    beat: Callable[[optuna.trial.Trial], None] | None = None,
    retry: Callable[[Callable[[], None]], object] | None = None,
    seen: Sequence[FrozenTrial] | None = None,
) -> list[optuna.trial.Trial]:
    """``n`` trials, as ``n`` calls of ``study.ask(distributions)`` in a row would ask them.

    ``beat(trial)`` writes a trial's first heartbeat right after Optuna's own ask creates it;
    the trials created together get theirs in the transaction that creates them. ``then(id)``
    hears each trial's id as soon as it exists in the store (with its first heartbeat, where
    ``beat`` is given), before anything else is asked: the caller can hand it back if a stop
    comes before the asks end. ``retry(call)`` runs the write of the created trials' parameters
    (default: once): a trial created without them would stay RUNNING until its heartbeat
    lapses, so the write is worth retrying on its own rather than asking anew.

    ``seen``: the study's trials as the caller just read them, under a lock that no other ask
    of the study passes meanwhile (the worker's claim lock). With it, and no WAITING trial to
    pop, no ask goes through ``Study.ask``: every trial is created together, and the sampler
    reads ``seen`` where Optuna's first ask would read the study afresh.
    """
    backend = rdb_of(study)
    trials: list[optuna.trial.Trial] = []
    own = 0 if seen is not None and waiting == 0 and backend is not None else max(1, waiting)
    for _ in range(min(n, own)):
        trial = study.ask(dict(distributions))
        if beat is not None:
            beat(trial)
        trials.append(trial)
        if then is not None:
            then(trial_id_of(trial))
    local = study._thread_local
    if len(trials) == n:
        local.cached_all_trials = None
        return trials
    view: list[FrozenTrial] | None = local.cached_all_trials if trials else list(seen or ())
    if view is None and backend is not None:
        # a sampler whose ask read nothing (random search): one read now, for the
        # samplers that read the study, as each ask after the first would show it
        view = study._get_trials(deepcopy=False, use_cache=False)
    if view is not None:
        asked = {t.number for t in trials}
        view = [t for t in view if t.number not in asked]
        view += [copy.deepcopy(t._cached_frozen_trial) for t in trials]
    if view is not None:
        study._get_trials = _reading_view(study)  # type: ignore[method-assign]
    try:
        if backend is not None and view is not None:
            rest = n - len(trials)
            created = _create(backend, study._study_id, rest, heartbeats=beat is not None)
            if then is not None:
                for frozen in created:
                    then(trial_id_of(frozen))
            asking = _Asking(storage_of(study), created)
            trials += _sample(study, asking, distributions, view)
            (retry or _once)(lambda: _write(backend, asking))
        else:
            _ask_one_by_one(study, distributions, n, trials, view, then, beat)
    finally:
        vars(study).pop("_get_trials", None)  # Study's own method again
        local.cached_all_trials = None  # the next Study.ask reads afresh, as it always does
    return trials


def _once(call: Callable[[], None]) -> None:
    call()


def _reading_view(study: optuna.Study) -> Callable[..., list[FrozenTrial]]:
    """``Study._get_trials`` that answers uncached reads from the view :func:`ask_many` keeps
    in ``cached_all_trials`` (thread-local: another thread has none, and reads Optuna's way);
    any other read goes to Optuna's."""
    own = study._get_trials

    def get_trials(
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        view = study._thread_local.cached_all_trials
        if use_cache or view is None:
            return own(deepcopy=deepcopy, states=states, use_cache=use_cache)
        trials = view if states is None else [t for t in view if t.state in states]
        return copy.deepcopy(trials) if deepcopy else list(trials)

    return get_trials


def _create(backend: RDBStorage, study_id: int, m: int, heartbeats: bool) -> list[FrozenTrial]:
    """``m`` new RUNNING trials of the study in one transaction, as ``m`` calls of
    ``create_new_trial`` make them: the study's row locked for update first (so no other trial
    of the study is numbered meanwhile), each trial's number the count of the study's trials
    with a smaller id. With ``heartbeats``, each gets its first heartbeat row too, as
    ``record_heartbeat`` writes it for a trial without one."""
    trial_model = models.TrialModel
    session = backend.scoped_session()
    try:
        study_row = select(models.StudyModel.study_id).where(
            models.StudyModel.study_id == study_id
        )
        if session.execute(study_row.with_for_update()).first() is None:
            raise KeyError(f"no study with id {study_id}")
        started = datetime.now()
        rows = [
            trial_model(
                study_id=study_id, number=None, state=TrialState.RUNNING, datetime_start=started
            )
            for _ in range(m)
        ]
        session.add_all(rows)
        session.flush()
        rows.sort(key=lambda row: row.trial_id)
        before = session.execute(
            select(func.count(trial_model.trial_id)).where(
                trial_model.study_id == study_id, trial_model.trial_id < rows[0].trial_id
            )
        ).scalar_one()
        for k, row in enumerate(rows):
            row.number = before + k
        if heartbeats:
            session.add_all([models.TrialHeartbeatModel(trial_id=row.trial_id) for row in rows])
        created = [(row.trial_id, row.number) for row in rows]
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return [
        FrozenTrial(
            number=number,
            state=TrialState.RUNNING,
            value=None,
            values=None,
            datetime_start=started,
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={},
            system_attrs={},
            intermediate_values={},
            trial_id=trial_id,
        )
        for trial_id, number in created
    ]


class _Asking:
    """The study's storage while :func:`ask_many` samples the trials it created: reads and
    writes of those trials stay in memory (their parameters and system attributes, written in
    one transaction afterwards by :func:`_write`); everything else goes to the storage."""

    def __init__(self, storage: BaseStorage, created: Sequence[FrozenTrial]) -> None:
        self.storage = storage
        self.new = {trial_id_of(frozen): frozen for frozen in created}
        self.params: dict[int, dict[str, tuple[float, BaseDistribution]]] = {
            i: {} for i in self.new
        }

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        if trial_id in self.new:
            return copy.deepcopy(self.new[trial_id])
        return self.storage.get_trial(trial_id)

    def get_trial_number_from_id(self, trial_id: int) -> int:
        if trial_id in self.new:
            return self.new[trial_id].number
        return self.storage.get_trial_number_from_id(trial_id)

    def get_trial_params(self, trial_id: int) -> dict[str, Any]:
        if trial_id in self.new:
            return dict(self.new[trial_id].params)
        return self.storage.get_trial_params(trial_id)

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        if trial_id in self.new:
            return dict(self.new[trial_id].user_attrs)
        return self.storage.get_trial_user_attrs(trial_id)

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        if trial_id in self.new:
            return dict(self.new[trial_id].system_attrs)
        return self.storage.get_trial_system_attrs(trial_id)

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        if trial_id not in self.new:
            self.storage.set_trial_param(trial_id, param_name, param_value_internal, distribution)
            return
        frozen = self.new[trial_id]
        frozen.params[param_name] = distribution.to_external_repr(param_value_internal)
        frozen.distributions[param_name] = distribution
        self.params[trial_id][param_name] = (param_value_internal, distribution)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if trial_id not in self.new:
            self.storage.set_trial_system_attr(trial_id, key, value)
            return
        self.new[trial_id].system_attrs[key] = value


def _sample(
    study: optuna.Study,
    asking: _Asking,
    distributions: Mapping[str, BaseDistribution],
    view: list[FrozenTrial],
) -> list[optuna.trial.Trial]:
    """Each created trial's parameters, proposed in order as ``Study.ask(distributions)``
    proposes them (``optuna.Trial``'s own ``_suggest``), each seeing the ones before it in the
    view; the study reads and writes through ``asking`` meanwhile."""
    _check_compatible(view, distributions)
    local = study._thread_local
    storage = study._storage
    out = []
    study._storage = asking  # type: ignore[assignment]
    try:
        for trial_id, frozen in asking.new.items():
            # what a read now returns: every trial so far, this one RUNNING without parameters
            local.cached_all_trials = [*view, copy.deepcopy(frozen)]
            trial = optuna.Trial(study, trial_id)
            for name, distribution in distributions.items():
                trial._suggest(name, distribution)
            trial.storage = storage  # from now on the trial reads and writes the store
            view.append(copy.deepcopy(trial._cached_frozen_trial))
            out.append(trial)
    finally:
        study._storage = storage
    return out


def _check_compatible(
    view: Sequence[FrozenTrial], distributions: Mapping[str, BaseDistribution]
) -> None:
    """As ``set_trial_param`` does: a parameter keeps the kind of distribution it had in the
    study (raises ValueError otherwise)."""
    for name, distribution in distributions.items():
        for frozen in view:
            if name in frozen.distributions:
                check_distribution_compatibility(frozen.distributions[name], distribution)
                break


def _write(backend: RDBStorage, asking: _Asking) -> None:
    """The created trials' parameters and system attributes in one transaction, the rows
    ``set_trial_param`` and ``set_trial_system_attr`` write. Run again after a commit that did
    land, it writes the same rows again (it replaces what those trials have)."""
    ids = list(asking.new)
    param_rows = [
        {
            "trial_id": trial_id,
            "param_name": name,
            "param_value": internal,
            "distribution_json": distribution_to_json(distribution),
        }
        for trial_id, params in asking.params.items()
        for name, (internal, distribution) in params.items()
    ]
    system_rows = [
        {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
        for trial_id, frozen in asking.new.items()
        for key, value in frozen.system_attrs.items()
    ]
    session = backend.scoped_session()
    try:
        param = models.TrialParamModel
        session.execute(delete(param).where(param.trial_id.in_(ids)))
        if param_rows:
            session.execute(insert(param), param_rows)
        if system_rows:
            system = models.TrialSystemAttributeModel
            session.execute(delete(system).where(system.trial_id.in_(ids)))
            session.execute(insert(system), system_rows)
        session.commit()
    except BaseException:
        session.rollback()
        raise


def _ask_one_by_one(
    study: optuna.Study,
    distributions: Mapping[str, BaseDistribution],
    n: int,
    trials: list[optuna.trial.Trial],
    view: list[FrozenTrial] | None,
    then: Callable[[int], None] | None,
    beat: Callable[[optuna.trial.Trial], None] | None,
) -> None:
    """The asks after Optuna's own on a storage other than RDBStorage: each trial created
    through the storage, its parameters suggested from the view (see :func:`ask_many`)."""
    local = study._thread_local
    while len(trials) < n:
        trial_id = storage_of(study).create_new_trial(study._study_id)
        trial = optuna.Trial(study, trial_id)
        if beat is not None:
            beat(trial)
        if then is not None:
            then(trial_id)
        if view is not None:
            # what a read now returns: every trial so far, this one RUNNING without parameters
            local.cached_all_trials = [*view, copy.deepcopy(trial._cached_frozen_trial)]
        else:
            local.cached_all_trials = None
        for name, distribution in distributions.items():
            trial._suggest(name, distribution)
        if view is not None:
            view.append(copy.deepcopy(trial._cached_frozen_trial))
        trials.append(trial)
