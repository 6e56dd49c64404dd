"""``dynl2 agent`` as real processes on one store, SQLite and PostgreSQL: two agents finish two
experiments (search, evaluation, report) with exact counts and no run trained twice; an idle
agent picks up an experiment created after it started and stops on SIGTERM with nothing left
RUNNING; an agent killed with SIGKILL mid-trial has its trial retried by another."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

import storage
from study.config.experiment import load_experiment
from study.run.runs import create_or_resume, stored_experiment
from study.search.studies import distributions
from study.service.agent import work_left
from tests.storage.backends import BACKENDS, empty_url

from .helpers import (
    assert_exact_results,
    early_in_flight,
    finish,
    retried_once,
    spawn,
    trials,
    wait_until,
    whole,
    write_config,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

WAIT_S = 600  # the longest wait for a state: other work may share the machine
FAST_HEARTBEAT = "1,3"  # a killed agent's trial turns stale within seconds


def _create(url: str, directory: Path, name: str, **sizes: int) -> None:
    config = load_experiment(write_config(directory, name, **sizes))  # type: ignore[arg-type]
    with storage.open(url) as store:
        create_or_resume(store, config)


def _agent(url: str, *flags: str, **env: str) -> subprocess.Popen[str]:
    return spawn(["agent", "--storage", url, "--poll", "0.2", *flags], group=True, **env)


def _read_lines(proc: subprocess.Popen[str], lines: list[str]) -> None:
    """Append each line ``proc`` writes to its stdout, until it closes it."""
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)


def _done(url: str, name: str) -> bool:
    with storage.open(url, create=False) as store:
        return work_left(store, stored_experiment(store, name)) is None


def _tally(out: str) -> tuple[int, int, int]:
    """An agent's last line: ``agent: done: T trials, E evaluation runs, R reports``."""
    last = out.strip().splitlines()[-1].split()
    assert last[:2] == ["agent:", "done:"], out[-2000:]
    return int(last[2]), int(last[4]), int(last[7])


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_agents_finish_two_experiments_exactly(backend: str, tmp_path: Path) -> None:
    with empty_url(backend, tmp_path) as url:
        _create(url, tmp_path, "first", epochs=2, n_trials=6, seeds=3)
        _create(url, tmp_path, "second", epochs=2, n_trials=4, seeds=2)
        agents = [_agent(url, "--once", "--index", str(i)) for i in range(2)]
        outs = [finish(a, WAIT_S) for a in agents]
        for code, _, err in outs:
            assert code == 0, err[-3000:]
        done = [_tally(out) for _, out, _ in outs]
        # every run trained once, by one agent: search trials and evaluation runs add up
        assert sum(t for t, _, _ in done) == 2 * 6 + 2 * 4
        assert sum(e for _, e, _ in done) == 2 * 3 + 2 * 2
        assert sum(r for _, _, r in done) >= 2
        for name, n_trials, seeds in (("first", 6, 3), ("second", 4, 2)):
            assert_exact_results(url, name, n_trials, 2)
            with storage.open(url, create=False) as store:
                evaluations = store.evaluations(name)
                assert len(evaluations) == 2 * seeds
                assert not evaluations.duplicated(["arm", "replicate", "seed"]).any()
                assert not store.reports(name).empty
            assert _done(url, name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_idle_agent_picks_up_new_work_and_stops_on_sigterm(
    backend: str, tmp_path: Path
) -> None:
    with empty_url(backend, tmp_path) as url:
        with storage.open(url):
            pass  # the store exists, empty
        agent = _agent(url)
        assert agent.stdout is not None
        assert agent.stdout.readline().strip() == "agent: no work left; waiting for more"
        lines: list[str] = []  # the agent's lines as they come
        reader = threading.Thread(target=_read_lines, args=(agent, lines), daemon=True)
        reader.start()
        _create(url, tmp_path, "later", epochs=2, n_trials=3, seeds=1)
        wait_until(lambda: _done(url, "later"), WAIT_S, "the agent to finish 'later'")
        # The report is in the store before the agent says so: wait for its line, not on the
        # store alone, or the stop can land between the two (seen on a busy machine).
        wait_until(
            lambda: any(line.startswith("agent: later: report") for line in lines),
            WAIT_S,
            "the agent's line for the report",
        )
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(timeout=60)  # stdout is the reader's: not communicate()
        reader.join(60)
        assert agent.stderr is not None
        err, out = agent.stderr.read(), "".join(lines)
        assert code == 143 and err.strip().endswith("terminated (SIGTERM)"), err[-2000:]
        assert "agent: later: searching" in out and "agent: later: report" in out
        assert_exact_results(url, "later", 3, 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_agents_trial_is_retried_by_another(backend: str, tmp_path: Path) -> None:
    epochs = 200  # a trial lasts seconds: the kill lands inside one
    with empty_url(backend, tmp_path) as url:
        _create(url, tmp_path, "killed", epochs=epochs, n_trials=2, seeds=1)
        with storage.open(url, create=False) as store:
            config = stored_experiment(store, "killed")
        n_params = len(distributions(config, "dynamic"))
        first = _agent(url, "--batch", "1", DYNL2_HEARTBEAT=FAST_HEARTBEAT)
        wait_until(lambda: early_in_flight(url, n_params, epochs) > 0, WAIT_S, "a trial in flight")
        first.send_signal(signal.SIGKILL)
        finish(first, 60)
        frame = trials(url, "killed")
        assert (frame["state"] == "RUNNING").any()  # the dead agent's trial, not handed back
        second = _agent(url, "--once", "--batch", "1", DYNL2_HEARTBEAT=FAST_HEARTBEAT)
        code, _, err = finish(second, WAIT_S)
        assert code == 0, err[-3000:]
        frame = assert_exact_results(url, "killed", 2, epochs)
        assert retried_once(frame, lambda arm: distributions(config, arm)) >= 1
        assert not (frame["state"] == "RUNNING").any()
        assert whole(frame, lambda arm: distributions(config, arm)).any()
        assert _done(url, "killed")


def test_one_agent_with_two_worker_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    _create(url, tmp_path, "pair", epochs=2, n_trials=6, seeds=2)
    code, out, err = finish(_agent(url, "--once", "--workers", "2"), WAIT_S)
    assert code == 0, err[-3000:]
    lines = [line for line in out.splitlines() if line.startswith("agent: done:")]
    assert len(lines) == 2  # one per worker process
    tallies = [_tally(line) for line in lines]
    assert sum(t for t, _, _ in tallies) == 2 * 6 and sum(e for _, e, _ in tallies) == 2 * 2
    assert_exact_results(url, "pair", 6, 2)
    assert _done(url, "pair")


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_mid_trial_hands_the_trial_back(backend: str, tmp_path: Path) -> None:
    epochs = 1000  # seconds of margin between the look and the signal; the stop ends it early
    with empty_url(backend, tmp_path) as url:
        _create(url, tmp_path, "stopped", epochs=epochs, n_trials=2, seeds=1)
        with storage.open(url, create=False) as store:
            config = stored_experiment(store, "stopped")
        n_params = len(distributions(config, "dynamic"))
        agent = _agent(url, "--batch", "1")
        wait_until(lambda: early_in_flight(url, n_params, epochs) > 0, WAIT_S, "a trial in flight")
        agent.send_signal(signal.SIGTERM)
        code, _, err = finish(agent, 60)  # within the stop's grace, not after the trial
        assert code == 143 and err.strip().endswith("terminated (SIGTERM)"), err[-2000:]
        frame = trials(url, "stopped")
        assert not (frame["state"] == "RUNNING").any(), frame[["number", "state"]]
        assert (frame["state"] == "WAITING").any()  # its retry, queued for the next worker


def _worker_pids(agent: subprocess.Popen[str]) -> dict[int, int]:
    """The agent's worker processes by their ``--index``: read from /proc, never guessed."""
    found = subprocess.run(
        ["pgrep", "-P", str(agent.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    pids: dict[int, int] = {}
    for pid in map(int, found):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--index" in argv:
            pids[int(argv[argv.index(b"--index") + 1])] = pid
    return pids


@pytest.mark.parametrize(
    ("signums", "line"),
    [
        (
            (signal.SIGKILL, signal.SIGKILL),
            "worker processes 0 (SIGKILL) and 1 (SIGKILL) were killed",
        ),
        ((signal.SIGKILL, signal.SIGTERM), "worker process 0 (SIGKILL) was killed"),
        ((signal.SIGSEGV, signal.SIGKILL), "0 (SIGSEGV) and 1 (SIGKILL) were killed"),
    ],
    ids=["both SIGKILL", "SIGKILL and SIGTERM", "SIGSEGV and SIGKILL"],
)
def test_a_worker_process_killed_ends_the_agent_with_one_line(
    signums: tuple[signal.Signals, signal.Signals], line: str, tmp_path: Path
) -> None:
    """``dynl2 agent --workers 2`` whose worker processes die by a signal: exit status 1 and
    one line naming them (it exited 247, 256 - 9, and said nothing)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with storage.open(url):
        pass  # the store exists, empty: the workers wait for work until they are killed
    agent = _agent(url, "--workers", "2")
    assert agent.stdout is not None
    for _ in range(2):  # each worker process says it waits: both are alive, past their imports
        assert agent.stdout.readline().strip() == "agent: no work left; waiting for more"
    pids = _worker_pids(agent)
    assert sorted(pids) == [0, 1], pids
    for index, signum in enumerate(signums):
        os.kill(pids[index], signum)
    code, _, err = finish(agent, WAIT_S)
    last = err.strip().splitlines()[-1]
    assert code == 1, err[-2000:]
    assert last.startswith("dynl2 agent: error: ") and line in last, err[-2000:]
    assert "Traceback" not in err
    # the worker stopped by SIGTERM said its own line; the killed ones could not
    assert len(err.strip().splitlines()) == 1 + signums.count(signal.SIGTERM), err[-2000:]
