"""``storage.open(url, read_only=True)``: the door ``dynl2 serve`` reads through. Every read
works; the database itself refuses every write on its connections, ours and Optuna's, and
nothing is created where no store is."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

import storage


def test_reads_work_and_writes_are_refused_by_the_database(prepared_url: str) -> None:
    with storage.open(prepared_url) as store:
        store.create_experiment("kept", {"experiment": {"name": "kept"}})
        store.record_report("kept", "kept.html", {"sentence": "s"}, "<p>kept</p>")
    with storage.open(prepared_url, read_only=True) as store:
        assert list(store.experiments()["name"]) == ["kept"]
        (report_id,) = store.reports("kept")["id"]
        stored = store.report(int(report_id))
        assert (stored.experiment, stored.html, stored.summary) == (
            "kept", "<p>kept</p>", {"sentence": "s"},
        )  # fmt: skip
        with pytest.raises(storage.StorageError):
            store.create_experiment("new", {"experiment": {"name": "new"}})
        with pytest.raises(optuna.exceptions.StorageInternalError):
            store.optuna_storage().create_new_study(
                [optuna.study.StudyDirection.MAXIMIZE], "kept/fixed"
            )
        with store.engine.connect() as connection, pytest.raises(sa.exc.DBAPIError):
            connection.execute(sa.text("DELETE FROM dynl2_experiments"))
    with storage.open(prepared_url, create=False) as store:
        assert list(store.experiments()["name"]) == ["kept"]
        assert optuna.get_all_study_names(store.optuna_storage()) == []


def test_an_unknown_report_id_is_reported(prepared_url: str) -> None:
    with (
        storage.open(prepared_url, read_only=True) as store,
        pytest.raises(storage.ReportNotFound, match="No report with id 7"),
    ):
        store.report(7)


def test_read_only_never_creates_a_store(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(storage.StorageUnavailable, match="There is no dynl2 database"):
        storage.open(f"sqlite:///{path}", read_only=True)
    assert not path.exists()
