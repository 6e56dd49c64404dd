"""The calls a fused group makes for all its trials at once: reports, attributes and tells (its
asks: :mod:`study.search.optuna_adapter.asks`).

Reports: several trials' intermediate values in one transaction.

``Trial.report`` costs one transaction each (measured: about 2 ms on SQLite, 5,000 of them in a
128-trial × 20-epoch study trained in groups of 32, a sixth of the worker's time). A fused group
ends its epochs together, so it writes them together: one read of the trials' states, one
insert, one commit; the same rows ``Trial.report`` writes, through Optuna's own table models.

User attributes: several trials' in one transaction (:func:`set_user_attrs_many`), where
``Trial.set_user_attr`` takes one transaction, and a read of the trial, for each attribute.

Tells: the members that end together (every member of a group that was not pruned) told with
their user attributes in one read and one write transaction, instead of one for each attribute
and two for each tell (a read of the trial, then its update). See :func:`tell_many`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime

import optuna
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from study.search.optuna_adapter.names import rdb_of, storage_of, trial_id_of

Report = tuple[optuna.trial.Trial, int, float]  # a trial, its step, its value
# a trial, the state to tell, its value (COMPLETE only), user attributes to set before the tell
Tell = tuple[optuna.trial.Trial, TrialState, float | None, Mapping[str, object]]


def report_many(study: optuna.Study, reports: Sequence[Report]) -> set[int]:
    """Write each ``(trial, step, value)`` as ``trial.report(value, step)`` would, in one
    transaction; returns the ids of the trials already finished (declared stale by another
    worker), whose values are not written. Running it again after a commit that did land
    writes nothing twice (a step already stored is kept)."""
    if not reports:
        return set()
    values = {trial_id_of(t): (step, float(value)) for t, step, value in reports}
    if len(values) != len(reports):
        raise ValueError("report_many takes one report per trial")
    backend = rdb_of(study)
    if backend is None:
        return _one_by_one(reports)
    trial_model = models.TrialModel
    value_model = models.TrialIntermediateValueModel
    session = backend.scoped_session()
    try:
        states: Mapping[int, optuna.trial.TrialState] = dict(
            session.execute(
                select(trial_model.trial_id, trial_model.state).where(
                    trial_model.trial_id.in_(values)
                )
            ).all()
        )
        finished = {i for i in values if i not in states or states[i].is_finished()}
        live = {i: v for i, v in values.items() if i not in finished}
        stored: set[tuple[int, int]] = set()
        if live:
            steps = {step for step, _ in live.values()}
            found = session.execute(
                select(value_model.trial_id, value_model.step).where(
                    value_model.trial_id.in_(live), value_model.step.in_(steps)
                )
            )
            stored = {(trial_id, step) for trial_id, step in found}
        rows = []
        for trial_id, (step, value) in live.items():
            if (trial_id, step) in stored:
                continue
            kept, kind = value_model.intermediate_value_to_stored_repr(value)
            rows.append(
                {
                    "trial_id": trial_id,
                    "step": step,
                    "intermediate_value": kept,
                    "intermediate_value_type": kind,
                }
            )
        if rows:
            session.execute(insert(value_model), rows)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    for trial, step, value in reports:
        if trial_id_of(trial) not in finished:
            # what Trial.report keeps locally: the pruner reads the trial from this copy
            trial._cached_frozen_trial.intermediate_values[step] = float(value)
    return finished


def _one_by_one(reports: Sequence[Report]) -> set[int]:
    finished = set()
    for trial, step, value in reports:
        try:
            trial.report(value, step)
        except optuna.exceptions.UpdateFinishedTrialError:
            finished.add(trial_id_of(trial))
    return finished


def tell_many(study: optuna.Study, tells: Sequence[Tell]) -> dict[int, TrialState]:
    """For each ``(trial, state, value, attrs)``: ``trial.set_user_attr`` for each attribute,
    then ``study.tell(trial, value, state=state, skip_if_finished=True)``; every write in one
    transaction. Returns every trial's state afterwards, by trial id: the state told, or the
    one a finished trial already had (another worker declared it stale, and nothing of it is
    written). Running it again after a commit that did land changes nothing.

    As ``Study.tell``: a COMPLETE trial needs a finite value, a PRUNED one takes its last
    intermediate value (if it is a number), and the sampler's ``after_trial`` hears of each
    trial still unfinished before it is written, through the study the pruner filters for it
    (Hyperband's bracket). Unlike ``Study.tell``, which writes the trial before it passes on
    the sampler's error, a sampler that raises there leaves the whole batch unwritten and the
    error goes to the caller.

    Three steps, as ``Study.tell`` takes them for one trial: read the trials' states, tell the
    sampler, write. Optuna's storage methods run in this thread's scoped session and commit
    and close it when done, so nothing that may call them (``after_trial``, Hyperband's bracket
    study, whose making reads the study) runs while the write transaction is open: a call
    there would commit half the batch and detach its rows (``DetachedInstanceError``).
    """
    if not tells:
        return {}
    ids = [trial_id_of(t) for t, _, _, _ in tells]
    if len(set(ids)) != len(ids):
        raise ValueError("tell_many takes one tell per trial")
    for _, state, value, _ in tells:
        _check(state, value)
    backend = rdb_of(study)
    if backend is None:
        return _tell_one_by_one(study, tells)
    study._thread_local.cached_all_trials = None  # as Study.tell: the view is stale now
    before = _states(backend, ids)
    out = {i: state for i, state in before.items() if state.is_finished()}
    told = [tell for tell in tells if trial_id_of(tell[0]) not in out]
    values: dict[int, list[float] | None] = {}
    for trial, state, value, attrs in told:
        frozen = trial._cached_frozen_trial
        frozen.user_attrs.update(attrs)  # what Trial.set_user_attr keeps locally
        values[trial_id_of(trial)] = _told_values(frozen, state, value)
    filtered = _filtered_studies(study, [t._cached_frozen_trial for t, _, _, _ in told])
    for (trial, state, _, _), seen in zip(told, filtered, strict=True):
        frozen = trial._cached_frozen_trial
        study.sampler.after_trial(seen, frozen, state, values[trial_id_of(trial)])
    if told:
        out |= _write_tells(backend, told, values)
    return {i: out[i] for i in ids}


def _states(backend: RDBStorage, ids: Sequence[int]) -> dict[int, TrialState]:
    """The trials' states as stored now, in one read."""
    trial_model = models.TrialModel
    session = backend.scoped_session()
    try:
        query = select(trial_model.trial_id, trial_model.state).where(
            trial_model.trial_id.in_(ids)
        )
        states: dict[int, TrialState] = dict(session.execute(query).all())
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return states


def _filtered_studies(study: optuna.Study, frozens: Sequence[FrozenTrial]) -> list[optuna.Study]:
    """The study the sampler hears each trial through, as ``Study.tell`` hands it over
    (``optuna.pruners._filter_study``): the study itself, or under Hyperband the trial's
    bracket, made once per bracket (making one reads the study twice)."""
    pruner = study.pruner
    if not isinstance(pruner, optuna.pruners.HyperbandPruner):
        return [study] * len(frozens)
    brackets: dict[int, optuna.Study] = {}
    out = []
    for frozen in frozens:
        bracket = pruner._get_bracket_id(study, frozen)
        if bracket not in brackets:
            brackets[bracket] = optuna.pruners._filter_study(study, frozen)
        out.append(brackets[bracket])
    return out


def _write_tells(
    backend: RDBStorage, told: Sequence[Tell], values: Mapping[int, list[float] | None]
) -> dict[int, TrialState]:
    """Write the tells in one transaction, each unless its trial finished since it was read
    (then its stored state is returned). No Optuna call in here: see :func:`tell_many`."""
    trial_model = models.TrialModel
    ids = [trial_id_of(t) for t, _, _, _ in told]
    out: dict[int, TrialState] = {}
    attr_rows: list[tuple[int, str, object]] = []
    value_rows: list[tuple[int, int, float]] = []
    session = backend.scoped_session()
    try:
        query = (
            select(trial_model)
            .where(trial_model.trial_id.in_(ids))
            .with_for_update()
            .execution_options(populate_existing=True)  # the rows as they are now
        )
        rows = {row.trial_id: row for row in session.scalars(query)}
        for trial, state, _, attrs in told:
            trial_id = trial_id_of(trial)
            row = rows[trial_id]
            stored = row.state
            if stored.is_finished():  # declared stale since the states were read
                out[trial_id] = stored
                continue
            attr_rows += [(trial_id, key, item) for key, item in attrs.items()]
            value_rows += [(trial_id, k, v) for k, v in enumerate(values[trial_id] or ())]
            row.state = state
            row.datetime_complete = datetime.now()
            out[trial_id] = state
        _replace_user_attrs(session, attr_rows)
        _replace_values(session, value_rows)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return out


def set_user_attrs_many(
    study: optuna.Study, attrs: Sequence[tuple[optuna.trial.Trial, Mapping[str, object]]]
) -> set[int]:
    """``trial.set_user_attr(key, value)`` for each ``(trial, {key: value})``, in one
    transaction; returns the ids of the trials already finished (declared stale by another
    worker), of which nothing is written. Running it again after a commit that did land writes
    the same values again."""
    items = [(trial, dict(a)) for trial, a in attrs if a]
    if not items:
        return set()
    backend = rdb_of(study)
    if backend is None:
        finished = set()
        for trial, values in items:
            try:
                for key, value in values.items():
                    trial.set_user_attr(key, value)
            except optuna.exceptions.UpdateFinishedTrialError:
                finished.add(trial_id_of(trial))
        return finished
    ids = [trial_id_of(t) for t, _ in items]
    session = backend.scoped_session()
    try:
        trial_model = models.TrialModel
        states = dict(
            session.execute(
                select(trial_model.trial_id, trial_model.state).where(
                    trial_model.trial_id.in_(ids)
                )
            ).all()
        )
        finished = {i for i in ids if i not in states or states[i].is_finished()}
        rows = [
            (trial_id_of(trial), key, value)
            for trial, values in items
            if trial_id_of(trial) not in finished
            for key, value in values.items()
        ]
        _replace_user_attrs(session, rows)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    for trial, values in items:
        if trial_id_of(trial) not in finished:
            trial._cached_frozen_trial.user_attrs.update(values)  # as Trial.set_user_attr
    return finished


def _replace_user_attrs(session: Session, rows: Sequence[tuple[int, str, object]]) -> None:
    """Set each ``(trial id, key, value)`` user attribute in ``session``: the rows
    ``set_trial_user_attr`` writes, a stored value of the same key replaced. One delete per
    key and one insert, where Optuna reads and writes once per attribute."""
    if not rows:
        return
    model = models.TrialUserAttributeModel
    by_key: dict[str, list[int]] = {}
    for trial_id, key, _ in rows:
        by_key.setdefault(key, []).append(trial_id)
    for key, ids in by_key.items():
        session.execute(delete(model).where(model.key == key, model.trial_id.in_(ids)))
    session.execute(
        insert(model),
        [{"trial_id": i, "key": k, "value_json": json.dumps(v)} for i, k, v in rows],
    )


def _replace_values(session: Session, rows: Sequence[tuple[int, int, float]]) -> None:
    """Store each ``(trial id, objective, value)`` as ``_set_trial_value_without_commit`` does
    (inf and -inf by their type), a stored value of the same objective replaced: one delete and
    one insert, where Optuna reads once per value."""
    if not rows:
        return
    model = models.TrialValueModel
    session.execute(delete(model).where(model.trial_id.in_({i for i, _, _ in rows})))
    stored = []
    for trial_id, objective, value in rows:
        kept, kind = model.value_to_stored_repr(value)
        stored.append(
            {"trial_id": trial_id, "objective": objective, "value": kept, "value_type": kind}
        )
    session.execute(insert(model), stored)


def _check(state: TrialState, value: float | None) -> None:
    if not state.is_finished():
        raise ValueError(f"cannot tell a trial {state.name}")
    if state == TrialState.COMPLETE:
        if value is None or not math.isfinite(value):
            raise ValueError(f"a COMPLETE trial needs a finite value, not {value!r}")
    elif value is not None:
        raise ValueError(f"a {state.name} trial takes no value")


def _told_values(
    frozen: FrozenTrial, state: TrialState, value: float | None
) -> list[float] | None:
    """The values ``Study.tell`` stores for ``state``."""
    if state == TrialState.COMPLETE:
        assert value is not None
        return [float(value)]
    if state == TrialState.PRUNED and frozen.last_step is not None:
        last = frozen.intermediate_values[frozen.last_step]
        if not math.isnan(last):
            return [float(last)]
    return None


def _tell_one_by_one(study: optuna.Study, tells: Sequence[Tell]) -> dict[int, TrialState]:
    out: dict[int, TrialState] = {}
    for trial, state, value, attrs in tells:
        try:
            for key, item in attrs.items():
                trial.set_user_attr(key, item)
            told = study.tell(trial, value, state=state, skip_if_finished=True)
            out[trial_id_of(trial)] = told.state
        except optuna.exceptions.UpdateFinishedTrialError:
            out[trial_id_of(trial)] = storage_of(study).get_trial(trial_id_of(trial)).state
    return out
