"""``dynl2 agent``: flags in, :func:`study.service.agent.run_agent` in this process (one
worker) or in ``--workers`` processes, lines out."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from typing import Any

from study.cli.args import batch_flag, code_flag, storage_flag, workers_flag
from study.cli.experiments import say_line
from study.config import env
from study.search import signals
from study.service import DEFAULT_POLL_S


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "agent",
        help="serve every experiment of the store with work left (search, evaluate, report)",
        description="A long-running worker pool for a shared store: each worker takes the "
        "oldest experiment with work left (trials to train, then evaluation seeds, then the "
        "report), under the same locks, heartbeats and retries as `dynl2 worker`, and picks up "
        "new submissions; with nothing to do it waits. SIGTERM hands back the trials in flight "
        "and exits. In a Slurm job with a time limit, it takes no work that would not end "
        "before the limit, and exits 0 then.",
    )
    storage_flag(p)
    workers_flag(p, "worker processes on this machine")
    batch_flag(p)
    p.add_argument(
        "--poll",
        type=_seconds,
        default=DEFAULT_POLL_S,
        help=f"seconds between looks for work when there is none (default {DEFAULT_POLL_S:g})",
    )
    p.add_argument("--once", action="store_true", help="exit when no experiment has work left")
    p.add_argument("--index", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    code_flag(p, "run experiments whose code (a data loader, a model factory, a training loop) "
              "is in the module PREFIX or below it (repeatable); others that name code are left "
              "to other agents, with the reason said once")  # fmt: skip
    p.set_defaults(handler=cmd_agent)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds from 0.05 to 3600, got {text!r}")
    return value


def cmd_agent(args: argparse.Namespace) -> int:
    say = say_line(args.quiet)
    if args.workers <= 1:
        from study.service.agent import run_agent

        summary = run_agent(
            storage=args.storage, batch=args.batch, index=args.index, poll=args.poll,
            once=args.once, say=say, allow_code=args.allow_code,
        )  # fmt: skip
        if summary.out_of_time:  # not quiet: the reason this agent left work undone
            print(f"agent: {out_of_time_line(summary.longest, summary.trials)}", flush=True)
        say(
            f"agent: done: {summary.trials} trials, {summary.evaluations} evaluation runs, "
            f"{summary.reports} reports"
        )
        return 0
    argv = [sys.executable, "-m", "study", "agent", "--workers", "1", "--poll", str(args.poll)]
    # The store's URL travels in the environment, not on the command line, where `ps` would
    # show any password it holds.
    child_env = {**os.environ, env.STORAGE: args.storage} if args.storage else None
    argv += ["--batch", str(args.batch)] if args.batch else []
    argv += ["--once"] if args.once else []
    argv += ["--quiet"] if args.quiet else []
    argv += [f"--allow-code={prefix}" for prefix in args.allow_code]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(args.workers):
            procs.append(subprocess.Popen([*argv, "--index", str(i)], env=child_env))
        codes = [proc.wait() for proc in procs]
    except KeyboardInterrupt:
        signals.stopping()
        signals.stop_processes(procs)
        raise
    killed = [(i, -code) for i, code in enumerate(codes) if code < 0]
    if killed:  # a worker killed by a signal said nothing; the others said their own lines
        print(f"dynl2 agent: error: {killed_line(killed)}", file=sys.stderr)
        return 1
    return max(codes, key=lambda c: (c != 0, abs(c)))


def out_of_time_line(longest: float | None, trials: int) -> str:
    """Why an agent in a Slurm job with a time limit stopped taking work before it."""
    why = (
        "the deadline has passed"
        if longest is None
        else f"the next group (~{longest:.0f} s) would not end by the deadline"
    )
    return (
        f"stopping before the job's time limit: {why}; {trials} trial(s) trained here, the "
        "rest are left to other workers"
    )


def killed_line(killed: list[tuple[int, int]]) -> str:
    """One line for worker processes killed by a signal: ``(index, signal number)`` each."""
    shown = [f"{i} ({_signal_name(signum)})" for i, signum in killed]
    which = (
        f"worker process {shown[0]} was"
        if len(shown) == 1
        else f"worker processes {', '.join(shown[:-1])} and {shown[-1]} were"
    )
    return f"{which} killed; a trial in flight is retried once its heartbeat lapses"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
