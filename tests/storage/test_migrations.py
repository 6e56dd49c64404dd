"""Versioned migrations of dynl2's tables: old stores upgraded on open, read as they are
without ``create``, new stores stamped at the head, newer stores refused; on every backend."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect, text

import storage
from storage import migrations
from storage.engine import engine_kwargs
from storage.schema import SCHEMA_VERSION
from tests.reliability.helpers import store_fingerprint
from tests.storage.backends import empty_url, statements
from tests.storage.legacy import (
    ARM,
    CREATED,
    DIVERGED,
    DIVERGED_SEED,
    EVALUATIONS,
    EXPERIMENT,
    PARAMS,
    SEED,
    TRAINER_SEED,
    build_legacy_store,
    created_at,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

NEW_CONSTRAINT = "uq_dynl2_evaluations_experiment_id_arm_replicate_seed"
WORKERS = 2  # processes that open one old store at the same moment
_READS = ("SELECT", "SHOW", "WITH")  # statements that cannot change a database


# ------------------------------------------------------------------------------ helpers


def _scalar(url: str, sql: str) -> Any:
    engine = create_engine(url, **engine_kwargs(url))
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def _revision(url: str) -> Any:
    return _scalar(url, f"SELECT version_num FROM {migrations.VERSION_TABLE}")


def _optuna_revision(url: str) -> Any:
    return _scalar(url, "SELECT version_num FROM alembic_version")


def _schema_version(url: str) -> Any:
    return _scalar(url, "SELECT value FROM dynl2_meta WHERE key = 'schema_version'")


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url, **engine_kwargs(url))
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    finally:
        engine.dispose()


def _params_text(url: str) -> list[tuple[Any, ...]]:
    """``(seed, params)`` of every evaluation, as the database holds them."""
    return _rows(url, "SELECT seed, params FROM dynl2_evaluations ORDER BY seed")


def _extras(url: str) -> list[tuple[Any, ...]]:
    return _rows(url, "SELECT seed, trainer_seed, diverged FROM dynl2_evaluations ORDER BY seed")


CLEAN = json.dumps(PARAMS, sort_keys=True)  # the params of EVALUATIONS without their extras


def _values(column: pd.Series) -> list[Any]:
    return [None if pd.isna(value) else value for value in column]


def _assert_moved(evals: pd.DataFrame) -> None:
    """The legacy EVALUATIONS as this dynl2 reads them: the searched parameters in params, the
    seed the run trained with and why it diverged in their own columns."""
    assert evals[["arm", "seed", "replicate"]].values.tolist() == [
        [ARM, SEED, 1],
        [ARM, DIVERGED_SEED, 1],
    ]
    assert list(evals["params"]) == [PARAMS, PARAMS]
    assert str(evals["trainer_seed"].dtype) == "Int64"
    assert _values(evals["trainer_seed"]) == [TRAINER_SEED, None]
    assert _values(evals["diverged"]) == [None, DIVERGED]
    assert evals.iloc[0]["test_acc"] == 0.75 and pd.isna(evals.iloc[1]["test_acc"])
    assert list(evals["created"]) == [created_at()] * 2


def _shape(url: str, *, version_table: bool = True) -> dict[str, Any]:
    """dynl2's tables as the database reports them: columns (name, type, null, default) in
    order, and every named key, index and trigger."""
    engine = create_engine(url, **engine_kwargs(url))
    try:
        with engine.connect() as connection:
            found = inspect(connection)
            shape: dict[str, Any] = {}
            for name in sorted(found.get_table_names()):
                if not name.startswith("dynl2_") or (
                    name == migrations.VERSION_TABLE and not version_table
                ):
                    continue
                pk = found.get_pk_constraint(name)
                shape[name] = {
                    "columns": [
                        (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                        for c in found.get_columns(name)
                    ],
                    "pk": (pk["name"], pk["constrained_columns"]),
                    "fks": sorted(
                        (
                            fk["name"],
                            tuple(fk["constrained_columns"]),
                            fk["referred_table"],
                            tuple(fk["referred_columns"]),
                            fk["options"].get("ondelete"),
                        )
                        for fk in found.get_foreign_keys(name)
                    ),
                    "unique": sorted(
                        (u["name"], tuple(u["column_names"]))
                        for u in found.get_unique_constraints(name)
                    ),
                    "indexes": sorted(
                        (i["name"], tuple(i["column_names"]), i["unique"])
                        for i in found.get_indexes(name)
                    ),
                }
            if engine.dialect.name == "sqlite":
                shape["triggers"] = sorted(
                    connection.execute(
                        text("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'")
                    ).all()
                )
            return shape
    finally:
        engine.dispose()


def _fingerprint(url: str) -> Any:
    """Everything a write could change (``store_fingerprint``: the SQLite file and WAL bytes,
    or every PostgreSQL table row by row), plus the columns, which a schema change alters even
    in an empty table."""
    columns = {}
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        for table in inspector.get_table_names():
            columns[table] = [
                (c["name"], str(c["type"]), str(c.get("default")))
                for c in inspector.get_columns(table)
            ]
    finally:
        engine.dispose()
    return store_fingerprint(url), columns


@contextmanager
def _other_database(url: str, folder: Path) -> Iterator[str]:
    """An empty database of the same backend as ``url`` (SQLite: a file in ``folder``)."""
    folder.mkdir()
    backend = "sqlite" if storage.sqlite_path(url) is not None else "postgresql"
    with empty_url(backend, folder) as other:
        yield other


def _writes(statements: list[str]) -> list[str]:
    return [
        s
        for s in statements
        if not s.lstrip().upper().startswith(_READS)
        and not (s.lstrip().upper().startswith("PRAGMA") and "=" not in s)
    ]


# ------------------------------------------------------------------------ the revisions


def test_every_revision_has_its_schema_version() -> None:
    assert set(migrations.SCHEMA_VERSIONS) == migrations.revisions()
    assert migrations.SCHEMA_VERSIONS[migrations.head()] == SCHEMA_VERSION
    assert migrations.VERSION_TABLE != "alembic_version"  # Optuna's


# --------------------------------------------------------------------- opening old stores


@pytest.mark.parametrize("old_version", [1, 2, 3])
def test_open_upgrades_a_store_an_older_dynl2_wrote(store_url: str, old_version: int) -> None:
    legacy = build_legacy_store(store_url, old_version)
    with storage.open(store_url) as store:
        evals = store.evaluations(EXPERIMENT)
        epochs = store.epochs(EXPERIMENT)
        reports = store.reports(EXPERIMENT)
    assert _revision(store_url) == migrations.head()
    assert _schema_version(store_url) == str(SCHEMA_VERSION)
    assert _optuna_revision(store_url) == legacy.optuna_revision  # Optuna's, untouched
    # Rows kept; what was there is replicate 1; the extras moved out of params, in the database.
    _assert_moved(evals)
    assert _params_text(store_url) == [(SEED, CLEAN), (DIVERGED_SEED, CLEAN)]
    assert _extras(store_url) == [(SEED, TRAINER_SEED, None), (DIVERGED_SEED, None, DIVERGED)]
    assert list(epochs["trial_id"]) == [legacy.trial_id]
    assert list(reports["path"]) == (["r.html"] if old_version >= 2 else [])
    assert _shape(store_url)["dynl2_evaluations"]["unique"] == [
        (NEW_CONSTRAINT, ("experiment_id", "arm", "replicate", "seed"))
    ]


def test_the_new_key_holds_replicates_apart(store_url: str) -> None:
    build_legacy_store(store_url)
    with storage.open(store_url) as store:
        store.record_evaluation(EXPERIMENT, ARM, SEED, {"lam": 0.5}, replicate=2, test_loss=0.1)
        store.record_evaluation(EXPERIMENT, ARM, SEED, {"lam": 0.2}, test_loss=0.3)  # replaces
        evals = store.evaluations(EXPERIMENT).query("seed == @SEED")
        seeds = store.evaluated_seeds(EXPERIMENT, ARM), store.evaluated_seeds(EXPERIMENT, ARM, 2)
    assert [(r.replicate, r.params, r.test_loss) for r in evals.itertuples()] == [
        (1, {"lam": 0.2}, 0.3),
        (2, {"lam": 0.5}, 0.1),
    ]
    assert seeds == ({SEED, DIVERGED_SEED}, {SEED})


@pytest.mark.parametrize("old_version", [2, 3])
def test_an_upgraded_store_has_the_tables_of_a_new_one(
    store_url: str, tmp_path: Path, old_version: int
) -> None:
    with _other_database(store_url, tmp_path / "fresh") as fresh_url:
        storage.open(fresh_url).close()  # create_all, stamped at the head
        build_legacy_store(store_url, old_version)
        storage.open(store_url).close()  # the migrations
        assert _shape(store_url) == _shape(fresh_url)


def test_the_revisions_alone_build_the_tables_of_the_models(
    store_url: str, tmp_path: Path
) -> None:
    """From nothing, the baseline and each later revision give what ``storage.schema``
    declares; back at an older revision, the tables are exactly the ones dynl2 used to create
    there."""
    optuna.storages.RDBStorage(store_url, engine_kwargs=engine_kwargs(store_url)).engine.dispose()
    engine = create_engine(store_url, **engine_kwargs(store_url))
    try:
        with migrations.transaction(store_url, engine) as connection:
            migrations.replay(connection)
        with _other_database(store_url, tmp_path / "fresh") as fresh_url:
            storage.open(fresh_url).close()
            assert _shape(store_url) == _shape(fresh_url)
        with _other_database(store_url, tmp_path / "v3") as v3_url:
            build_legacy_store(v3_url, 3)
            with migrations.transaction(store_url, engine) as connection:
                migrations.downgrade(connection, "0002")
            assert _shape(store_url) == _shape(v3_url)
            assert _schema_version(store_url) == "3"
        with _other_database(store_url, tmp_path / "old") as old_url:
            build_legacy_store(old_url)
            with migrations.transaction(store_url, engine) as connection:
                migrations.downgrade(connection, "0001")
            assert _shape(store_url, version_table=False) == _shape(old_url)
            assert _schema_version(store_url) == "2"
        with migrations.transaction(store_url, engine) as connection:
            migrations.downgrade(connection, "base")
        left = set(_shape(store_url, version_table=False))
        assert left == ({"triggers"} if engine.dialect.name == "sqlite" else set())
        assert _shape(store_url).get("triggers", []) == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("old_version", [2, 3])
def test_an_upgrade_that_fails_leaves_the_old_store_as_it_was(
    store_url: str, monkeypatch: pytest.MonkeyPatch, old_version: int
) -> None:
    """All of an upgrade, or none: SQLite rebuilds dynl2_evaluations, revision 0003 rewrites
    its params, and a worker killed halfway must not leave a half-done table behind."""
    build_legacy_store(store_url, old_version)
    before = _shape(store_url), _params_text(store_url)

    def fail(*args: Any) -> None:
        raise RuntimeError("killed after the revisions ran")

    monkeypatch.setattr(migrations, "_write_schema_version", fail)
    with pytest.raises(RuntimeError, match="killed"):
        storage.open(store_url)
    assert (_shape(store_url), _params_text(store_url)) == before
    monkeypatch.undo()
    with storage.open(store_url) as store:
        _assert_moved(store.evaluations(EXPERIMENT))


# ------------------------------------------------------------------- read-only opening


@pytest.mark.parametrize("old_version", [2, 3])
def test_open_without_create_reads_an_old_store_and_writes_nothing(
    store_url: str, old_version: int
) -> None:
    build_legacy_store(store_url, old_version)
    before = _fingerprint(store_url)
    with statements() as seen, storage.open(store_url, create=False) as store:
        evals = store.evaluations(EXPERIMENT)
        seeds = store.evaluated_seeds(EXPERIMENT, ARM), store.evaluated_seeds(EXPERIMENT, ARM, 2)
        with pytest.raises(storage.StorageError, match="create=True") as refused:
            store.record_evaluation(EXPERIMENT, ARM, 1, {}, test_loss=0.1)
    assert _writes(seen) == []
    assert _fingerprint(store_url) == before
    assert "\n" not in str(refused.value)
    _assert_moved(evals)  # read as the upgrade would leave it
    assert str(evals["replicate"].dtype) == "int64"
    assert seeds == ({SEED, DIVERGED_SEED}, set())
    with storage.open(store_url) as store:  # and it still upgrades afterwards
        assert store.evaluated_seeds(EXPERIMENT, ARM) == {SEED, DIVERGED_SEED}
    assert _revision(store_url) == migrations.head()


# Params revision 0003 cannot move its extras out of (not of the types dynl2 wrote), or need
# not: left as they are, whether the store is upgraded or read without upgrading it.
ODD_PARAMS = (
    '{"lam": 0.1, "trainer_seed": "7"}',
    '{"lam": 0.1, "trainer_seed": true}',
    '{"lam": 0.1, "trainer_seed": 9223372036854775808}',  # 2**63: no BIGINT holds it
    '{"diverged": 5, "lam": 0.1}',
    '{"lam": 0.1, "meta": {"trainer_seed": 3}}',  # named, but not a key of params
    '{"lam": 0.1}',
)


def test_rows_the_upgrade_cannot_move_stay_and_both_roads_read_alike(store_url: str) -> None:
    build_legacy_store(store_url, 3)
    odd = [(100 + i, params) for i, params in enumerate(ODD_PARAMS)]
    engine = create_engine(store_url, **engine_kwargs(store_url))
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO dynl2_evaluations (experiment_id, arm, seed, params, created) "
                    "SELECT id, :arm, :seed, :params, :created FROM dynl2_experiments"
                ),
                [{"arm": ARM, "seed": s, "params": p, "created": CREATED} for s, p in odd],
            )
    finally:
        engine.dispose()
    with storage.open(store_url, create=False) as store:
        unmoved = store.evaluations(EXPERIMENT)
    with storage.open(store_url) as store:
        upgraded = store.evaluations(EXPERIMENT)
    pd.testing.assert_frame_equal(unmoved, upgraded)
    _assert_moved(upgraded.iloc[:2])
    assert list(upgraded["params"].iloc[2:]) == [json.loads(p) for p in ODD_PARAMS]
    assert _params_text(store_url)[2:] == odd  # not rewritten: the very text
    assert _extras(store_url)[2:] == [(seed, None, None) for seed, _ in odd]


def test_going_back_to_revision_0002_puts_the_extras_back_into_params(store_url: str) -> None:
    build_legacy_store(store_url, 3)
    storage.open(store_url).close()
    engine = create_engine(store_url, **engine_kwargs(store_url))
    try:
        with migrations.transaction(store_url, engine) as connection:
            migrations.downgrade(connection, "0002")
    finally:
        engine.dispose()
    assert _params_text(store_url) == [(seed, params) for seed, params, *_ in EVALUATIONS]


# --------------------------------------------------------------------- new and newer


def test_a_new_store_is_at_the_head_and_reopening_writes_nothing(store_url: str) -> None:
    storage.open(store_url).close()
    assert _revision(store_url) == migrations.head()
    assert _schema_version(store_url) == str(SCHEMA_VERSION)
    before = _fingerprint(store_url)
    with statements() as seen, storage.open(store_url) as store:
        assert store.experiments().empty
    assert _writes(seen) == []
    assert _fingerprint(store_url) == before


@pytest.mark.parametrize("create", [True, False])
def test_a_store_at_an_unknown_revision_is_refused(prepared_url: str, create: bool) -> None:
    with storage.open(prepared_url) as store, store.engine.begin() as connection:
        connection.execute(text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = 'f00d'"))
    before = _fingerprint(prepared_url)
    with pytest.raises(storage.StorageError, match="upgrade dynl2") as refused:
        storage.open(prepared_url, create=create)
    message = str(refused.value)
    assert "\n" not in message and "'f00d'" in message, message
    assert _fingerprint(prepared_url) == before


# ------------------------------------------------------------------------ races


def _open_together(url: str, barrier: Any, results: Any) -> None:
    """One of several processes that open the same old store at the same moment."""
    barrier.wait(timeout=120)  # every process has imported dynl2: now they race
    try:
        with storage.open(url) as store:
            evals = store.evaluations(EXPERIMENT)
            results.put(("ok", evals["replicate"].tolist(), evals["params"].tolist()))
    except BaseException as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))
        raise


@pytest.mark.slow  # spawned interpreters: a few seconds
def test_processes_opening_an_old_store_at_once_all_succeed(store_url: str) -> None:
    build_legacy_store(store_url)
    context = multiprocessing.get_context("spawn")  # like real workers: nothing inherited
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    processes = [
        context.Process(target=_open_together, args=(store_url, barrier, results))
        for _ in range(WORKERS)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=180) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=60)
    assert outcomes == [("ok", [1, 1], [PARAMS, PARAMS])] * WORKERS
    assert [process.exitcode for process in processes] == [0] * WORKERS
    assert _revision(store_url) == migrations.head()
    assert _scalar(store_url, f"SELECT count(*) FROM {migrations.VERSION_TABLE}") == 1
