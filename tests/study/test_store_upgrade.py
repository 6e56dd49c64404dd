"""A store the previous dynl2 left still reads, reports and resumes (revision 0003).

The previous dynl2 (schema revision 0002) kept an evaluation's ``trainer_seed`` and
``diverged`` inside its ``params`` JSON. The store here is made by a real small run, then taken
back to revision 0002 with the values put back into ``params``: the verbs that only read show
it without writing a byte, ``dynl2 report`` (which upgrades it) gives the numbers it gave
before, and ``dynl2 run`` with more seeds upgrades it and evaluates only the new seeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import sqlalchemy as sa

import storage
from storage import migrations
from tests.reliability.helpers import run_cli, store_fingerprint
from tests.storage.backends import BACKENDS, empty_url
from tests.tiny import write_tiny

pytestmark = pytest.mark.slow

NAME = "old"
ARMS = ("dynamic", "fixed", "none")
SEEDS = 2


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # reports go to ./dynl2-workspace: keep it out of the tree
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def back_to_0002(url: str) -> None:
    """Take the store back to the tables of revision 0002, as the previous dynl2 wrote them:
    no trainer_seed or diverged columns, their values inside params."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with migrations.transaction(url, engine) as connection:
            migrations.downgrade(connection, "0002")
        with engine.connect() as connection:
            columns = {c["name"] for c in sa.inspect(connection).get_columns("dynl2_evaluations")}
            stored = connection.execute(sa.text("SELECT params FROM dynl2_evaluations"))
            params = [json.loads(text) for text in stored.scalars()]
            revision = connection.scalar(sa.text("SELECT version_num FROM dynl2_alembic_version"))
    finally:
        engine.dispose()
    assert revision == "0002" and "replicate" in columns
    assert not {"trainer_seed", "diverged"} & columns
    assert params and all("trainer_seed" in p or "diverged" in p for p in params), params


def evaluations(url: str) -> pd.DataFrame:
    with storage.open(url, create=False) as store:
        return store.evaluations(NAME)


def report_numbers(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """``dynl2 report --json``: the verdict's numbers, without the time it was made."""
    target = tmp_path / "pages" / "report.html"
    code, out, err = run_cli(
        ["report", NAME, "-o", str(target), "--json", "--storage", url], capsys
    )
    assert code == 0, err
    summary = json.loads(out)
    summary.pop("generated")
    return summary


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_store_of_revision_0002_reads_reports_and_resumes(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_tiny(tmp_path, NAME, epochs=2, n_trials=2, seeds=SEEDS, arms=ARMS)
    with empty_url(backend, tmp_path) as url:
        code, _, err = run_cli(["run", str(config), "--storage", url, "--quiet"], capsys)
        assert code == 0, err
        before = report_numbers(url, tmp_path, capsys)
        evaluated = evaluations(url)
        assert evaluated["trainer_seed"].notna().all()  # every run recorded its seed
        assert before["stale_evaluations"] == 0 and before["seeds"] == SEEDS

        back_to_0002(url)
        untouched = store_fingerprint(url)
        code, out, err = run_cli(["status", NAME, "--storage", url], capsys)
        assert code == 0, err
        assert out.count(f"({SEEDS} runs)") == len(ARMS), out
        code, out, err = run_cli(["trials", NAME, "--format", "json", "--storage", url], capsys)
        assert code == 0, err
        # The searched arms' best trials are matched with their evaluations, extras and all.
        tested = {row["arm"] for row in json.loads(out) if row["test_seeds"] == SEEDS}
        assert tested == {"dynamic", "fixed", "none"}
        pd.testing.assert_frame_equal(evaluations(url), evaluated)  # read as if upgraded
        assert store_fingerprint(url) == untouched  # and nothing written

        assert report_numbers(url, tmp_path, capsys) == before
        pd.testing.assert_frame_equal(evaluations(url), evaluated)  # upgraded by the report

        back_to_0002(url)
        config.write_text(config.read_text().replace(f"seeds = {SEEDS}", "seeds = 3"))
        code, _, err = run_cli(["run", str(config), "--storage", url, "--quiet"], capsys)
        assert code == 0, err
        resumed = evaluations(url)

        back_to_0002(url)  # dynl2 evaluate writes evaluations too: it upgrades the store
        code, _, err = run_cli(["evaluate", NAME, "--seeds", "4", "--storage", url], capsys)
        assert code == 0, err
        more = evaluations(url)
    assert len(more) == len(ARMS) * 4
    pd.testing.assert_frame_equal(more[more["seed"] < 3].reset_index(drop=True), resumed)
    assert len(resumed) == len(ARMS) * 3
    kept = resumed[resumed["seed"] < SEEDS].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, evaluated)  # the first seeds kept, not redone
    assert resumed["trainer_seed"].notna().all()
    assert all(set(params) <= {"lr", "alpha", "lam"} for params in resumed["params"])
