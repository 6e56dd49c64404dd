"""Where ``dynl2``'s output cannot go: a closed standard output, a full disk under it, a reader
that went away, and a current directory deleted under the shell.

Output that could not be written is a failure (one line on stderr, exit status 1); a reader that
went away is not (quiet, exit status 0); a deleted current directory is one line and exit
status 1, as a missing store is. Never a traceback, never Python's "Exception ignored" from
its own flush at exit. Real ``python -m study`` processes, each against one tiny finished
experiment.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

import storage
from tests.tiny import write_tiny

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NAME = "out1"

# Buffered, as in a user's shell: the output is then written by the last flush, the one whose
# failure used to escape as "Exception ignored" (exit status 120). PYTHONUNBUFFERED, which a CI
# job may set, moves the failure into the print itself; UNBUFFERED cases cover that path.
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "DYNL2_STORAGE")}
ENV |= {"DYNL2_THREADS": "1", "PYTHONPATH": str(ROOT)}
UNBUFFERED = {**ENV, "PYTHONUNBUFFERED": "1"}

# How standard output is broken, as shell redirections of the dynl2 in "$@".
CLOSED = 'exec "$@" >&-'
FULL = 'exec "$@" >/dev/full'


def dynl2_sh(
    script: str, *argv: str, cwd: Path = ROOT, env: dict[str, str] = ENV, first: str = ""
) -> subprocess.CompletedProcess[str]:
    """``sh -c SCRIPT`` with ``"$@"`` the dynl2 command line ``ARGV`` (after ``FIRST``, when
    given, which the script takes off with ``shift``)."""
    before = [first] if first else []
    return subprocess.run(
        ["sh", "-c", script, "sh", *before, sys.executable, "-m", "study", *argv],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def dynl2_into_closed_pipe(*argv: str) -> subprocess.CompletedProcess[str]:
    """dynl2 writing into a pipe whose reader is gone before it starts (``| head -c 1`` whose
    head has exited): every write to it is EPIPE, with no race on when the reader leaves."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "study", *argv],
            cwd=ROOT, env=ENV, stdout=write, stderr=subprocess.PIPE, text=True, timeout=600,
        )  # fmt: skip
    finally:
        os.close(write)


def assert_no_python_noise(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Exception ignored" not in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished tiny experiment (one trial per arm, one seed): its folder and store URL."""
    tmp = tmp_path_factory.mktemp("cli-output")
    url = f"sqlite:///{tmp / 'out.db'}"
    config = write_tiny(tmp, NAME, epochs=1, n_trials=1, seeds=1, arms=("dynamic", "fixed"))
    # Made in this process (study.cli.main, in its folder): only the verbs below need processes.
    import torch

    from study.cli.dispatch import main

    threads = torch.get_num_threads()
    try:
        with contextlib.chdir(tmp):
            assert main(["run", str(config), "--quiet", "--storage", url]) == 0
    finally:
        torch.set_num_threads(threads)  # a one-worker run sets them, as a worker process's
    return tmp, url


VERBS = {
    "trials": ["trials", NAME],
    "trials-csv": ["trials", NAME, "--format", "csv"],
    "status": ["status"],
    "status-one": ["status", NAME],
    "sql": ["sql", "SELECT 1 AS a"],
    "sql-json": ["sql", "SELECT 1 AS a", "--format", "json"],
    "report-json": ["report", NAME, "--json", "-o", "{tmp}/page.html"],
    "reports": ["reports"],
}


def command(verb: str, tmp: Path, url: str) -> list[str]:
    return [arg.format(tmp=tmp) for arg in VERBS[verb]] + ["--storage", url]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(
    ("script", "reason"),
    [(CLOSED, "standard output is closed"), (FULL, "No space left on device")],
    ids=["closed", "full"],
)
@pytest.mark.parametrize("verb", VERBS)
def test_output_that_cannot_be_written_is_one_line_exit_1(
    store: tuple[Path, str], verb: str, script: str, reason: str
) -> None:
    proc = dynl2_sh(script, *command(verb, *store))
    assert_no_python_noise(proc)
    assert proc.returncode == 1, proc.stderr
    name = VERBS[verb][0]
    assert proc.stderr.splitlines() == [
        f"dynl2 {name}: failed: could not write the output: {reason}"
    ], proc.stderr


@pytest.mark.parametrize("verb", VERBS)
def test_a_reader_that_went_away_is_quiet_exit_0(store: tuple[Path, str], verb: str) -> None:
    proc = dynl2_into_closed_pipe(*command(verb, *store))
    assert_no_python_noise(proc)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(
    ("script", "reason"),
    [(CLOSED, "standard output is closed"), (FULL, "No space left on device")],
    ids=["closed", "full"],
)
@pytest.mark.parametrize(
    ("argv", "prefix", "env"),
    [(["--help"], "dynl2", ENV), (["trials", NAME], "dynl2 trials", UNBUFFERED)],
    ids=["help", "trials-unbuffered"],
)
def test_help_and_unbuffered_output_that_cannot_be_written_is_one_line_exit_1(
    store: tuple[Path, str], argv: list[str], prefix: str, env: dict[str, str], script: str,
    reason: str,
) -> None:  # fmt: skip
    """--help (argparse's own print), and a write that fails in the print, not at the end."""
    _, url = store
    extra = ["--storage", url] if argv[0] != "--help" else []
    proc = dynl2_sh(script, *argv, *extra, env=env)
    assert_no_python_noise(proc)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [f"{prefix}: failed: could not write the output: {reason}"]


GONE = [
    ["status"],
    ["status", NAME],
    ["trials", NAME],
    ["sql", "SELECT 1"],
    ["reports"],
    ["report", NAME],
    ["report", NAME, "--storage", "{url}"],  # the store given: the default page needs the cwd
    ["report", NAME, "-o", "page.html", "--storage", "{url}"],  # a relative page
]


@pytest.mark.parametrize("argv", GONE, ids=lambda argv: "-".join(a for a in argv if "{" not in a))
def test_a_deleted_current_directory_is_one_line_exit_1(
    store: tuple[Path, str], tmp_path: Path, argv: list[str]
) -> None:
    _, url = store
    with storage.open(url, create=False) as opened:
        before = len(opened.reports())
    gone = tmp_path / "gone"
    gone.mkdir()
    # The shell enters the folder and removes it, then becomes dynl2: a process cannot be
    # started in a folder that is already gone, and this way no step waits on another.
    proc = dynl2_sh(
        'd=$1; shift; cd "$d" && rmdir "$d" && exec "$@"',
        *[arg.format(url=url) for arg in argv],
        cwd=tmp_path, first=str(gone),
    )  # fmt: skip
    assert_no_python_noise(proc)
    assert not gone.exists()
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"dynl2 {argv[0]}: failed: the current directory no longer exists")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing written in its place
    with storage.open(url, create=False) as opened:
        assert len(opened.reports()) == before  # no report made, so none kept


def test_a_closed_standard_output_is_no_terminal() -> None:
    """Libraries ask ``sys.stdout.isatty()`` to colour their logs; a closed one (None at
    start, or closed since) must answer False, not fail on ``None.isatty``."""
    import io

    from study.cli.dispatch import GuardedStdout

    closed = io.StringIO()
    closed.close()
    assert GuardedStdout(None).isatty() is False
    assert GuardedStdout(closed).isatty() is False
    assert GuardedStdout(io.StringIO()).isatty() is False


def test_a_progress_line_goes_out_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """``dynl2 agent --workers 2``'s worker processes share its stdout: a line and its newline
    written apart (``print`` does, and an unbuffered stdout passes each on) let the other
    process's line in between ("...waiting for moreagent: no work left...")."""
    from study.cli.experiments import say_line

    writes: list[str] = []

    class Recorder(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    monkeypatch.setattr(sys, "stdout", Recorder())
    say = say_line(False)
    say("agent: no work left; waiting for more")
    say("evaluate 1/4: dynamic seed 0")
    assert writes == ["agent: no work left; waiting for more\n", "evaluate 1/4: dynamic seed 0\n"]
    writes.clear()
    say_line(True)("quiet")
    assert writes == []
