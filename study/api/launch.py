"""``dynl2 launch NAME --slurm``: workers of an experiment as a Slurm job array.

    import study.api.launch as launch

    options = launch.SlurmOptions(workers=8, partition="gpu", time="4:00:00", gres="gpu:1")
    print(launch.batch_script("mnist", options))           # what each array task runs
    sub = launch.launch_slurm("mnist", options, storage="postgresql+psycopg://...")
    print(sub.job_id)

Each array task runs ``exec PYTHON -m study worker NAME`` (``agent`` with ``agents``): ``exec``,
so that Slurm's signals (SIGTERM at a cancel, a time limit or a preemption, KillWait seconds
before SIGKILL) reach the worker itself, which hands its trials back. ``PYTHON`` is the absolute
path of the interpreter that launches: the tasks run the same dynl2 (on other nodes it must be
at the same path, a shared file system or the same image). The store's URL reaches the tasks in
``$DYNL2_STORAGE``, in the environment of ``sbatch`` only (``--export=ALL`` hands it on): never on
a command line (``ps`` shows those to every user of a node) nor in the script (``scontrol show
job`` and the spool keep it). A job with a time limit ends its workers' claims before it
(:func:`study.api.slurm.job_deadline`).

Building the script and the command is pure (:func:`batch_script`, :func:`sbatch_argv`);
:func:`launch_slurm` checks everything first (options, ``sbatch`` on ``PATH``, a store the tasks
can reach, the experiment), then submits. Mistakes raise :class:`study.UsageError`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass

import storage as storage_layer
from study.api.slurm import parse_time
from study.errors import StudyError, UsageError

__all__ = [
    "MAX_WORKERS",
    "SlurmOptions",
    "Submission",
    "batch_script",
    "check_options",
    "is_loopback",
    "launch_slurm",
    "sbatch_argv",
    "store_problem",
]

MAX_WORKERS = 1000  # array tasks: Slurm's default MaxArraySize (1001) allows indices 0 to 1000
_NAME = re.compile(r"[A-Za-z0-9_.,-]+")  # a partition (or a list of them), an account
_GRES = re.compile(r"[A-Za-z0-9_.,:=/+-]+")  # gpu, gpu:2, gpu:a100:1, gpu:a100:1,shard:2
# sbatch flags dynl2 sets itself: another value would break the launch.
_OWN_FLAGS = ("--array", "-a", "--export", "--parsable", "--wrap")
# Names of this host whatever DNS says (RFC 6761's localhost and *.localhost; the usual aliases).
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "localhost6", "localhost6.localdomain6",
                  "ip6-localhost", "ip6-loopback")  # fmt: skip


@dataclass(frozen=True)
class SlurmOptions:
    """What ``dynl2 launch --slurm`` asks of ``sbatch``. None: Slurm's (or the cluster's)
    default."""

    workers: int = 1  # array tasks, one worker (or agent) each
    partition: str | None = None  # --partition
    time: str | None = None  # --time, in Slurm's formats (study.api.slurm.TIME_FORMATS)
    gres: str | None = None  # --gres, e.g. gpu:1
    cpus_per_task: int | None = None  # --cpus-per-task; also the worker's torch threads
    account: str | None = None  # --account
    requeue: bool = False  # --requeue: a preempted or failed node's task runs again
    sbatch_args: tuple[str, ...] = ()  # anything else, passed to sbatch as given
    agents: bool = False  # run `dynl2 agent` (every experiment with work) instead of a worker
    single_node: bool = False  # every task on this host (--nodelist): a SQLite store allowed


@dataclass(frozen=True)
class Submission:
    """What :func:`launch_slurm` submitted (or, ``print_only``, would submit)."""

    script: str  # the batch script, fed to sbatch on its standard input
    argv: tuple[str, ...]  # the sbatch command
    warnings: tuple[str, ...] = ()  # one line each (a store other nodes cannot reach)
    job_id: str | None = None  # the array's job id; None when nothing was submitted


def check_options(options: SlurmOptions) -> None:
    """Refuse a value ``sbatch`` would refuse, or would take to mean something else, with
    one line naming the flag, what it accepts and what it got."""
    if not 1 <= options.workers <= MAX_WORKERS:
        raise UsageError(
            f"--workers: expected a whole number from 1 to {MAX_WORKERS} (array tasks), "
            f"got {options.workers}"
        )
    if options.time is not None:
        parse_time(options.time)
    for flag, value, pattern, what in (
        ("--partition", options.partition, _NAME, "a partition name (or several, with commas)"),
        ("--account", options.account, _NAME, "an account name"),
        ("--gres", options.gres, _GRES, "a GRES list such as gpu:1 or gpu:a100:2"),
    ):
        if value is not None and not pattern.fullmatch(value):
            raise UsageError(f"{flag}: expected {what}, got {value!r}")
    if options.cpus_per_task is not None and options.cpus_per_task < 1:
        raise UsageError(
            f"--cpus-per-task: expected a whole number of at least 1, got {options.cpus_per_task}"
        )
    for arg in options.sbatch_args:
        if not arg.startswith("-") or any(c in arg for c in "\n\r\0"):
            raise UsageError(
                f"--sbatch-arg: expected one sbatch option starting with '-' on one line "
                f"(--sbatch-arg=--mail-type=END), got {arg!r}"
            )
        flag = arg.split("=", 1)[0]
        if flag in _OWN_FLAGS or (flag.startswith("-a") and not flag.startswith("--")):
            raise UsageError(
                f"--sbatch-arg: {flag} is set by dynl2 launch itself (the array is --workers; "
                f"the environment carries the store's URL), got {arg!r}"
            )


def _this_node() -> str:
    """This host as Slurm names nodes: its short host name."""
    return socket.gethostname().split(".")[0]


def store_problem(url: str, single_node: bool) -> str | None:
    """A warning for a store that tasks on other nodes cannot reach (a PostgreSQL server on
    loopback, :func:`is_loopback`, or a local socket), None when there is none. A SQLite file
    is refused (unless ``single_node``): SQLite's locking is unreliable over a network file
    system."""
    if storage_layer.sqlite_path(url) is not None:
        if single_node:
            return None
        raise UsageError(
            "the store is a SQLite file, which workers on several hosts must not share "
            "(SQLite's locking is unreliable across hosts' shared file systems): use a "
            "PostgreSQL store (--storage or $DYNL2_STORAGE), or --single-node to run every "
            "task on this host"
        )
    if single_node:
        return None
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    host = parsed.host
    if host is None:  # libpq's ?host=: a socket folder (/run/postgresql) or a server's name
        query_host = parsed.query.get("host")
        host = query_host if isinstance(query_host, str) and query_host else None
        if host is not None and host.startswith("/"):
            host = None
    if host is None or is_loopback(host):
        where = f"host {host}" if host else "a local socket"
        return (
            f"the store's PostgreSQL server is on {where}: tasks on other nodes cannot reach "
            "it (fine on a one-node cluster; else give its network address)"
        )
    return None


def _loopback_address(text: str) -> bool | None:
    """Whether ``text`` is an address of this host alone (loopback: 127.0.0.0/8, ::1, also
    IPv4-mapped; unspecified: 0.0.0.0 and ::, which a client's connection takes to this host);
    None when it is no address."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a URL's host: a name, an address, ``[::1]``) reaches this machine only:
    a loopback address, ``localhost`` or a name under it (and its usual aliases,
    :data:`LOOPBACK_NAMES`), or a name that resolves to loopback addresses only. Not this host's
    own name (Debian's ``/etc/hosts`` maps it to 127.0.1.1 here; other nodes ask DNS), nor a
    name that does not resolve here (it may on the nodes): no answer is no warning."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    known = _loopback_address(text)
    if known is not None:
        return known
    name = text.lower().rstrip(".")
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    own = socket.gethostname().lower()
    if name in (own, own.split(".")[0]):
        return False
    try:
        found = socket.getaddrinfo(name, None)
    except (OSError, UnicodeError, ValueError):  # gaierror is an OSError; an odd name
        return False
    addresses = {str(info[4][0]) for info in found}
    return bool(addresses) and all(_loopback_address(a) for a in addresses)


def batch_script(name: str | None, options: SlurmOptions, python: str | None = None) -> str:
    """The batch script every array task runs: ``exec`` of ``python -m study worker NAME``
    (``agent`` with ``options.agents``). No URL in it: the store comes in ``$DYNL2_STORAGE``."""
    exe = shlex.quote(python or sys.executable)
    if options.agents:
        command = f"exec {exe} -m study agent"
        what = "a dynl2 agent (every experiment of the store with work left)"
    else:
        assert name is not None, "a worker needs its experiment"
        command = f"exec {exe} -m study worker {shlex.quote(name)}"
        what = f"a dynl2 worker of experiment {name!r}"
    lines = [
        "#!/bin/bash",
        f"# dynl2 launch --slurm: each array task runs {what}.",
        "# The store's URL comes in $DYNL2_STORAGE, from the environment sbatch was given.",
        "# exec: Slurm's SIGTERM (cancel, time limit, preemption) reaches the worker, which hands",
        "# its trials back; with a time limit it claims no group that would not end before it.",
    ]
    if options.cpus_per_task is not None:
        lines.append("# torch threads: the task's CPUs, unless $DYNL2_THREADS says otherwise")
        lines.append(': "${DYNL2_THREADS:=$SLURM_CPUS_PER_TASK}"')
        lines.append("export DYNL2_THREADS")
    lines.append(command)
    return "\n".join(lines) + "\n"


def sbatch_argv(
    name: str | None, options: SlurmOptions, sbatch: str = "sbatch", node: str | None = None
) -> list[str]:
    """The ``sbatch`` command (the script comes on its standard input). ``node``: the host
    ``single_node`` pins every task to (default: this one)."""
    job = "dynl2-agent" if options.agents or name is None else f"dynl2-{name}"
    argv = [sbatch, "--parsable", "--export=ALL", f"--job-name={job}"]
    argv.append(f"--array=0-{options.workers - 1}")
    for flag, value in (
        ("--partition", options.partition),
        ("--time", options.time),
        ("--gres", options.gres),
        ("--cpus-per-task", options.cpus_per_task),
        ("--account", options.account),
    ):
        if value is not None:
            argv.append(f"{flag}={value}")
    if options.requeue:
        # A requeued task opens its output again: appended to, its first run's lines (the
        # SIGTERM, the trials handed back) are kept; Slurm's default truncates them away.
        argv += ["--requeue", "--open-mode=append"]
    if options.single_node:
        argv.append(f"--nodelist={node or _this_node()}")
    argv.extend(options.sbatch_args)
    return argv


def launch_slurm(
    name: str | None,
    options: SlurmOptions,
    *,
    storage: str | None = None,
    print_only: bool = False,
) -> Submission:
    """Submit ``options.workers`` workers of experiment ``name`` (agents: ``name`` may be
    None) as one Slurm job array; with ``print_only``, check everything but ``sbatch`` on
    ``PATH`` and submit nothing. Nothing is submitted unless every check passes: the options,
    ``sbatch`` on ``PATH``, a store the tasks can reach, the experiment in it."""
    if name is None and not options.agents:
        raise UsageError("an experiment NAME is needed (or --agents to serve every experiment)")
    check_options(options)
    sbatch = shutil.which("sbatch")
    if sbatch is None and not print_only:
        raise UsageError(
            "sbatch is not on PATH: run dynl2 launch --slurm where Slurm's commands are "
            "(a login node), or use --print to see the job"
        )
    url = storage_layer.resolve_url(storage)
    warning = store_problem(url, options.single_node)
    with storage_layer.open(url, create=False) as store:
        if name is not None:
            store.get_experiment(name)  # a missing one: one line, nothing submitted
    script = batch_script(name, options)
    argv = sbatch_argv(name, options, sbatch or "sbatch")
    warnings = () if warning is None else (warning,)
    if print_only:
        return Submission(script, tuple(argv), warnings)
    job_env = {**os.environ, storage_layer.ENV_VAR: url}  # the URL goes in sbatch's env only
    try:
        done = subprocess.run(
            argv, input=script, env=job_env, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        raise StudyError(f"sbatch could not be run: {exc}") from None
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        if "contact" in said or "timed out" in said.lower():
            raise StudyError(f"sbatch could not reach Slurm: {said}")
        raise UsageError(f"sbatch refused the job: {said}")
    job_id = done.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise StudyError(f"sbatch answered {done.stdout.strip()!r}, not a job id")
    return Submission(script, tuple(argv), warnings, job_id)
