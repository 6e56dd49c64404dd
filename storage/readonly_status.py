"""The quick read behind ``dynl2 status NAME``: the rows it shows, in one read-only transaction
with SQLAlchemy Core, importing neither Optuna nor pandas nor Alembic.

:func:`storage.open` checks the schema with Alembic, and the store's reads build DataFrames
and decode parameters with Optuna: seconds of imports for a verb that reads a few rows. This
module reads the same rows as :mod:`storage.store.rows` (the same studies, marks, tallies,
parameters and evaluations; ``tests/storage/test_readonly_status.py`` holds the two against
each other) and hands them back as plain values. It answers only for a store in the common
case: at the schema revision its queries are written for (:data:`REVISION`), the experiment
present, every row it reads well formed. Anything else (an older or newer store, a missing
file or experiment, a damaged row, a parameter of a distribution it does not decode, a
query the database refuses) gives ``None``, and the caller reads through :func:`storage.open`,
whose errors name the problem as they always have. A database it cannot connect to raises
:class:`~storage.errors.StorageUnavailable` in :func:`storage.open`'s words: trying again
there would only double the wait for a server that does not answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    and_,
    column,
    func,
    select,
    table,
)
from sqlalchemy.exc import SQLAlchemyError

from storage import optuna_tables as ot
from storage.draws import RETRY_OF, retry_of, study_draws
from storage.engine import make_engine
from storage.errors import StorageError, StorageUnavailable
from storage.records import STUDY_MARK, Tally, split_study_name
from storage.urls import backend_of, first_line, resolve_url, sqlite_path

__all__ = ["REVISION", "SCHEMA", "EvaluationRow", "RunningTrial", "StatusRows", "read_status"]

# The schema revision of dynl2's tables (storage.migrations) and its dynl2_meta schema_version
# that the queries below are written for; tests/storage/test_readonly_status.py checks they
# are this code's head. A store at any other revision is read through storage.open.
REVISION = "0004"
SCHEMA = 5

# dynl2's tables as far as read here: Core clauses, not storage.schema's ORM models, whose
# import (sqlalchemy.orm) alone costs a tenth of a second.
_version = table("dynl2_alembic_version", column("version_num"))
_meta = table("dynl2_meta", column("key"), column("value"))
_experiments = table("dynl2_experiments", column("id"), column("name"), column("config"))
_evaluations = table(
    "dynl2_evaluations",
    *(column(c) for c in ("experiment_id", "arm", "replicate", "seed", "params")),
    *(column(c) for c in ("test_loss", "test_acc")),
)

INFINITE = {"INF_POS": math.inf, "INF_NEG": -math.inf}  # Optuna's value_type of ±inf
_TRIAL_ATTRS = ("best_epoch", "fail_reason")  # what Store.trials decodes of every trial


@dataclass(frozen=True)
class EvaluationRow:
    """One row of ``dynl2_evaluations``, as ``Store.evaluations`` gives its columns."""

    arm: str
    replicate: int
    seed: int
    params: dict[str, Any]
    test_loss: float | None
    test_acc: float | None


@dataclass(frozen=True)
class TrialRow:
    """One trial of the experiment's studies: what picks a search's best."""

    arm: str
    replicate: int
    number: int
    state: str
    value: float  # NaN without a value; ±inf as Optuna stores them
    params: dict[str, Any]  # Optuna's external values, in the order Optuna stored them
    draw: int  # where it stands in its search, retries not counted (storage.draws)


@dataclass(frozen=True)
class RunningTrial:
    """A RUNNING trial and the user attributes that name its worker (decoded JSON)."""

    number: int
    attrs: dict[str, Any]


@dataclass(frozen=True)
class StatusRows:
    """What ``dynl2 status NAME`` shows, as read from the store."""

    config: dict[str, Any]  # the experiment's stored config, decoded
    tallies: dict[tuple[str, int], Tally]  # as Store.trial_tallies gives them
    trials: tuple[TrialRow, ...]  # by arm, replicate and number, as Store.trials orders them
    evaluations: tuple[EvaluationRow, ...]  # by arm, replicate and seed
    running: dict[str, tuple[RunningTrial, ...]]  # study name -> its RUNNING trials by id


class _Unusual(Exception):
    """The store is not one this module reads: the caller goes through storage.open."""


def read_status(
    url: str | None, experiment: str, *, result_attr: str, holder_attrs: Sequence[str]
) -> StatusRows | None:
    """The rows of experiment ``experiment`` that ``dynl2 status`` shows, or ``None`` when the
    store is not in the common case this module reads (see the module's doc). ``result_attr``
    is the user attribute the tallies count; ``holder_attrs`` those of a RUNNING trial kept.
    Raises :class:`~storage.errors.StorageUnavailable` when the database cannot be reached."""
    try:
        canonical = resolve_url(url)
        path = sqlite_path(canonical)
        if path is not None and not path.is_file():
            return None  # never a new empty file: storage.open says there is none
        # The engine storage.open(create=False) makes: what connects there connects here.
        engine = make_engine(canonical, create_dirs=False)
    except StorageError:
        return None
    try:
        try:
            connection = engine.connect()
        except SQLAlchemyError as exc:
            # storage.open's words (StoreBase._check_connection), without a second try: a
            # server that does not answer would make the user wait twice for its time-out.
            raise StorageUnavailable(
                f"Cannot connect to {_where(canonical, engine)}: {first_line(exc)}"
            ) from exc
        with connection, connection.begin():
            return _read(connection, experiment, result_attr, tuple(holder_attrs))
    except (_Unusual, SQLAlchemyError, ValueError, TypeError, ArithmeticError, RecursionError):
        return None
    finally:
        engine.dispose()


def _where(url: str, engine: Engine) -> str:
    """The store as storage.open names it in a message (StoreBase._where)."""
    path = sqlite_path(url)
    if path is not None:
        return f"the SQLite file {path}"
    port = f":{engine.url.port}" if engine.url.port else ""
    return (
        f"database {engine.url.database!r} on the {backend_of(url)} server {engine.url.host}{port}"
    )


def _read(
    connection: Connection, experiment: str, result_attr: str, holder_attrs: tuple[str, ...]
) -> StatusRows:
    revisions = list(connection.scalars(select(_version.c.version_num)))
    schema = connection.scalar(select(_meta.c.value).where(_meta.c.key == "schema_version"))
    if revisions != [REVISION] or str(schema) != str(SCHEMA):
        raise _Unusual
    found = connection.execute(
        select(_experiments.c.id, _experiments.c.config).where(_experiments.c.name == experiment)
    ).first()
    if found is None:
        raise _Unusual  # storage.open's read names the experiments there are
    config = _json(found[1])
    if not isinstance(config, dict):
        raise _Unusual
    studies = arm_studies(connection, experiment)
    return StatusRows(
        config=config,
        tallies=tallies(connection, studies, result_attr),
        trials=_trials(connection, studies),
        evaluations=_evaluation_rows(connection, found[0]),
        running=_running(connection, experiment, holder_attrs),
    )


def _json(value: object) -> Any:
    """JSON text dynl2 or Optuna wrote; anything else is a damaged row (:class:`_Unusual`)."""
    if not isinstance(value, str | bytes):
        raise _Unusual
    return json.loads(value)  # a ValueError or RecursionError: read through storage.open


def arm_studies(connection: Connection, experiment: str) -> dict[int, tuple[str, int]]:
    """``{study_id: (arm, replicate)}`` of the experiment's studies (see
    :func:`chosen_studies`)."""
    return chosen_studies(connection.execute(studies_query(experiment)), experiment)


def studies_query(experiment: str) -> Select[Any]:
    """The studies named ``EXPERIMENT/...`` with their dynl2 mark (None when unmarked)."""
    mark = ot.study_system_attributes
    return (
        select(ot.studies.c.study_id, ot.studies.c.study_name, mark.c.value_json)
        .join(
            mark,
            and_(mark.c.study_id == ot.studies.c.study_id, mark.c.key == STUDY_MARK),
            isouter=True,
        )
        .where(ot.studies.c.study_name.startswith(f"{experiment}/", autoescape=True))
    )


def chosen_studies(rows: Iterable[Sequence[Any]], experiment: str) -> dict[int, tuple[str, int]]:
    """``{study_id: (arm, replicate)}`` from :func:`studies_query`'s rows: the studies named
    ``EXPERIMENT/ARM`` and ``EXPERIMENT/ARM/R``. Once dynl2 has marked the experiment's
    studies (``STUDY_MARK``), only the studies marked for this experiment, arm and replicate
    count: a study another program made under such a name is left out. A store written before
    the mark (no study of the experiment marked) is read as it always was."""
    found: dict[int, tuple[str, int]] = {}
    marked: dict[int, tuple[str, int]] = {}
    for study_id, name, mark_json in rows:
        parts = split_study_name(name)
        if parts is None or parts[0] != experiment:
            continue
        found[study_id] = (parts[1], parts[2])
        if mark_json is not None and _marks(mark_json, experiment, parts[1], parts[2]):
            marked[study_id] = (parts[1], parts[2])
    return marked or found


def _marks(mark_json: str, experiment: str, arm: str, replicate: int) -> bool:
    try:
        mark = json.loads(mark_json)
    except ValueError:
        return False
    return (
        isinstance(mark, dict)
        and mark.get("experiment") == experiment
        and mark.get("arm") == arm
        and mark.get("replicate", 1) == replicate
    )


def tallies(
    connection: Connection, studies: dict[int, tuple[str, int]], result_attr: str
) -> dict[tuple[str, int], Tally]:
    """Each search's trials counted by state and result, with its best values, in one grouped
    query (:func:`tallies_query`)."""
    grouped: dict[int, list[Any]] = {study_id: [] for study_id in studies}
    for row in connection.execute(tallies_query(studies, result_attr)):
        grouped[row[0]].append(row[1:])
    return {studies[study_id]: tally(rows, _json) for study_id, rows in grouped.items()}


def tallies_query(study_ids: Iterable[int], result_attr: str) -> Select[Any]:
    """The trials of ``study_ids`` grouped by study, state, result attribute and value type:
    their count, highest and lowest value (what :func:`tally` adds up)."""
    t, a, v = ot.trials.c, ot.trial_user_attributes.c, ot.trial_values.c
    return (
        select(
            t.study_id,
            t.state,
            a.value_json,
            v.value_type,
            func.count(),
            func.max(v.value),
            func.min(v.value),
        )
        .select_from(
            ot.trials.outerjoin(
                ot.trial_user_attributes, and_(a.trial_id == t.trial_id, a.key == result_attr)
            ).outerjoin(ot.trial_values, and_(v.trial_id == t.trial_id, v.objective == 0))
        )
        .where(t.study_id.in_(list(study_ids)))
        .group_by(t.study_id, t.state, a.value_json, v.value_type)
    )


def tally(rows: Iterable[Sequence[Any]], decode: Callable[[str], object]) -> Tally:
    """One study's :class:`Tally` from its :func:`tallies_query` rows (without the study id);
    ``decode`` reads a stored result attribute's JSON (and says what to do with a bad one)."""
    states: dict[str, int] = {}
    results: dict[tuple[str, str | None], int] = {}
    values: list[float] = []
    for state, result_json, value_type, n, high, low in rows:
        state = str(state)  # an enum name: PostgreSQL's driver and SQLite both give text
        states[state] = states.get(state, 0) + n
        result = None if result_json is None else decode(result_json)
        key = (state, None if result is None else str(result))
        results[key] = results.get(key, 0) + n
        if state != "COMPLETE" or value_type is None:
            continue
        kind = str(value_type)
        if kind in INFINITE:
            values.append(INFINITE[kind])
        else:
            values.extend(x for x in (high, low) if x is not None)
    return Tally(
        states=states,
        results=results,
        highest=max(values) if values else None,
        lowest=min(values) if values else None,
    )


def _trials(connection: Connection, studies: dict[int, tuple[str, int]]) -> tuple[TrialRow, ...]:
    """Every trial of ``studies`` with its value and parameters, as ``Store.trials`` reads
    them (and checks them: a row it would call damaged makes this read give up)."""
    if not studies:
        return ()
    ids = list(studies)
    in_studies = ot.trials.c.study_id.in_(ids)
    p, v, a = ot.trial_params.c, ot.trial_values.c, ot.trial_user_attributes.c
    params: dict[int, dict[str, Any]] = {}
    param_query = (
        select(p.trial_id, p.param_name, p.param_value, p.distribution_json)
        .join(ot.trials, ot.trials.c.trial_id == p.trial_id)
        .where(in_studies)
        .order_by(p.param_id)
    )
    for trial_id, name, internal, distribution in connection.execute(param_query):
        params.setdefault(trial_id, {})[name] = external(distribution, internal)
    values: dict[int, float] = {}
    value_query = (
        select(v.trial_id, v.value, v.value_type)
        .join(ot.trials, ot.trials.c.trial_id == v.trial_id)
        .where(in_studies, v.objective == 0)
    )
    for trial_id, value, value_type in connection.execute(value_query):
        values[trial_id] = INFINITE.get(value_type, math.nan if value is None else value)
    attr_query = (
        select(a.value_json)
        .join(ot.trials, ot.trials.c.trial_id == a.trial_id)
        .where(in_studies, a.key.in_(_TRIAL_ATTRS))
    )
    for (value_json,) in connection.execute(attr_query):
        _json(value_json)  # read, as Store.trials reads it: damaged, it is not ours to show
    retries = {
        trial_id: retry_of({RETRY_OF: _json(value_json)})
        for trial_id, value_json in connection.execute(retries_query(in_studies))
    }
    trial_query = (
        select(ot.trials.c.study_id, ot.trials.c.number, ot.trials.c.trial_id, ot.trials.c.state)
        .where(in_studies)
        .order_by(ot.trials.c.study_id, ot.trials.c.number)
    )
    found = list(connection.execute(trial_query))
    draws = study_draws((study_id, number, retries.get(i)) for study_id, number, i, _ in found)
    rows = [
        TrialRow(
            *studies[study_id],
            number,
            str(state),
            values.get(trial_id, math.nan),
            params.get(trial_id, {}),
            draws[study_id][number],
        )
        for study_id, number, trial_id, state in found
    ]
    return tuple(sorted(rows, key=lambda r: (r.arm, r.replicate, r.number)))


def retries_query(in_studies: ColumnElement[bool]) -> Select[Any]:
    """``(trial id, value_json)`` of each retry's ``failed_trial`` among the trials of the
    studies ``in_studies`` picks: what this reader and ``Store.trials`` read of retries."""
    s = ot.trial_system_attributes.c
    return (
        select(s.trial_id, s.value_json)
        .join(ot.trials, ot.trials.c.trial_id == s.trial_id)
        .where(in_studies, s.key == RETRY_OF)
    )


def external(distribution_json: object, internal: object) -> Any:
    """A parameter's value as Optuna gives it back (``to_external_repr``) from its stored
    internal value, for the distributions dynl2 writes (Optuna's float, int and categorical);
    any other, or one Optuna would refuse, is :class:`_Unusual`."""
    found = _json(distribution_json)
    if not isinstance(found, dict) or not isinstance(internal, int | float):
        raise _Unusual
    name, attrs = found.get("name"), found.get("attributes")
    if not isinstance(attrs, dict) or set(found) != {"name", "attributes"}:
        raise _Unusual
    if name == "CategoricalDistribution" and set(attrs) == {"choices"}:
        choices = attrs["choices"]
        index = int(internal)
        if not isinstance(choices, list) or not 0 <= index < len(choices):
            raise _Unusual
        if any(c is not None and not isinstance(c, bool | int | float | str) for c in choices):
            raise _Unusual
        return choices[index]
    if name not in ("FloatDistribution", "IntDistribution") or set(attrs) != {
        "low", "high", "log", "step"
    }:  # fmt: skip
        raise _Unusual
    low, high, log, step = attrs["low"], attrs["high"], attrs["log"], attrs["step"]
    numbers = [x for x in (low, high, step) if x is not None]
    if any(isinstance(x, bool) or not isinstance(x, int | float) for x in numbers):
        raise _Unusual
    if not isinstance(log, bool) or low is None or high is None or not low <= high:
        raise _Unusual
    if name == "FloatDistribution":
        if (log and (step is not None or low <= 0)) or (step is not None and step <= 0):
            raise _Unusual
        return internal
    if step is None or step <= 0 or (log and (step != 1 or low < 1)):
        raise _Unusual
    return int(internal)


def _evaluation_rows(connection: Connection, experiment_id: int) -> tuple[EvaluationRow, ...]:
    e = _evaluations.c
    query = (
        select(e.arm, e.replicate, e.seed, e.params, e.test_loss, e.test_acc)
        .where(e.experiment_id == experiment_id)
        .order_by(e.arm, e.replicate, e.seed)
    )
    out = []
    for arm, replicate, seed, params, test_loss, test_acc in connection.execute(query):
        decoded = _json(params)
        if not isinstance(decoded, dict):
            raise _Unusual
        out.append(EvaluationRow(arm, replicate, seed, decoded, _float(test_loss),
                                 _float(test_acc)))  # fmt: skip
    return tuple(out)


def _float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Unusual
    return float(value)


def _running(
    connection: Connection, experiment: str, attrs: tuple[str, ...]
) -> dict[str, tuple[RunningTrial, ...]]:
    """The RUNNING trials of every study named ``EXPERIMENT/...``, by study name (as Optuna
    finds a study, by its name), each with the user attributes ``attrs`` it has, by trial id.
    The state is compared here, not in SQL: PostgreSQL has no ``=`` between Optuna's enum
    column and text (:mod:`storage.optuna_tables`)."""
    t, a, s = ot.trials.c, ot.trial_user_attributes.c, ot.studies.c
    query = (
        select(s.study_name, t.trial_id, t.number, t.state, a.key, a.value_json)
        .select_from(
            ot.trials.join(ot.studies, s.study_id == t.study_id).outerjoin(
                ot.trial_user_attributes, and_(a.trial_id == t.trial_id, a.key.in_(attrs))
            )
        )
        .where(s.study_name.startswith(f"{experiment}/", autoescape=True))
        .order_by(t.trial_id)
    )
    found: dict[str, dict[int, RunningTrial]] = {}
    for name, trial_id, number, state, key, value_json in connection.execute(query):
        if str(state) != "RUNNING":
            continue
        trial = found.setdefault(name, {}).setdefault(trial_id, RunningTrial(number, {}))
        if key is not None:
            trial.attrs[key] = _json(value_json)
    return {name: tuple(trials.values()) for name, trials in found.items()}
