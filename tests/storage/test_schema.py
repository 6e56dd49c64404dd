"""Opening a store: which tables exist, schema versioning, and what create=False refuses."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import optuna
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import StatementError

import storage
from storage import migrations
from storage.schema import DYNL2_TABLES, SCHEMA_VERSION, Experiment, UTCDateTime

OPTUNA_CORE_TABLES = {"studies", "trials", "trial_params", "trial_values", "alembic_version"}


def test_open_creates_optuna_and_dynl2_tables(store_url: str) -> None:
    with storage.open(store_url) as store:
        tables = set(inspect(store.engine).get_table_names())
        with store.engine.connect() as connection:
            version = connection.execute(
                text("SELECT value FROM dynl2_meta WHERE key = 'schema_version'")
            ).scalar()
    ours = {t for t in tables if t.startswith("dynl2_")}
    assert ours == {
        "dynl2_meta", "dynl2_experiments", "dynl2_epochs", "dynl2_evaluations", "dynl2_reports",
        "dynl2_suites", "dynl2_suite_experiments", "dynl2_suite_reports", "dynl2_alembic_version",
    }  # fmt: skip
    assert ours == {t.name for t in DYNL2_TABLES} | {migrations.VERSION_TABLE}
    assert tables >= OPTUNA_CORE_TABLES
    assert version == str(SCHEMA_VERSION)


def test_evaluations_columns_and_key(store: storage.Store) -> None:
    found = inspect(store.engine)
    columns = [c["name"] for c in found.get_columns("dynl2_evaluations")]
    assert columns == [
        "id", "experiment_id", "arm", "seed", "params",
        "test_loss", "test_acc", "val_loss", "val_acc", "seconds", "created", "replicate",
        "trainer_seed", "diverged",
    ]  # fmt: skip
    keys = [
        (u["name"], u["column_names"]) for u in found.get_unique_constraints("dynl2_evaluations")
    ]
    assert keys == [
        (
            "uq_dynl2_evaluations_experiment_id_arm_replicate_seed",
            ["experiment_id", "arm", "replicate", "seed"],
        )
    ]


def test_reopening_is_idempotent(store_url: str) -> None:
    with storage.open(store_url) as first:
        first.create_experiment("e", {"a": 1})
    with storage.open(store_url) as second:
        assert second.get_experiment("e").config == {"a": 1}
        with second.engine.connect() as connection:
            count = connection.execute(text("SELECT count(*) FROM dynl2_meta")).scalar()
        assert count == 1


def test_epochs_foreign_key_points_at_optuna_trials(store: storage.Store) -> None:
    (fk,) = inspect(store.engine).get_foreign_keys("dynl2_epochs")
    assert fk["referred_table"] == "trials"
    assert fk["referred_columns"] == ["trial_id"]
    assert fk["options"].get("ondelete", "").upper() == "CASCADE"


def test_open_without_create_refuses_a_missing_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "dynl2.db"
    with pytest.raises(storage.StorageUnavailable, match=str(path)):
        storage.open(f"sqlite:///{path}", create=False)
    assert not path.parent.exists()


def test_open_without_create_refuses_a_database_without_dynl2_tables(store_url: str) -> None:
    optuna_only = optuna.storages.RDBStorage(store_url)  # Optuna's tables, none of ours
    optuna_only.engine.dispose()
    with pytest.raises(storage.StorageError, match="no dynl2 tables"):
        storage.open(store_url, create=False)
    with storage.open(store_url) as created:  # and the refusal wrote nothing
        assert created.experiments().empty


def test_open_without_create_reads_an_existing_store(prepared_url: str) -> None:
    with storage.open(prepared_url) as writer:
        writer.create_experiment("e", {"a": 1})
    with storage.open(prepared_url, create=False) as reader:
        assert list(reader.experiments()["name"]) == ["e"]


def test_newer_schema_version_is_refused(prepared_url: str) -> None:
    with storage.open(prepared_url) as store, store.engine.begin() as connection:
        connection.execute(
            text("UPDATE dynl2_meta SET value = :v WHERE key = 'schema_version'"),
            {"v": str(SCHEMA_VERSION + 1)},
        )
    with pytest.raises(storage.StorageError, match="upgrade dynl2"):
        storage.open(prepared_url)


def test_unreachable_server_is_storage_unavailable() -> None:
    with pytest.raises(storage.StorageUnavailable, match=r"127\.0\.0\.1:1"):
        storage.open("postgresql+psycopg://postgres@127.0.0.1:1/nothing")


def test_utc_datetime_refuses_naive_values(store: storage.Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().process_bind_param(datetime(2024, 1, 1), store.engine.dialect)
    # A naive datetime is a bug in dynl2, not a user error: it is not dressed as StorageError.
    with pytest.raises(StatementError, match="naive"), store._session() as session:
        session.add(Experiment(name="naive", config="{}", created=datetime(2024, 1, 1)))


def test_session_rolls_back_on_error(store: storage.Store) -> None:
    with pytest.raises(RuntimeError, match="boom"), store._session() as session:
        session.add(Experiment(name="lost", config="{}", created=datetime.now().astimezone()))
        session.flush()
        raise RuntimeError("boom")
    assert store.experiments().empty
    store.create_experiment("kept", {})  # the store is still usable
    assert list(store.experiments()["name"]) == ["kept"]


def test_driver_errors_become_storage_errors(store: storage.Store) -> None:
    store.create_experiment("e", {})
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE dynl2_evaluations"))
    with pytest.raises(storage.StorageError, match="dynl2_evaluations") as info:
        store.evaluated_seeds("e", "dynamic")
    assert info.value.__cause__ is not None
