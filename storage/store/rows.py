"""The rows the store's reads (:mod:`storage.store.reads`) turn into pandas DataFrames and
records.

Each function takes an open session from :meth:`storage.Store._session` and returns a frame
with a fixed column list (see :mod:`storage.records`), also when there are no rows, so callers
can select columns without checking for emptiness first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC
from functools import lru_cache
from typing import Any

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
from optuna.distributions import json_to_distribution
from sqlalchemy import Integer, Select, literal, select
from sqlalchemy.orm import Session

from storage import optuna_tables as ot
from storage.draws import RETRY_OF, retry_of, study_draws
from storage.errors import damaged
from storage.readonly_status import (
    INFINITE,
    chosen_studies,
    retries_query,
    studies_query,
    tallies_query,
    tally,
)
from storage.records import (
    EPOCH_COLUMNS,
    EPOCH_METRICS,
    EVALUATION_COLUMNS,
    EXPERIMENT_COLUMNS,
    TRIAL_COLUMNS,
    ExperimentInfo,
    SuiteInfo,
    SuiteMember,
    Tally,
)
from storage.schema import Epoch, Evaluation, Experiment, Suite, SuiteExperiment

__all__ = [
    "arm_studies",
    "epochs_frame",
    "evaluations_frame",
    "experiment_config",
    "experiment_info",
    "experiment_list_frame",
    "experiments_frame",
    "stored_json",
    "suite_infos",
    "tallies",
    "trials_frame",
]

_USER_ATTRS = ("best_epoch", "fail_reason")
_SHOWN = 40  # characters of a damaged value quoted in the message
_TRAINER_SEED = EVALUATION_COLUMNS.index("trainer_seed")


def _quoted(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text)} characters)"


def stored_json(value: object, where: str) -> Any:
    """Decode JSON text that dynl2 or Optuna wrote; :func:`damaged` names ``where`` when it is
    not JSON (a row edited by hand, a write cut off)."""
    if not isinstance(value, str | bytes):
        raise damaged(f"{where} is {_quoted(value)}, not JSON text")
    try:
        return json.loads(value)
    except ValueError:  # JSONDecodeError, and bytes that are not UTF-8
        raise damaged(f"{where} is not valid JSON ({_quoted(value)})") from None
    except RecursionError:
        raise damaged(f"{where} is JSON nested too deeply to read") from None


def _stored_object(value: object, where: str) -> dict[str, Any]:
    """Decode JSON text that must hold an object, or the store is damaged."""
    found = stored_json(value, where)
    if not isinstance(found, dict):
        raise damaged(f"{where} is JSON {type(found).__name__}, not an object ({_quoted(value)})")
    return found


def experiment_config(value: object, name: str) -> dict[str, Any]:
    """The decoded config of experiment ``name``: a JSON object, or the store is damaged."""
    return _stored_object(value, f"the config of experiment {name!r} in dynl2_experiments")


def experiment_info(row: Experiment) -> ExperimentInfo:
    """The plain value of one ``dynl2_experiments`` row (its config decoded)."""
    return ExperimentInfo(
        id=row.id,
        name=row.name,
        config=experiment_config(row.config, row.name),
        created=row.created,
    )


def suite_infos(session: Session, rows: Sequence[Suite]) -> list[SuiteInfo]:
    """The plain values of ``dynl2_suites`` rows, each with its experiments in order (their
    members read with one query)."""
    names = {row.id: row.name for row in rows}
    members: dict[int, list[SuiteMember]] = {suite_id: [] for suite_id in names}
    if names:
        query = (
            select(SuiteExperiment)
            .where(SuiteExperiment.suite_id.in_(list(names)))
            .order_by(SuiteExperiment.suite_id, SuiteExperiment.position)
        )
        for member in session.scalars(query):
            where = (
                f"the factors of experiment {member.experiment!r} of suite "
                f"{names[member.suite_id]!r} in dynl2_suite_experiments"
            )
            factors = _stored_object(member.factors, where)
            members[member.suite_id].append(
                SuiteMember(member.position, member.experiment, factors)
            )
    return [
        SuiteInfo(
            name=row.name,
            created=row.created,
            definition=_stored_object(
                row.definition, f"the definition of suite {row.name!r} in dynl2_suites"
            ),
            members=tuple(members[row.id]),
        )
        for row in rows
    ]


def _frame(rows: Iterable[Sequence[Any]], columns: Sequence[str], dtypes: dict[str, str]) -> Any:
    frame = pd.DataFrame(list(rows), columns=list(columns))
    return frame.astype(dtypes) if dtypes else frame


def _utc(frame: Any, *columns: str) -> Any:
    for column in columns:
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def arm_studies(
    session: Session, experiment: str, arm: str | None = None
) -> dict[int, tuple[str, int]]:
    """``{study_id: (arm, replicate)}`` for the Optuna studies named ``EXPERIMENT/ARM`` and
    ``EXPERIMENT/ARM/R`` (of one ``arm``), the marked ones once there are
    (:func:`storage.readonly_status.chosen_studies`)."""
    chosen = chosen_studies(session.execute(studies_query(experiment)), experiment)
    return chosen if arm is None else {k: v for k, v in chosen.items() if v[0] == arm}


def experiments_frame(session: Session) -> pd.DataFrame:
    rows = [
        (e.id, e.name, e.created, experiment_config(e.config, e.name))
        for e in session.scalars(select(Experiment).order_by(Experiment.id))
    ]
    return _utc(_frame(rows, EXPERIMENT_COLUMNS, {"id": "int64", "name": "object"}), "created")


def experiment_list_frame(session: Session) -> pd.DataFrame:
    """``experiments_frame`` without the configs, none of them decoded."""
    query = select(Experiment.id, Experiment.name, Experiment.created).order_by(Experiment.id)
    rows = [tuple(row) for row in session.execute(query)]
    columns = EXPERIMENT_COLUMNS[:3]
    return _utc(_frame(rows, columns, {"id": "int64", "name": "object"}), "created")


def epochs_frame(session: Session, experiment: str, arm: str | None) -> pd.DataFrame:
    arms = arm_studies(session, experiment, arm)
    dtypes = {"replicate": "int64", "number": "int64", "trial_id": "int64", "epoch": "int64"}
    dtypes |= {metric: "float64" for metric in EPOCH_METRICS}
    if not arms:
        return _frame([], EPOCH_COLUMNS, dtypes)
    metrics = [getattr(Epoch, metric) for metric in EPOCH_METRICS]
    query = (
        select(ot.trials.c.study_id, ot.trials.c.number, Epoch.trial_id, ot.trials.c.state)
        .add_columns(Epoch.epoch, *metrics)
        .join(ot.trials, ot.trials.c.trial_id == Epoch.trial_id)
        .where(ot.trials.c.study_id.in_(arms))
        .order_by(ot.trials.c.study_id, ot.trials.c.number, Epoch.epoch)
    )
    rows = [(*arms[row[0]], *row[1:]) for row in session.execute(query)]
    frame = _frame(rows, EPOCH_COLUMNS, dtypes)
    order = ["arm", "replicate", "number", "epoch"]
    return frame.sort_values(order, kind="stable", ignore_index=True)


def evaluations_frame(
    session: Session, experiment_id: int, columns: Collection[str]
) -> pd.DataFrame:
    """The experiment's evaluations by arm, replicate and seed (see ``EVALUATION_COLUMNS``).

    ``columns`` are those ``dynl2_evaluations`` has. A store an older dynl2 wrote, read without
    upgrading it, is read as the upgrade would leave it: without ``replicate`` every row is
    replicate 1, as it was the arm's only search; without ``trainer_seed`` and ``diverged``
    their values are still in ``params``, and are taken out as revision 0003 moves them.
    """
    e = Evaluation
    replicate = e.replicate if "replicate" in columns else literal(1, Integer).label("replicate")
    moved = "trainer_seed" in columns
    extras = (e.trainer_seed, e.diverged) if moved else ()
    metrics = (e.test_loss, e.test_acc, e.val_loss, e.val_acc, e.seconds)
    query = (
        select(e.arm, e.seed, replicate, e.params, *metrics, *extras, e.created)
        .where(e.experiment_id == experiment_id)
        .order_by(e.arm, replicate, e.seed)
    )
    rows = []
    for arm, seed, number, text, *rest in session.execute(query):
        params = _params(text, arm, number, seed)
        if moved:
            rows.append((arm, seed, number, params, *rest))
        else:
            *measured, created = rest
            params, trainer_seed, diverged = _out_of_params(params)
            rows.append((arm, seed, number, params, *measured, trainer_seed, diverged, created))
    dtypes = {"replicate": "int64", "seed": "int64"}
    dtypes |= {c: "float64" for c in ("test_loss", "test_acc", "val_loss", "val_acc", "seconds")}
    frame = _frame(rows, EVALUATION_COLUMNS, dtypes)
    # Built on its own: a seed near 2**63 next to a missing one would go through float64 and
    # lose its last digits.
    seeds = [row[_TRAINER_SEED] for row in rows]
    frame["trainer_seed"] = pd.array(seeds, dtype="Int64")
    return _utc(frame, "created")


def _out_of_params(params: dict[str, Any]) -> tuple[dict[str, Any], int | None, str | None]:
    """``(params, trainer_seed, diverged)`` of a row stored before revision 0003, as its upgrade
    moves them (a row it would leave as it is, is read as it is)."""
    # Only a store at an older revision gets here, and its reader has imported alembic already.
    from storage.migrations.versions.v0003_evaluation_extras import split_extras

    split = split_extras(params)
    return (params, None, None) if split is None else split


def _params(value: object, arm: str, replicate: int, seed: int) -> dict[str, Any]:
    search = f"arm {arm!r}" if replicate == 1 else f"arm {arm!r}, replicate {replicate}"
    where = f"the params of the evaluation of {search}, seed {seed} in dynl2_evaluations"
    params = stored_json(value, where)
    if not isinstance(params, dict):
        raise damaged(f"{where} are JSON {type(params).__name__}, not an object")
    return params


@lru_cache(maxsize=1024)
def _external(distribution_json: str, internal: float) -> Any:
    # param_value holds Optuna's internal repr: the value itself for float/int distributions,
    # the index of the choice for categorical ones.
    return json_to_distribution(distribution_json).to_external_repr(internal)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if float(value).is_integer() else None


def _trial_scope(query: Select[Any], study_ids: Iterable[int]) -> Select[Any]:
    return query.join(ot.trials, ot.trials.c.trial_id == query.selected_columns[0]).where(
        ot.trials.c.study_id.in_(list(study_ids))
    )


def trials_frame(session: Session, experiment: str, arm: str | None) -> pd.DataFrame:
    """One row per Optuna trial of the experiment's studies (see ``TRIAL_COLUMNS``)."""
    arms = arm_studies(session, experiment, arm)
    dtypes = {
        "replicate": "int64",
        "number": "int64",
        "draw": "int64",
        "trial_id": "int64",
        "value": "float64",
        "best_epoch": "Int64",
        "duration_s": "float64",
    }
    if not arms:
        return _utc(_frame([], TRIAL_COLUMNS, dtypes), "datetime_start", "datetime_complete")

    params: dict[int, dict[str, Any]] = {}
    param_query = select(
        ot.trial_params.c.trial_id,
        ot.trial_params.c.param_name,
        ot.trial_params.c.param_value,
        ot.trial_params.c.distribution_json,
    ).order_by(ot.trial_params.c.param_id)
    for trial_id, name, internal, distribution in session.execute(_trial_scope(param_query, arms)):
        try:
            value = _external(distribution, internal)
        except (ValueError, TypeError, KeyError, IndexError) as exc:  # Optuna's decoding
            raise damaged(
                f"the parameter {name!r} of trial {trial_id} in trial_params cannot be decoded "
                f"({type(exc).__name__}: {_quoted(str(exc))})"
            ) from None
        params.setdefault(trial_id, {})[name] = value

    values: dict[int, float] = {}
    value_query = select(
        ot.trial_values.c.trial_id, ot.trial_values.c.value, ot.trial_values.c.value_type
    ).where(ot.trial_values.c.objective == 0)
    for trial_id, value, value_type in session.execute(_trial_scope(value_query, arms)):
        values[trial_id] = INFINITE.get(value_type, math.nan if value is None else value)

    attrs: dict[int, dict[str, Any]] = {}
    attr_query = select(
        ot.trial_user_attributes.c.trial_id,
        ot.trial_user_attributes.c.key,
        ot.trial_user_attributes.c.value_json,
    ).where(ot.trial_user_attributes.c.key.in_(_USER_ATTRS))
    for trial_id, key, value_json in session.execute(_trial_scope(attr_query, arms)):
        where = f"the user attribute {key!r} of trial {trial_id} in trial_user_attributes"
        attrs.setdefault(trial_id, {})[key] = stored_json(value_json, where)

    retries: dict[int, int | None] = {}
    in_studies = ot.trials.c.study_id.in_(list(arms))
    for trial_id, value_json in session.execute(retries_query(in_studies)):
        where = f"the system attribute {RETRY_OF!r} of trial {trial_id}"
        retries[trial_id] = retry_of({RETRY_OF: stored_json(value_json, where)})

    trial_query = (
        select(
            ot.trials.c.study_id,
            ot.trials.c.number,
            ot.trials.c.trial_id,
            ot.trials.c.state,
            ot.trials.c.datetime_start,
            ot.trials.c.datetime_complete,
        )
        .where(ot.trials.c.study_id.in_(arms))
        .order_by(ot.trials.c.study_id, ot.trials.c.number)
    )
    found = list(session.execute(trial_query))
    draws = study_draws((study_id, number, retries.get(i)) for study_id, number, i, *_ in found)
    rows = []
    for study_id, number, trial_id, state, start, complete in found:
        # Optuna writes naive UTC datetimes.
        start = start.replace(tzinfo=UTC) if start is not None else None
        complete = complete.replace(tzinfo=UTC) if complete is not None else None
        duration = (complete - start).total_seconds() if start and complete else math.nan
        user = attrs.get(trial_id, {})
        rows.append(
            (
                *arms[study_id],
                number,
                trial_id,
                str(state),
                values.get(trial_id, math.nan),
                params.get(trial_id, {}),
                _as_int(user.get("best_epoch")),
                None if user.get("fail_reason") is None else str(user["fail_reason"]),
                start,
                complete,
                duration,
                draws[study_id][number],
            )
        )
    frame = _frame(rows, TRIAL_COLUMNS, dtypes)
    frame = _utc(frame, "datetime_start", "datetime_complete")
    return frame.sort_values(["arm", "replicate", "number"], kind="stable", ignore_index=True)


def tallies(session: Session, experiment: str, result_attr: str) -> dict[tuple[str, int], Tally]:
    """``{(arm, replicate): Tally}`` of the experiment's studies, in one grouped query (see
    ``Tally``); a result attribute that is no JSON is named as a damaged record."""
    arms = arm_studies(session, experiment)
    grouped: dict[int, list[Any]] = {study_id: [] for study_id in arms}
    for row in session.execute(tallies_query(arms, result_attr)):
        grouped[row[0]].append(row[1:])
    where = "a result attribute of a trial in trial_user_attributes"
    return {
        arms[study_id]: tally(rows, lambda text: stored_json(text, where))
        for study_id, rows in grouped.items()
    }
