"""``dynl2 launch NAME --slurm``: flags in, :func:`study.api.launch.launch_slurm`, the job id
(or, ``--print``, the script and the command) out."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from study.cli.args import positive, storage_flag, up_to

MAX_WORKERS = 1000  # the same number as study.api.launch.MAX_WORKERS (imported when it runs)


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "launch",
        help="start workers of an experiment on a cluster (a Slurm job array)",
        description="Submit N workers of EXPERIMENT as one Slurm job array (sbatch). Each task "
        "runs `dynl2 worker EXPERIMENT` with the store's URL in its environment; Slurm's "
        "SIGTERM (cancel, time limit, preemption) hands its trials back, and with --time it "
        "claims no group that would not end before the limit. Prints the job id alone.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT", nargs="?")
    p.add_argument("--slurm", action="store_true", help="submit to Slurm (required)")
    p.add_argument(
        "--workers",
        type=up_to(MAX_WORKERS),
        default=1,
        help=f"array tasks, one worker each (default 1, at most {MAX_WORKERS})",
    )
    p.add_argument("--partition", help="sbatch --partition")
    p.add_argument(
        "--time",
        help="sbatch --time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS; workers "
        "stop claiming before it",
    )
    p.add_argument("--gres", help="sbatch --gres, e.g. gpu:1")
    p.add_argument(
        "--cpus-per-task",
        type=positive,
        metavar="N",
        help="sbatch --cpus-per-task; also each worker's torch threads",
    )
    p.add_argument("--account", help="sbatch --account")
    p.add_argument(
        "--requeue", action="store_true", help="sbatch --requeue: a preempted task runs again"
    )
    p.add_argument(
        "--sbatch-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="any other sbatch option, as one argument (--sbatch-arg=--mail-type=END); repeatable",
    )
    p.add_argument(
        "--agents",
        action="store_true",
        help="each task runs `dynl2 agent` (every experiment with work left) instead of a "
        "worker of EXPERIMENT (then optional)",
    )
    p.add_argument(
        "--single-node",
        action="store_true",
        help="every task on this host (--nodelist); allows a SQLite store",
    )
    p.add_argument(
        "--print",
        action="store_true",
        dest="print_only",
        help="print the batch script and the sbatch command; submit nothing",
    )
    storage_flag(p)
    p.set_defaults(handler=cmd_launch)


def cmd_launch(args: argparse.Namespace) -> int:
    from study.api.launch import SlurmOptions, launch_slurm
    from study.errors import UsageError

    if not args.slurm:
        raise UsageError("choose where to launch: --slurm (the only scheduler so far)")
    if args.experiment is not None and args.agents:
        raise UsageError(
            "--agents serve every experiment of the store: give no EXPERIMENT with --agents"
        )
    options = SlurmOptions(
        workers=args.workers,
        partition=args.partition,
        time=args.time,
        gres=args.gres,
        cpus_per_task=args.cpus_per_task,
        account=args.account,
        requeue=args.requeue,
        sbatch_args=tuple(args.sbatch_arg),
        agents=args.agents,
        single_node=args.single_node,
    )
    submission = launch_slurm(
        args.experiment, options, storage=args.storage, print_only=args.print_only
    )
    for warning in submission.warnings:
        print(f"dynl2 launch: warning: {warning}", file=sys.stderr)
    if args.print_only:
        print(submission.script, end="")
        print("# sbatch, with this script on stdin and $DYNL2_STORAGE in its environment:")
        print(shlex.join(submission.argv))
        return 0
    print(submission.job_id)  # alone, as sbatch --parsable prints it: JOB=$(dynl2 launch ...)
    return 0
