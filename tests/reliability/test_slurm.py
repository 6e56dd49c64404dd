"""``dynl2 launch --slurm`` on a real Slurm cluster (one node: ``.ci/slurm`` starts it) and a
PostgreSQL store: a job array finishes an experiment with exact counts; ``scancel`` of a running
array hands its trials back (SIGTERM reaches the worker: the batch script ``exec``s it); a job
that reaches its time limit hands its trial back the same way; a worker whose next group
would not end before the limit stops claiming and exits 0 first; and ``scontrol requeue`` of a
``--requeue`` array hands its trials back, runs the same tasks again and finishes exactly.

Every wait is on a state (the store's trials, ``squeue``), bounded by a generous deadline that
only catches a hang. The heartbeat grace is an hour in the tests about stops: a trial that is not
RUNNING any more was handed back by its worker, not failed by a lapsed heartbeat.

Skipped without a usable cluster (``sbatch``, a controller that answers, a node up); failed
instead when ``DYNL2_REQUIRE_SLURM=1`` (CI, after ``.ci/slurm``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import storage
from study.config.experiment import load_experiment
from study.search.keys import WORKER_JOB_ATTR, Heartbeat
from study.search.studies import open_studies
from tests.storage.backends import empty_url

from .helpers import (
    ROOT,
    assert_exact_results,
    create_experiment,
    early_in_flight,
    retried_once,
    trials,
    wait_until,
    whole,
    write_config,
)

REQUIRE_SLURM_ENV = "DYNL2_REQUIRE_SLURM"
WAIT_S = 300  # bounds a hang only: the jobs below take seconds, the time limit about 90 s
STOP_HEARTBEAT = "5,3600"  # only a hand-back can end a RUNNING trial within the tests' waits
_TERMINAL = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "PREEMPTED", "NODE_FAIL",
             "OUT_OF_MEMORY", "DEADLINE", "BOOT_FAIL"}  # fmt: skip

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def _unusable() -> str | None:
    """Why this machine has no usable Slurm cluster, or None."""
    for command in ("sbatch", "squeue", "scancel", "sinfo", "scontrol"):
        if shutil.which(command) is None:
            return f"{command} is not on PATH (start a cluster with .ci/slurm)"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
        nodes = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                               timeout=30)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return f"Slurm does not answer: {exc}"
    if "UP" not in ping.stdout:
        return f"slurmctld does not answer (scontrol ping: {ping.stdout.strip() or ping.stderr})"
    if not set(nodes.stdout.split()) & {"idle", "mix", "alloc"}:
        return f"no Slurm node is up (sinfo: {nodes.stdout.strip() or nodes.stderr.strip()})"
    return None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[str]]:
    """A usable cluster (else skip, or fail under ``DYNL2_REQUIRE_SLURM=1``); yields the list
    the test adds its job ids to: each is cancelled, and waited for, when the test ends."""
    reason = _unusable()
    if reason is not None:
        if os.environ.get(REQUIRE_SLURM_ENV) == "1":
            pytest.fail(f"{REQUIRE_SLURM_ENV}=1 but {reason}")
        pytest.skip(reason)
    jobs: list[str] = []
    yield jobs
    for job in jobs:
        subprocess.run(["scancel", job], capture_output=True, timeout=30)
    for job in jobs:
        wait_until(lambda job=job: _ended(job), WAIT_S, f"job {job} to leave the queue", 0.5)


def _states(job: str) -> list[str] | None:
    """The states of the job's tasks still in the queue; None once Slurm has forgotten it."""
    found = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                           text=True, timeout=30)  # fmt: skip
    return found.stdout.split() if found.returncode == 0 else None


def _ended(job: str) -> bool:
    states = _states(job)
    return states is None or set(states) <= _TERMINAL


def _launch(jobs: list[str], name: str, url: str, out: Path, *flags: str, heartbeat: str) -> str:
    """``dynl2 launch NAME --slurm FLAGS`` with the URL in ``$DYNL2_STORAGE``; the job id.
    Each task writes its output to ``out/JOB_TASK.out``."""
    env = {**os.environ, "DYNL2_STORAGE": url, "DYNL2_THREADS": "1",
           "DYNL2_HEARTBEAT": heartbeat}  # fmt: skip
    argv = [sys.executable, "-m", "study", "launch", name, "--slurm",
            f"--sbatch-arg=--output={out}/%A_%a.out", *flags]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip()
    assert job.isdigit(), done.stdout
    jobs.append(job)
    # the scratch database is on 127.0.0.1: fine on this one-node cluster, and said so
    assert "tasks on other nodes cannot reach it" in done.stderr, done.stderr
    return job


def _output(out: Path, job: str) -> str:
    return "".join(p.read_text() for p in sorted(out.glob(f"{job}_*.out")))


def _running(url: str, name: str, searched) -> int:
    frame = trials(url, name)
    return int(((frame["state"] == "RUNNING") & whole(frame, searched)).sum())


def _status_until_held(url: str, name: str, job: str) -> str:
    """``dynl2 status NAME``'s output once it names a trial held by a task of ``job``."""
    shown: list[str] = [""]

    def held() -> bool:
        status = subprocess.run(
            [sys.executable, "-m", "study", "status", name], cwd=ROOT,
            env={**os.environ, "DYNL2_STORAGE": url}, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        shown[0] = status.stdout + status.stderr
        return f"slurm job {job}_" in status.stdout or _ended(job)

    wait_until(held, WAIT_S, f"dynl2 status to name a task of {job}", 0.5)
    return shown[0]


def _jobs_of_trials(url: str, config_path: Path) -> set[str]:
    """The Slurm jobs (``JOB_TASK``) recorded on the experiment's finished trials."""
    config = load_experiment(config_path)
    with storage.open(url, create=False) as store:
        studies = open_studies(store, config, Heartbeat())
        return {
            str(t.user_attrs.get(WORKER_JOB_ATTR))
            for study in studies.values()
            for t in study.get_trials(deepcopy=False)
        }


def test_an_array_of_three_workers_finishes_with_exact_counts(cluster, tmp_path):
    n_trials, epochs = 3, 3
    config = write_config(tmp_path, "sl_three", epochs=epochs, n_trials=n_trials)
    out = tmp_path / "out"
    out.mkdir()
    with empty_url("postgresql", tmp_path) as url:
        create_experiment(url, config, Heartbeat())
        job = _launch(cluster, "sl_three", url, out, "--workers", "3", heartbeat="2,10")
        wait_until(lambda: _ended(job), WAIT_S, f"array {job} to end", 0.5)
        assert_exact_results(url, "sl_three", n_trials, epochs)
        frame = trials(url, "sl_three")
        assert set(frame["state"]) == {"COMPLETE"}, frame[["arm", "number", "state"]]
        held = _jobs_of_trials(url, config)
        assert held and all(re.fullmatch(rf"{job}_[0-2]", h) for h in held), held
    log = _output(out, job)
    assert log.count("dynl2 worker: done") == 3, log


def test_scancel_hands_the_trials_back_and_a_new_array_finishes(cluster, tmp_path):
    """The array is cancelled while its workers train trials with at least half their epochs
    to go (they cannot end between the look and the cancel); each worker gets Slurm's SIGTERM
    and hands its trial back: FAIL with a retry WAITING, nothing RUNNING, though heartbeats
    would take an hour to lapse. ``dynl2 status`` named the jobs holding them."""
    # Trials of some 20 s: the half left after the look outlasts scancel's SIGTERM reaching the
    # workers on a loaded machine (300 epochs, ~5 s, once ended first).
    n_trials, epochs = 2, 1500
    config = write_config(tmp_path, "sl_cancel", epochs=epochs, n_trials=n_trials)
    searched = load_experiment(config).searched
    out = tmp_path / "out"
    out.mkdir()
    with empty_url("postgresql", tmp_path) as url:
        create_experiment(url, config, Heartbeat())
        job = _launch(cluster, "sl_cancel", url, out, "--workers", "2", heartbeat=STOP_HEARTBEAT)
        status = _status_until_held(url, "sl_cancel", job)
        assert f"slurm job {job}_" in status, status
        n_params = max(len(searched(a)) for a in ("dynamic", "fixed"))
        wait_until(lambda: early_in_flight(url, n_params, epochs) >= 1 or _ended(job), WAIT_S,
                   "a trial in its first half")  # fmt: skip
        subprocess.run(["scancel", job], check=True, timeout=30)  # at once after the look
        wait_until(lambda: _ended(job), WAIT_S, f"array {job} to end", 0.5)
        frame = trials(url, "sl_cancel")
        assert not (frame["state"] == "RUNNING").any(), frame[["arm", "number", "state"]]
        handed = frame[(frame["state"] == "FAIL") & whole(frame, searched)]
        assert len(handed) >= 1 and (frame["state"] == "WAITING").sum() == len(handed), frame
        log = _output(out, job)
        assert "terminated (SIGTERM)" in log, log

        again = _launch(cluster, "sl_cancel", url, out, "--workers", "2", heartbeat="2,10")
        wait_until(lambda: _ended(again), WAIT_S, f"array {again} to end", 0.5)
        final = assert_exact_results(url, "sl_cancel", n_trials, epochs)
        assert retried_once(final, searched) == len(handed)


def test_time_limit_hands_back_and_a_deadline_stops_claiming_before_it(cluster, tmp_path):
    """Two one-task jobs of ``--time 1`` (Slurm's smallest limit, a minute), side by side to
    pay for that minute once. ``long``: its first trial would take minutes (a worker always
    claims its first group), so Slurm ends the job at its limit: SIGTERM, and the trial is
    handed back. ``short``: trials of a few seconds; the worker's deadline is the limit less
    30 s, and it stops claiming once the next group would not end by then, exiting 0 before
    the limit with its last trial finished."""
    out = tmp_path / "out"
    out.mkdir()
    long_config = write_config(tmp_path, "sl_limit", epochs=20_000, n_trials=1)
    short_config = write_config(tmp_path, "sl_deadline", epochs=100, n_trials=50)
    # one trial a group (not fused): a few seconds each, so the budget is far from done in 30 s
    short_config.write_text(
        short_config.read_text().replace("[search]\n", "[search]\nbatch = 1\n")
    )
    searched = load_experiment(long_config).searched
    with (
        empty_url("postgresql", tmp_path / "a") as long_url,
        empty_url("postgresql", tmp_path / "b") as short_url,
    ):
        create_experiment(long_url, long_config, Heartbeat())
        create_experiment(short_url, short_config, Heartbeat())
        limit = _launch(cluster, "sl_limit", long_url, out, "--time", "1",
                        heartbeat=STOP_HEARTBEAT)  # fmt: skip
        deadline = _launch(cluster, "sl_deadline", short_url, out, "--time", "1",
                           heartbeat=STOP_HEARTBEAT)  # fmt: skip
        wait_until(lambda: _running(long_url, "sl_limit", searched) == 1 or _ended(limit),
                   WAIT_S, "the long trial to run")  # fmt: skip
        assert not _ended(limit)
        wait_until(lambda: _ended(limit) and _ended(deadline), WAIT_S, "both jobs to end", 0.5)

        frame = trials(long_url, "sl_limit")
        assert not (frame["state"] == "RUNNING").any(), frame[["arm", "number", "state"]]
        assert (
            list(frame["state"]).count("FAIL") == 1 and list(frame["state"]).count("WAITING") == 1
        ), frame[["arm", "number", "state"]]
        log = _output(out, limit)
        assert "DUE TO TIME LIMIT" in log and "terminated (SIGTERM)" in log, log

        short = trials(short_url, "sl_deadline")
        assert not short["state"].isin(["RUNNING", "WAITING", "FAIL"]).any(), short
        assert 1 <= len(short) < 100  # some trials, far from the budget
        log = _output(out, deadline)
        assert "stopping before the job's time limit" in log, log
        assert "TIME LIMIT" not in log and "SIGTERM" not in log, log


def _requeued(job: str, tasks: int) -> bool:
    """Every task of ``job`` is back in the queue after a requeue: PENDING until its BeginTime
    (Slurm holds a requeued task back for its credential's lifetime, 2 minutes by default)."""
    found = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True,
                           text=True, timeout=30)  # fmt: skip
    lines = found.stdout.splitlines()
    return len(lines) == tasks and all(line.split() == ["PENDING", "BeginTime"] for line in lines)


def test_a_requeued_array_hands_back_runs_again_and_finishes_exactly(cluster, tmp_path):
    """``--requeue``, and ``scontrol requeue`` of the array while each of its two workers trains
    a trial, one with at least half its epochs to go: Slurm's SIGTERM reaches the workers, which
    hand their trials back (FAIL, a retry WAITING, nothing RUNNING though heartbeats would take
    an hour to lapse). The tasks wait in the queue, and that is checked there; let go, the same
    tasks run again, retry each handed-back trial once, and finish with exact counts. Each
    task's output keeps both runs (launch appends with ``--requeue``)."""
    n_trials, epochs = 1, 1500  # trials of some 20 s: see the scancel test
    config = write_config(tmp_path, "sl_requeue", epochs=epochs, n_trials=n_trials)
    searched = load_experiment(config).searched
    n_params = max(len(searched(a)) for a in ("dynamic", "fixed"))
    out = tmp_path / "out"
    out.mkdir()
    with empty_url("postgresql", tmp_path) as url:
        create_experiment(url, config, Heartbeat())
        job = _launch(cluster, "sl_requeue", url, out, "--workers", "2", "--requeue",
                      heartbeat=STOP_HEARTBEAT)  # fmt: skip
        wait_until(lambda: _running(url, "sl_requeue", searched) == 2 or _ended(job), WAIT_S,
                   "both workers to train a trial")  # fmt: skip
        wait_until(lambda: early_in_flight(url, n_params, epochs) >= 1 or _ended(job), WAIT_S,
                   "a trial in its first half")  # fmt: skip
        subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)
        wait_until(lambda: _requeued(job, 2), WAIT_S, f"array {job} to be requeued", 0.5)
        frame = trials(url, "sl_requeue")
        assert not (frame["state"] == "RUNNING").any(), frame[["arm", "number", "state"]]
        handed = frame[(frame["state"] == "FAIL") & whole(frame, searched)]
        assert len(handed) >= 1 and (frame["state"] == "WAITING").sum() == len(handed), frame

        # Not two minutes more: the tasks may start now.
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True,
                       timeout=30)  # fmt: skip
        wait_until(lambda: _ended(job), WAIT_S, f"array {job} to end", 0.5)
        final = assert_exact_results(url, "sl_requeue", n_trials, epochs)
        assert retried_once(final, searched) == len(handed)
        held = _jobs_of_trials(url, config)
        assert held and all(re.fullmatch(rf"{job}_[01]", h) for h in held), held
    for task in (0, 1):
        log = (out / f"{job}_{task}.out").read_text()
        requeued = log.find("DUE TO JOB REQUEUE")  # the first run's end, then the second run
        assert 0 <= requeued < log.find("terminated (SIGTERM)"), log
        done = log.find("dynl2 worker: done")
        assert log.count("dynl2 worker: done") == 1 and done > requeued, log
