"""The comparator arms (``swd``, ``schedule``) end to end: searched from a TOML arm, trained in
fused groups, evaluated and reported, on SQLite and PostgreSQL; each trial's λ_t follows its
scheme's rule (SWD's moves with the gradients, a cosine schedule falls from its start)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

import study
from tests.storage.backends import BACKENDS, empty_url
from tests.tiny import write_tiny


@pytest.mark.parametrize("backend", BACKENDS)
def test_swd_and_schedule_arms_search_evaluate_and_report(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_tiny(tmp_path, "cmp", epochs=3, n_trials=4, seeds=2, arms=("swd", "schedule"))
    with empty_url(backend, tmp_path) as url:
        result = study.run_experiment(path, storage=url, batch=2)
        assert result.complete and result.report is not None
        assert {s.arm: s.seeds for s in result.summary} == {"swd": 2, "schedule": 2}
        status = study.experiment_status("cmp", storage=url)
        assert {key: set(params) for key, params in status.best.items()} == {
            ("swd", 1): {"lr", "lam"},
            ("schedule", 1): {"lr", "lam_start", "lam_end"},
        }
        trials = study.experiment_trials("cmp", storage=url)
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        try:
            with engine.connect() as connection:
                epochs = pd.read_sql(
                    "SELECT trial_id, epoch, lam_min, lam_max FROM dynl2_epochs", connection
                )
        finally:
            engine.dispose()
        html = result.report.path.read_text()
    assert (trials["state"] == "COMPLETE").sum() == 8
    assert html.count(">swd<") >= 1 and html.count(">schedule<") >= 1
    rows = trials.merge(epochs, on="trial_id")
    assert len(rows) == 8 * 3  # every trial's three epochs
    swd = rows[rows["arm"] == "swd"]
    assert (swd["lam_max"] > swd["lam_min"]).all()  # λ_t moves with the gradients each epoch
    for _, row in rows[rows["arm"] == "schedule"].iterrows():
        start, end = row["params"]["lam_start"], row["params"]["lam_end"]
        low, high = min(start, end) * (1 - 1e-5), max(start, end) * (1 + 1e-5)
        assert low <= row["lam_min"] <= row["lam_max"] <= high  # between its two ends
        if row["epoch"] == 1:  # the first step's λ is lam_start: the epoch's min or max
            first = row["lam_min"] if start < end else row["lam_max"]
            # λ = end + (start − end)·1 in float32: exact to a few ulps of the larger end
            assert first == pytest.approx(start, rel=1e-5, abs=5e-7 * max(start, end))
