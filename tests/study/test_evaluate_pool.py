"""The evaluation's pool processes (``dynl2 evaluate --workers N``, ``dynl2 run``'s evaluation
with workers): forked from a server process that imported torch once, yet each sees the
environment, working folder and import path of the evaluation that starts it, and evaluates
exactly what one process evaluates."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

import storage
from study.config.experiment import load_experiment
from study.run import evaluate as evaluation

from .test_run_e2e import dynl2, write_config

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="off Linux the pool spawns its processes"
)


def seen_from_a_pool_process() -> tuple[str | None, str, str, int]:
    """What a pool process sees: ``$POOL_PROBE_SETTING``, its working folder, what the module
    ``pool_probe`` (importable only through the path the test adds) holds, and its parent's
    pid."""
    import pool_probe  # type: ignore[import-not-found]  # written by the test below

    return (
        os.environ.get("POOL_PROBE_SETTING"),
        os.getcwd(),
        pool_probe.VALUE,
        os.getppid(),
    )


def test_a_pool_process_sees_the_environment_folder_and_path_of_its_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with evaluation.start_pool(1) as first:  # the fork server runs from here on
        assert first.submit(os.getpid).result() != os.getpid()
    assert evaluation.pool_context().get_start_method() == "forkserver"

    probe = tmp_path / "path"
    probe.mkdir()
    (probe / "pool_probe.py").write_text("VALUE = 'from the added path'\n")
    monkeypatch.setenv("POOL_PROBE_SETTING", "set after the server started")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(probe))
    with evaluation.start_pool(1) as pool:
        env, cwd, value, parent = pool.submit(seen_from_a_pool_process).result()
    assert env == "set after the server started"
    assert Path(cwd) == tmp_path
    assert value == "from the added path"
    assert parent != os.getpid()  # forked by the server, not by this process


def test_an_evaluation_in_pool_processes_equals_one_in_this_process(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, "pooled", epochs=3, n_trials=2, seeds=1)
    url = f"sqlite:///{tmp_path / 'searched.db'}"
    done = dynl2("run", str(config_path), "--workers", "1", "--quiet", "--storage", url)
    assert done.returncode == 0, done.stderr
    config = load_experiment(config_path)
    rows = {}
    for workers in (1, 2):
        copy = tmp_path / f"w{workers}.db"
        shutil.copy(tmp_path / "searched.db", copy)
        with storage.open(f"sqlite:///{copy}", create=False) as store:
            ran = evaluation.evaluate(store, config, seeds=5, workers=workers, batch=2)
            assert ran == 3 * 4  # three arms, the four seeds the run did not evaluate
            frame = store.evaluations("pooled").sort_values(["arm", "seed"])
        rows[workers] = frame[["arm", "seed", "trainer_seed", "test_acc", "test_loss"]]
    assert rows[2].to_dict("records") == rows[1].to_dict("records")
