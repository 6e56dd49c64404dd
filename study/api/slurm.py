"""Workers on a cluster: Slurm's time formats, and the deadline a worker in a job with a time
limit stops claiming at.

A worker that Slurm started (``$SLURM_JOB_ID`` is set) asks Slurm once, when it starts, how much
time its job has left (``squeue -j $SLURM_JOB_ID -o %L``): the limit as Slurm applies it, so a
requeued task, or a limit an administrator changed with ``scontrol update``, gets its own. Its
deadline is that time minus :func:`margin`; :func:`study.search.worker.run_worker` claims a
group only while the longest group it trained so far still fits before it.

Only the standard library at module level: ``dynl2 launch --print`` and ``--help`` stay quick.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

from study.errors import UsageError

__all__ = [
    "TIME_FORMATS",
    "job_deadline",
    "margin",
    "parse_time",
    "time_left",
]

TIME_FORMATS = "minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"

# Slurm's --time formats (sbatch(1)); the numbers are whole, each part after the first of a
# colon form at most 59.
_FORMS = (
    (re.compile(r"(\d+)"), ("m",)),
    (re.compile(r"(\d+):(\d+)"), ("m", "s")),
    (re.compile(r"(\d+):(\d+):(\d+)"), ("h", "m", "s")),
    (re.compile(r"(\d+)-(\d+)"), ("d", "h")),
    (re.compile(r"(\d+)-(\d+):(\d+)"), ("d", "h", "m")),
    (re.compile(r"(\d+)-(\d+):(\d+):(\d+)"), ("d", "h", "m", "s")),
)
_SECONDS = {"d": 86_400, "h": 3600, "m": 60, "s": 1}
_MOST = {"h": 23, "m": 59, "s": 59}  # a part that follows a larger one
MAX_TIME_S = 365 * 86_400  # a year: anything longer is a typo, not a job


def parse_time(text: str) -> int:
    """Seconds of a Slurm time limit written as ``sbatch --time`` takes it (minutes, MM:SS,
    HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS); above 0 and at most a year. Raises
    :class:`~study.errors.UsageError` naming what is accepted."""
    stripped = text.strip()
    for pattern, units in _FORMS:
        found = pattern.fullmatch(stripped) if stripped.isascii() else None
        if found is None:
            continue
        parts = [int(p) for p in found.groups()]
        ok = all(v <= _MOST[u] for v, u in zip(parts[1:], units[1:], strict=True))
        seconds = sum(v * _SECONDS[u] for v, u in zip(parts, units, strict=True))
        if ok and 0 < seconds <= MAX_TIME_S:
            return seconds
        break
    raise UsageError(
        f"--time: expected a time limit above 0 and at most 365 days as {TIME_FORMATS} "
        f"(Slurm's formats), got {text!r}"
    )


def margin(limit_s: float) -> float:
    """Seconds before a job's end that its worker stops claiming groups at: time for the last
    group's results to be written and for the unexpected (a group slower than the ones before
    it), 5 % of the limit, at least 30 s and at most 10 minutes."""
    return min(600.0, max(30.0, 0.05 * limit_s))


def time_left(text: str) -> int | None:
    """Seconds in ``squeue -o %L``'s answer (Slurm's time format; ``UNLIMITED``,
    ``NOT_SET`` or ``INVALID`` when the job has no limit): None when it has none."""
    try:
        return parse_time(text) if text.strip()[:1].isdigit() else None
    except UsageError:
        return None


def job_deadline(now: float | None = None) -> float | None:
    """The time (``time.time()`` seconds) past which this process, a task of a Slurm job with
    a time limit, claims no new group; None outside Slurm, for a job without a limit, or when
    ``squeue`` cannot tell (then the job's SIGTERM at its limit hands the trials back)."""
    job = os.environ.get("SLURM_JOB_ID", "").strip()
    squeue = shutil.which("squeue")
    if not job.isdigit() or squeue is None:
        return None
    start = time.time() if now is None else now
    try:
        answer = subprocess.run(
            [squeue, "-h", "-j", job, "-o", "%L %l"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    fields = answer.stdout.split()
    if answer.returncode != 0 or len(fields) != 2:
        return None
    left, limit = time_left(fields[0]), time_left(fields[1])
    if left is None or limit is None:
        return None
    return start + left - margin(limit)
