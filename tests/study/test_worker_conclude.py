"""A trial whose ending cannot be recorded for a reason other than the database (a bug, a library
misused) fails as a trial: marked FAIL with its reason, one line naming it, never left RUNNING
nor reported as "the database failed" (Hyperband's DetachedInstanceError was both)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import pytest
from sqlalchemy.orm.exc import DetachedInstanceError

import storage
from study.cli.dispatch import main
from study.search import trials as trials_module
from tests.tiny import write_tiny


@pytest.fixture
def torch_threads() -> Iterator[None]:
    """A one-worker run sets this process's torch threads (as a worker process's); put back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_trial_that_cannot_be_told_fails_as_a_trial(tmp_path, monkeypatch, torch_threads):
    def broken(*args: object, **kwargs: object) -> None:
        raise DetachedInstanceError("Instance <TrialModel> is not bound to a Session")

    monkeypatch.setattr(trials_module, "tell_many", broken)
    monkeypatch.chdir(tmp_path)
    config = write_tiny(tmp_path, "told", epochs=1, n_trials=2, seeds=1, arms=("fixed",))
    url = f"sqlite:///{tmp_path / 'told.db'}"
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["run", str(config), "--quiet", "--storage", url])
    assert code == 1
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "dynl2 run: failed: trial fixed#0 failed: sqlalchemy.orm.exc.DetachedInstanceError: "
        "Instance <TrialModel> is not bound to a Session"
    )
    with storage.open(url, create=False) as store:
        trials = store.trials("told")
    assert list(trials["state"]) == ["FAIL"]
    assert "DetachedInstanceError" in trials["fail_reason"][0]
