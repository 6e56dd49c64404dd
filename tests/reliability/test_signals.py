"""Issue 17: Ctrl-C and SIGTERM at any moment, and a SQLite file deleted under a run.

A stop signal ends ``dynl2`` with one line on stderr, no traceback, exit status 130 (SIGINT) or
143 (SIGTERM), the run's worker processes gone within a bound, and nothing lost: the trials in
flight are handed back (FAIL, and queued again with their parameters), so a resumed run ends
with exactly ``n_trials`` results per arm, nothing counted twice. The moments: as soon as the
process starts, while it imports (its handlers installed, nothing printed yet), during the
search with a trial early in flight, during the evaluation; SIGTERM to ``dynl2 run --workers 2``
and to a ``dynl2 worker``; Ctrl-C from a terminal, which reaches the run and its workers alike.

A store file deleted mid-run used to end with exit status 0 and every result silently written
to a file nobody can open: now exit status 1 and one line.

Every wait is on a state (a trial early in its training, the process's signal handlers), with
generous bounds for a busy 2-core machine; never a fixed sleep."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import storage
from study.config.experiment import load_experiment
from study.search.keys import Heartbeat

from .helpers import (
    ARMS,
    ROOT,
    STARTED,
    assert_exact_results,
    child_env,
    create_experiment,
    early_in_flight,
    finish,
    retried_once,
    spawn,
    start_worker,
    trials,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

EPOCHS, N_TRIALS, SEEDS = 100, 2, 2  # a trial trains for 5 s on an idle core, 100 s on a busy one
WAIT_S = 600  # the longest wait for a state: other test runs may share the machine
ENV = {"DYNL2_HEARTBEAT": "1,2"}  # a trial left RUNNING (a worker killed) is retried quickly
GONE_WITHIN_S = 30  # every process of a stopped run has ended (the run kills after 15 s)


# --------------------------------------------------------------------------------- helpers


def _lines(err: str) -> list[str]:
    return err.strip().splitlines()


def _assert_one_line(code: int, err: str, status: int, words: str) -> str:
    lines = _lines(err)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert len(lines) == 1, err
    assert code == status, err
    assert lines[0].startswith("dynl2"), lines[0]
    assert words in lines[0], lines[0]
    return lines[0]


def _signals(pid: int, field: str) -> set[int]:
    """The signals of a mask in ``/proc/PID/status``: ``SigCgt`` (handled), ``SigIgn``."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return set()
    mask = next(int(line.split()[1], 16) for line in status.splitlines() if line[:7] == field)
    return {n for n in range(1, 65) if mask >> (n - 1) & 1}


def _caught(pid: int) -> set[int]:
    """The signals process ``pid`` has handlers for."""
    return _signals(pid, "SigCgt:")


def _importing(proc: subprocess.Popen[str]) -> bool:
    """dynl2's handlers are in place (Python alone catches SIGINT, never SIGTERM) and it has
    not begun its work: the moment it spends seconds importing torch and Optuna."""
    if proc.poll() is not None:
        pytest.fail(f"the process ended before it could be interrupted: {proc.communicate()}")
    return signal.SIGTERM in _caught(proc.pid)


def _group_alive(pgid: int) -> list[int]:
    """Processes of group ``pgid`` not yet ended (zombies count as ended)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(entry.name))
    return alive


def _has_experiment(url: str, name: str) -> bool:
    try:
        with storage.open(url, create=False) as store:
            store.get_experiment(name)
    except storage.StorageError:
        return False
    return True


_TRAINING = sa.text(
    "SELECT count(*) FROM trials t WHERE t.state = 'RUNNING' AND EXISTS "
    "(SELECT 1 FROM trial_intermediate_values v WHERE v.trial_id = t.trial_id)"
)


def _early(url: str, name: str, proc: subprocess.Popen[str]) -> bool:
    """A trial with all its parameters is early in its training (``early_in_flight``), and a
    trial has reported an epoch: with one worker, that trial is past its claim, in training."""
    if proc.poll() is not None:
        pytest.fail(f"the process ended before it could be stopped: {proc.communicate()}")
    # The two plain queries first, each poll: opening the store (_has_experiment) costs more
    # than they do, and a poll that takes long is a window a quick trial can pass unseen.
    if early_in_flight(url, 2, EPOCHS) < 1:
        return False
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            training = bool(connection.execute(_TRAINING).scalar())
    except sa.exc.OperationalError:  # the tables are not there yet
        return False
    finally:
        engine.dispose()
    return training and _has_experiment(url, name)


def _evaluations(url: str, name: str) -> int:
    with storage.open(url, create=False) as store:
        return len(store.evaluations(name))


def _run(config: Path, url: str, workers: int, **env: str) -> subprocess.Popen[str]:
    # --batch 1: one trial per claim, and each (arm, seed) evaluated alone, in rounds
    argv = ["run", str(config), "--workers", str(workers), "--batch", "1", "--quiet"]
    return spawn([*argv, "--storage", url], group=True, **(ENV | env))


def _states(url: str, name: str) -> dict[str, int]:
    return trials(url, name)["state"].value_counts().to_dict()


def _stop_and_check(proc: subprocess.Popen[str], signum: int) -> None:
    """SIGTERM to ``proc`` alone, or SIGINT to its process group as a terminal's Ctrl-C: every
    process of the group gone within the bound, 143 or 130, exactly one line, no traceback."""
    if signum == signal.SIGTERM:
        proc.send_signal(signum)
    else:
        os.killpg(proc.pid, signum)
    sent = time.monotonic()
    code, _, err = finish(proc, GONE_WITHIN_S)
    wait_until(lambda: not _group_alive(proc.pid), GONE_WITHIN_S, "its processes to end")
    assert time.monotonic() - sent < GONE_WITHIN_S
    words = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted (SIGINT)"
    _assert_one_line(code, err, 128 + signum, words)


def _resume_and_check(config: Path, url: str, name: str) -> None:
    code, _, err = finish(_run(config, url, 1), 2 * WAIT_S)
    assert code == 0, err
    assert "Traceback" not in err, err
    frame = assert_exact_results(url, name, N_TRIALS, EPOCHS)
    assert retried_once(frame, load_experiment(config).searched) >= 1
    with storage.open(url, create=False) as store:
        evals = store.evaluations(name)
    assert sorted(evals.groupby("arm").size().items()) == [(arm, SEEDS) for arm in ARMS]
    assert not evals.duplicated(["arm", "seed"]).any()


# ------------------------------------------------------------------------ while importing


def test_sigint_as_soon_as_the_process_starts(tmp_path):
    """Right after Popen the interpreter has barely begun. The signal ends it as the system
    does (killed by SIGINT, nothing printed) before Python installs its own handler; in the
    tenth of a second Python then spends on its own start (``site``, ``.pth`` files) it ends
    it as Python does, a KeyboardInterrupt in Python's start-up code (dynl2 cannot run a line
    earlier: documented in the README); from dynl2's first line on, one line and 130. Never a
    traceback through dynl2's code, never a run that goes on, nothing written."""
    config = write_config(tmp_path, "early", epochs=2, n_trials=1)
    url = f"sqlite:///{tmp_path / 'early.db'}"
    for _ in range(3):
        proc = _run(config, url, 1)
        proc.send_signal(signal.SIGINT)
        code, _, err = finish(proc, 60)
        if code == -signal.SIGINT and err == "":
            continue  # before Python's handler
        if "Traceback" in err:  # before dynl2's: no frame of ours
            assert err.rstrip().endswith("KeyboardInterrupt") and code != 0, err
            assert f"{ROOT}{os.sep}" not in err, err
            continue
        _assert_one_line(code, err, 130, "interrupted (SIGINT)")
    assert not (tmp_path / "early.db").exists()


def _torch_loaded(proc: subprocess.Popen[str]) -> bool:
    """Further into the imports: torch's library is mapped (seconds before the CLI runs)."""
    if proc.poll() is not None:
        pytest.fail(f"the process ended before it could be interrupted: {proc.communicate()}")
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        return "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text()
    return False


@pytest.mark.parametrize("moment", ["handlers in place", "torch loaded"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_while_importing(tmp_path, signum, moment):
    """While dynl2 imports torch and Optuna (seconds): as soon as its handlers are in place,
    and once torch's library is loaded. One line, the signal's exit status; a second signal
    right after the first changes nothing (a SIGINT there used to be swallowed, "Exception
    ignored ... KeyboardInterrupt", and the run went on to exit 0)."""
    config = write_config(tmp_path, "importing", epochs=2, n_trials=1)
    url = f"sqlite:///{tmp_path / 'importing.db'}"
    for repeat in (1, 2):
        proc = _run(config, url, 1)
        wait_until(lambda p=proc: _importing(p), 60, "dynl2's signal handlers", every=0.005)
        if moment == "torch loaded":
            wait_until(lambda p=proc: _torch_loaded(p), 60, "torch's library", every=0.01)
        for _ in range(repeat):
            proc.send_signal(signum)
        code, _, err = finish(proc, 60)
        words = "interrupted (SIGINT)" if signum == signal.SIGINT else "terminated (SIGTERM)"
        _assert_one_line(code, err, 128 + signum, words)
    assert not (tmp_path / "importing.db").exists()


def test_an_ignored_sigint_stays_ignored(tmp_path):
    """Started with SIGINT ignored (``nohup``, a background job of a script), dynl2 leaves it
    ignored: a SIGINT sent once its own handlers are in place changes nothing, and the SIGTERM
    sent after it (delivered after it: a lower-numbered pending signal goes first) ends it, 143."""
    config = write_config(tmp_path, "nohup", epochs=2, n_trials=1)
    url = f"sqlite:///{tmp_path / 'nohup.db'}"
    argv = [sys.executable, "-m", "study", "run", str(config), "--quiet", "--storage", url]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=child_env(), text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    STARTED.append(proc)
    wait_until(lambda: _importing(proc), 60, "dynl2's signal handlers", every=0.005)
    assert signal.SIGINT in _signals(proc.pid, "SigIgn:")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc, 60)
    _assert_one_line(code, err, 143, "terminated (SIGTERM)")


# ------------------------------------------------------------- during the search, evaluation


def test_ctrl_c_mid_search_and_mid_evaluation_then_resume(tmp_path):
    """``dynl2 run`` (its one worker in the run's process) gets SIGINT while a trial is early
    in its training: 130, one line, and the trial is handed back at once (FAIL, queued again),
    nothing left RUNNING. Resumed, it gets SIGINT during the evaluation: 130, one line, the
    seeds evaluated kept. Resumed again, it finishes with exact counts."""
    name = "ctrlc"
    config = write_config(tmp_path, name, epochs=EPOCHS, n_trials=N_TRIALS, seeds=SEEDS)
    url = f"sqlite:///{tmp_path / 'ctrlc.db'}"

    run = _run(config, url, 1)
    wait_until(lambda: _early(url, name, run), WAIT_S, "a trial early in flight")
    run.send_signal(signal.SIGINT)
    code, _, err = finish(run, 60)
    _assert_one_line(code, err, 130, "interrupted (SIGINT)")
    states = _states(url, name)
    assert "RUNNING" not in states, states  # handed back, not left for the heartbeat
    assert states.get("FAIL", 0) >= 1 and states.get("WAITING", 0) >= 1, states

    total = len(ARMS) * SEEDS
    run = _run(config, url, 1)
    wait_until(
        lambda: run.poll() is not None or 1 <= _evaluations(url, name) <= total - 2,
        WAIT_S,
        "the evaluation to be under way",
        every=0.05,
    )
    assert run.poll() is None, f"the run ended before it could be stopped: {run.communicate()}"
    run.send_signal(signal.SIGINT)
    code, _, err = finish(run, 60)
    _assert_one_line(code, err, 130, "interrupted (SIGINT)")
    with storage.open(url, create=False) as store:
        kept = store.evaluations(name)
    assert 1 <= len(kept) < total
    assert_exact_results(url, name, N_TRIALS, EPOCHS)  # the search was whole before

    _resume_and_check(config, url, name)
    with storage.open(url, create=False) as store:
        after = store.evaluations(name).set_index(["arm", "seed"])["created"]
    before = kept.set_index(["arm", "seed"])["created"]
    assert (after[before.index] == before).all()  # the seeds evaluated before: kept


def test_sigterm_and_terminal_ctrl_c_stop_a_run_and_its_workers(tmp_path):
    """``dynl2 run --workers 2`` mid-search: SIGTERM to the run alone, then (resumed) SIGINT
    to its whole process group, as a terminal's Ctrl-C sends it. Each time: every process gone
    within the bound, 143 or 130, exactly one line (the workers leave it to the run), no
    traceback. Resumed, the run finishes with exact counts."""
    name = "term"
    config = write_config(tmp_path, name, epochs=EPOCHS, n_trials=N_TRIALS, seeds=SEEDS)
    url = f"sqlite:///{tmp_path / 'term.db'}"
    for signum in (signal.SIGTERM, signal.SIGINT):
        run = _run(config, url, 2)
        wait_until(lambda r=run: _early(url, name, r), WAIT_S, "a trial early in flight")
        _stop_and_check(run, signum)
    _resume_and_check(config, url, name)


def test_sigterm_to_a_worker(tmp_path):
    """A ``dynl2 worker`` joined by hand gets SIGTERM while it trains: 143 at once, one line,
    and its trial handed back (nothing RUNNING, its retry queued)."""
    name = "worker"
    config = write_config(tmp_path, name, epochs=EPOCHS, n_trials=N_TRIALS)
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    create_experiment(url, config, Heartbeat(1, 2))
    worker = start_worker(name, url, 0, **ENV)
    wait_until(lambda: _early(url, name, worker), WAIT_S, "a trial early in flight")
    worker.send_signal(signal.SIGTERM)
    code, _, err = finish(worker, GONE_WITHIN_S)
    _assert_one_line(code, err, 143, "terminated (SIGTERM)")
    states = _states(url, name)
    assert "RUNNING" not in states and states.get("WAITING", 0) >= 1, states


# ------------------------------------------------------------------- a vanished store file


@pytest.mark.parametrize("workers", [1, 2])
def test_a_store_file_deleted_mid_run(tmp_path, workers):
    """``rm dynl2.db*`` while the run trains: exit status 1 and one line that says the file
    was deleted, instead of exit status 0 with every result written into the deleted file."""
    name = "vanish"
    config = write_config(tmp_path, name, epochs=EPOCHS, n_trials=N_TRIALS, seeds=SEEDS)
    path = tmp_path / "vanish.db"
    url = f"sqlite:///{path}"
    run = _run(config, url, workers)
    wait_until(lambda: _early(url, name, run), WAIT_S, "a trial early in flight")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    code, _, err = finish(run, WAIT_S)
    line = _assert_one_line(code, err, 1, "was deleted or replaced")
    assert str(path) in line
    wait_until(lambda: not _group_alive(run.pid), GONE_WITHIN_S, "the workers to end")


# ------------------------------------------------------------- dynl2 evaluate --workers N


def test_sigterm_and_terminal_ctrl_c_stop_evaluate_with_workers(tmp_path):
    """``dynl2 evaluate --workers 2`` with many seeds queued: SIGTERM to it alone, then (run
    again) SIGINT to its process group, as a terminal's Ctrl-C. Each time it ends within the
    bound instead of finishing the queued seeds, its pool processes gone, 143 or 130, one line,
    no traceback from the pool; the seeds evaluated so far are kept, and a last run evaluates
    exactly the rest."""
    name = "evalstop"
    config = write_config(tmp_path, name, epochs=EPOCHS, n_trials=1, seeds=1)
    text = config.read_text().replace("[search]\n", "[search]\nbatch = 1\n")  # a seed a group
    config.write_text(text)
    url = f"sqlite:///{tmp_path / 'evalstop.db'}"
    code, _, err = finish(spawn(["run", str(config), "--quiet", "--storage", url]), WAIT_S)
    assert code == 0, err
    seeds = 8
    total = len(ARMS) * seeds
    argv = ["evaluate", name, "--seeds", str(seeds), "--workers", "2", "--storage", url]
    kept = len(ARMS)  # the run's one seed per arm
    for signum in (signal.SIGTERM, signal.SIGINT):
        proc = spawn(argv, group=True, **ENV)
        wait_until(
            lambda p=proc, k=kept: p.poll() is not None or _evaluations(url, name) > k,
            WAIT_S,
            "an evaluation of this run recorded",
            every=0.05,
        )
        assert proc.poll() is None, f"ended before it could be stopped: {proc.communicate()}"
        _stop_and_check(proc, signum)
        now = _evaluations(url, name)
        assert kept < now < total, (kept, now, total)  # stopped, not finished
        kept = now
    with storage.open(url, create=False) as store:
        before = store.evaluations(name).set_index(["arm", "seed"])["created"]
    code, _, err = finish(spawn(argv), WAIT_S)
    assert code == 0, err
    with storage.open(url, create=False) as store:
        evals = store.evaluations(name)
    assert sorted(evals.groupby("arm").size().items()) == [(arm, seeds) for arm in ARMS]
    assert not evals.duplicated(["arm", "seed"]).any()
    after = evals.set_index(["arm", "seed"])["created"]
    assert (after[before.index] == before).all()  # the seeds evaluated before: kept
