"""Issue 6, item 4: eight worker processes on one SQLite file, with trials short enough that
they claim, report and tell all the time. No "database is locked" (WAL and the busy timeout
make writers queue), no trial lost or failed, and exactly ``n_trials`` results per arm."""

from __future__ import annotations

import pytest

from study.search.keys import Heartbeat

from .helpers import (
    assert_exact_results,
    create_experiment,
    finish,
    start_worker,
    write_config,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

WORKERS, EPOCHS, N_TRIALS = 8, 2, 8


def test_eight_workers_share_one_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    create_experiment(url, write_config(tmp_path, "busy", epochs=EPOCHS, n_trials=N_TRIALS),
                      Heartbeat())  # fmt: skip
    workers = [start_worker("busy", url, i, quiet=False) for i in range(WORKERS)]
    trained = 0
    for worker in workers:
        code, out, err = finish(worker, 240)
        assert code == 0, err
        assert "locked" not in err.lower() and "Traceback" not in err, err
        trained += sum(line.endswith(": complete") for line in out.splitlines())
    frame = assert_exact_results(url, "busy", N_TRIALS, EPOCHS)
    assert (frame["state"] == "FAIL").sum() == 0  # nothing lost
    assert len(frame) == 2 * N_TRIALS and trained == 2 * N_TRIALS  # every trial told once
