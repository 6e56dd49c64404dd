"""``dynl2 launch --slurm`` without Slurm: the batch script and the sbatch command as built, what
``--print`` shows, bad input refused before anything is submitted (a fake ``sbatch`` on ``PATH``
records whether it was called, its arguments, its standard input and its environment), Slurm's
time formats, the deadline rule of a worker (and of an agent) in a job with a time limit, what
counts as a store on loopback, and the workers that ``dynl2 status`` says hold RUNNING trials.
The real cluster is tests/reliability/test_slurm.py."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import sys
import time
from pathlib import Path

import pytest

import storage
from study.api import slurm
from study.api.launch import (
    SlurmOptions,
    batch_script,
    check_options,
    is_loopback,
    sbatch_argv,
    store_problem,
)
from study.cli import dispatch as cli
from study.config.experiment import load_experiment
from study.errors import UsageError
from study.search import worker as worker_module
from study.search.keys import WORKER_ATTR, WORKER_JOB_ATTR, Heartbeat
from study.search.optuna_adapter import storage_of, trial_id_of
from study.search.studies import open_studies
from study.service import agent as agent_module
from tests.tiny import write_tiny

SECRET_URL_PART = "s3cret-pw"
PG_URL = f"postgresql+psycopg://dynl2:{SECRET_URL_PART}@db.example.org:5432/dynl2"

# --- Slurm's time formats ---------------------------------------------------------------------

GOOD_TIMES = [
    ("1", 60),
    ("90", 5400),
    ("5:30", 330),
    ("1:00:00", 3600),
    ("2-0", 2 * 86400),
    ("1-2:30", 86400 + 2 * 3600 + 30 * 60),
    ("1-02:03:04", 86400 + 7384),
    ("0:45", 45),
]
BAD_TIMES = [
    "0",  # Slurm reads 0 as no limit: not a time limit
    "",
    "abc",
    "1h",
    "-5",
    "1:60",  # seconds past 59
    "1:75:00",  # minutes past 59
    "1-24",  # hours past 23 after a day
    "1:2:3:4",
    "1--2",
    "366-0",  # over a year
    "１",  # a full-width digit
    "UNLIMITED",
]


@pytest.mark.parametrize(("text", "seconds"), GOOD_TIMES)
def test_slurm_time_formats(text, seconds):
    assert slurm.parse_time(text) == seconds


@pytest.mark.parametrize("text", BAD_TIMES)
def test_bad_time_is_refused_with_the_formats(text):
    with pytest.raises(UsageError, match=r"--time: expected .*MM:SS, HH:MM:SS, D-HH"):
        slurm.parse_time(text)


@pytest.mark.parametrize(
    ("text", "left"), [("0:45", 45), ("1:00:00", 3600), ("UNLIMITED", None), ("INVALID", None)]
)
def test_time_left_as_squeue_prints_it(text, left):
    assert slurm.time_left(text) == left


def test_margin_is_five_percent_within_half_a_minute_and_ten_minutes():
    assert slurm.margin(60) == 30
    assert slurm.margin(3600) == 180
    assert slurm.margin(7 * 86400) == 600


# --- the deadline rule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "deadline", "estimate", "fits"),
    [
        (100.0, None, 1e9, True),  # no deadline: always
        (100.0, 200.0, None, True),  # the first group: any time left will do
        (200.0, 200.0, None, False),  # none left
        (250.0, 200.0, None, False),
        (100.0, 200.0, 100.0, True),  # ends exactly at the deadline
        (100.0, 200.0, 100.5, False),  # would end after it
        (150.0, 200.0, 49.0, True),
    ],
)
def test_a_group_is_claimed_only_if_it_ends_by_the_deadline(now, deadline, estimate, fits):
    assert worker_module.fits(now, deadline, estimate) is fits


def _fake_command(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_deadline_is_the_jobs_time_left_less_the_margin(tmp_path, monkeypatch):
    """``squeue -o '%L %l'``: time left, time limit. 10 minutes left of an hour: the deadline
    is now + 600 s - 180 s."""
    bin_dir = tmp_path / "bin"
    _fake_command(
        bin_dir, "squeue",
        "import sys\nassert sys.argv[1:] == ['-h', '-j', '77', '-o', '%L %l'], sys.argv\n"
        "print('10:00 1:00:00')\n",
    )  # fmt: skip
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    assert slurm.job_deadline(now=1000.0) == 1000.0 + 600 - 180
    monkeypatch.delenv("SLURM_JOB_ID")
    assert slurm.job_deadline(now=1000.0) is None  # not in a job


def test_no_deadline_for_a_job_without_a_limit(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    _fake_command(bin_dir, "squeue", "print('UNLIMITED UNLIMITED')\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    assert slurm.job_deadline(now=1000.0) is None


@pytest.fixture
def store_url(tmp_path):
    """A SQLite store holding the tiny experiment ``lx`` (2 arms, 2 trials each)."""
    path = write_tiny(tmp_path, "lx", epochs=2, n_trials=2, seeds=1, arms=("dynamic", "fixed"))
    config = load_experiment(path)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with storage.open(url) as store:
        store.create_experiment(config.name, config.to_dict())
        open_studies(store, config, Heartbeat())
    return url


def _main(argv, capsys):
    capsys.readouterr()
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_worker_past_its_deadline_claims_nothing_and_exits_0_saying_so(
    store_url, tmp_path, monkeypatch, capsys
):
    """In a Slurm job with 20 s left of a minute (margin 30 s): the deadline has passed."""
    bin_dir = tmp_path / "bin"
    _fake_command(bin_dir, "squeue", "print('0:20 1:00')\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    code, out, err = _main(["worker", "lx", "--storage", store_url, "--quiet"], capsys)
    assert code == 0, err
    assert "stopping before the job's time limit" in out
    assert "0 trial(s) trained here" in out
    with storage.open(store_url, create=False) as store:
        assert store.trials("lx").empty  # nothing claimed


def test_run_worker_stops_claiming_once_the_next_group_would_not_fit(store_url, monkeypatch):
    """The second group is not claimed when the first took longer than the time left."""
    with storage.open(store_url, create=False) as store:
        config = load_experiment_from(store, "lx")
    clock = _Clock(1000.0)
    monkeypatch.setattr(worker_module, "time", clock)
    real_run = worker_module.run_trials

    def slow_run(*args, **kwargs):
        out = real_run(*args, **kwargs)
        clock.now += 50.0  # each group "takes" 50 s of the job's clock
        return out

    monkeypatch.setattr(worker_module, "run_trials", slow_run)
    with storage.open(store_url) as store:
        summary = worker_module.run_worker(store, config, batch=1, deadline=1000.0 + 80.0)
    # group 1 at t=0 (fits: no estimate), group 2 at t=50 would end at 100 > 80: not claimed
    assert summary.out_of_time and summary.total == 1
    assert summary.longest == 50.0
    with storage.open(store_url) as store:  # with room for it, the next group is claimed
        more = worker_module.run_worker(store, config, batch=1, deadline=clock.now + 51.0)
    assert more.out_of_time and more.total == 1


def test_an_estimate_from_before_counts_from_the_first_claim(store_url):
    """An agent's earlier groups (``estimate``): with 80 s left, one of 100 s is not claimed."""
    with storage.open(store_url, create=False) as store:
        config = load_experiment_from(store, "lx")
        summary = worker_module.run_worker(
            store, config, batch=1, deadline=time.time() + 80.0, estimate=100.0
        )
        assert store.trials("lx").empty
    assert summary.out_of_time and summary.total == 0 and summary.longest == 100.0


# --- an agent's deadline ----------------------------------------------------------------------


def test_an_agent_passes_its_jobs_deadline_and_its_longest_group_to_each_search(
    store_url, tmp_path, monkeypatch
):
    """In a job with 10 minutes left of an hour (deadline: now + 420 s), each search the agent
    runs gets that deadline and the longest group the agent trained before it; a search that
    stops for the deadline ends the agent, out of time."""
    bin_dir = tmp_path / "bin"
    _fake_command(bin_dir, "squeue", "print('10:00 1:00:00')\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "79")
    clock = _Clock(1000.0)
    monkeypatch.setattr(slurm, "time", clock)
    monkeypatch.setattr(agent_module, "time", clock)
    passed: list[tuple[float | None, float | None]] = []
    answers = [
        worker_module.WorkerSummary(trials={"dynamic": 1}, longest=50.0),
        worker_module.WorkerSummary(out_of_time=True, longest=50.0),
    ]

    def fake_run_worker(*args, deadline=None, estimate=None, **kwargs):
        passed.append((deadline, estimate))
        return answers[len(passed) - 1]

    monkeypatch.setattr(worker_module, "run_worker", fake_run_worker)
    summary = agent_module.run_agent(storage=store_url, once=True)
    assert passed == [(1420.0, None), (1420.0, 50.0)]
    assert summary.out_of_time and summary.trials == 1 and summary.longest == 50.0


def test_an_agent_past_its_deadline_claims_nothing_and_exits_0_saying_so(
    store_url, tmp_path, monkeypatch, capsys
):
    """In a Slurm job with 20 s left of a minute (margin 30 s), ``--once``: without the
    deadline the agent would train the whole experiment."""
    bin_dir = tmp_path / "bin"
    _fake_command(bin_dir, "squeue", "print('0:20 1:00')\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    code, out, err = _main(["agent", "--storage", store_url, "--once", "--quiet"], capsys)
    assert code == 0, err
    assert out == (
        "agent: stopping before the job's time limit: the deadline has passed; 0 trial(s) "
        "trained here, the rest are left to other workers\n"
    )
    with storage.open(store_url, create=False) as store:
        assert store.trials("lx").empty  # nothing claimed


class _Clock:
    """``time`` as the worker reads it, moved by hand: wall clock and monotonic alike."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


# --- the script and the command ---------------------------------------------------------------


def test_the_script_execs_this_python_and_holds_no_url():
    options = SlurmOptions(workers=3, time="10", cpus_per_task=2)
    script = batch_script("my exp", options, python="/opt/py env/bin/python")
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert lines[-1] == "exec '/opt/py env/bin/python' -m study worker 'my exp'"
    assert ': "${DYNL2_THREADS:=$SLURM_CPUS_PER_TASK}"' in lines
    assert "postgresql" not in script and "sqlite" not in script
    agent = batch_script(None, SlurmOptions(agents=True), python="/usr/bin/python3")
    assert agent.splitlines()[-1] == "exec /usr/bin/python3 -m study agent"


def test_the_sbatch_command_carries_every_option():
    options = SlurmOptions(
        workers=4, partition="gpu", time="1-00:00", gres="gpu:1", cpus_per_task=8,
        account="lab", requeue=True, sbatch_args=("--mail-type=END", "--qos=low"),
        single_node=True,
    )  # fmt: skip
    assert sbatch_argv("exp", options, "/usr/bin/sbatch", node="n1") == [
        "/usr/bin/sbatch", "--parsable", "--export=ALL", "--job-name=dynl2-exp", "--array=0-3",
        "--partition=gpu", "--time=1-00:00", "--gres=gpu:1", "--cpus-per-task=8",
        "--account=lab", "--requeue", "--open-mode=append", "--nodelist=n1",
        "--mail-type=END", "--qos=low",
    ]  # fmt: skip
    assert sbatch_argv("exp", SlurmOptions()) == [
        "sbatch", "--parsable", "--export=ALL", "--job-name=dynl2-exp", "--array=0-0",
    ]  # fmt: skip


BAD_OPTIONS = [
    (SlurmOptions(workers=0), "--workers: expected a whole number from 1 to 1000"),
    (SlurmOptions(workers=1001), "--workers"),
    (SlurmOptions(time="1h"), "--time: expected"),
    (SlurmOptions(partition=""), "--partition: expected a partition name"),
    (SlurmOptions(partition="gpu queue"), "--partition"),
    (SlurmOptions(account="a;b"), "--account: expected an account name"),
    (SlurmOptions(gres="gpu 1"), "--gres: expected a GRES list"),
    (SlurmOptions(cpus_per_task=0), "--cpus-per-task"),
    (SlurmOptions(sbatch_args=("mail",)), "--sbatch-arg: expected one sbatch option"),
    (SlurmOptions(sbatch_args=("--x=a\nb",)), "--sbatch-arg: expected one sbatch option"),
    (SlurmOptions(sbatch_args=("--export=NONE",)), "--sbatch-arg: --export is set by dynl2"),
    (SlurmOptions(sbatch_args=("--array=0-9",)), "--sbatch-arg: --array is set by dynl2"),
    (SlurmOptions(sbatch_args=("-a1-3",)), "--sbatch-arg: -a1-3 is set by dynl2"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_sbatch_values_are_refused(options, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        check_options(options)


def test_a_sqlite_store_is_refused_unless_single_node(tmp_path):
    sqlite = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(UsageError, match="SQLite's locking is unreliable across hosts"):
        store_problem(sqlite, single_node=False)
    assert store_problem(sqlite, single_node=True) is None


# What getaddrinfo answers in these tests (no DNS asked); any other name does not resolve.
RESOLVES = {
    "db.loop.test": ["127.0.1.1"],  # Debian's /etc/hosts style
    "db6.loop.test": ["::1", "127.0.0.1"],
    "db.mixed.test": ["127.0.0.1", "10.0.0.5"],
    "db.example.org": ["10.0.0.5"],
    "login01": ["127.0.1.1"],  # this host's own name, as Debian maps it
}


@pytest.fixture
def resolver(monkeypatch):
    def getaddrinfo(host, port, *args, **kwargs):
        if host not in RESOLVES:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in RESOLVES[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "gethostname", lambda: "login01.lab.example")


ON_LOOPBACK = [
    "postgresql+psycopg://u@localhost/db",
    "postgresql+psycopg://u@127.0.0.1:5432/db",
    "postgresql+psycopg://u@127.0.0.2/db",  # all of 127.0.0.0/8
    "postgresql+psycopg://u@[::1]/db",
    "postgresql+psycopg://u@[::1]:5432/db",
    "postgresql+psycopg://u@[::ffff:127.0.0.1]/db",  # IPv4-mapped
    "postgresql+psycopg://u@0.0.0.0/db",  # a client's 0.0.0.0 is this host
    "postgresql+psycopg://u@LOCALHOST./db",
    "postgresql+psycopg://u@localhost.localdomain/db",
    "postgresql+psycopg://u@ip6-localhost/db",
    "postgresql+psycopg://u@db.localhost/db",  # RFC 6761: all of *.localhost
    "postgresql+psycopg://u@db.loop.test/db",  # resolves to loopback only
    "postgresql+psycopg://u@db6.loop.test/db",
    "postgresql+psycopg:///db",  # a local socket
    "postgresql+psycopg:///db?host=/run/postgresql",  # its folder
    "postgresql+psycopg:///db?host=localhost",
]
REACHABLE = [
    "postgresql+psycopg://u@10.0.0.5/db",
    "postgresql+psycopg://u@[2001:db8::5]:5432/db",
    PG_URL,  # db.example.org: 10.0.0.5
    "postgresql+psycopg://u@db.mixed.test/db",  # one address other nodes may reach
    "postgresql+psycopg://u@db.nowhere.test/db",  # unresolvable here: no warning, no error
    "postgresql+psycopg://u@login01/db",  # this host by its name: other nodes ask DNS
    "postgresql+psycopg:///db?host=db.example.org",
]


@pytest.mark.parametrize("url", ON_LOOPBACK)
def test_a_store_on_loopback_or_a_socket_is_warned_about(url, resolver):
    warning = store_problem(url, single_node=False)
    assert warning is not None and "tasks on other nodes cannot reach it" in warning
    assert store_problem(url, single_node=True) is None


@pytest.mark.parametrize("url", REACHABLE)
def test_a_store_other_nodes_may_reach_is_not(url, resolver):
    assert store_problem(url, single_node=False) is None


@pytest.mark.parametrize("error", [UnicodeError("label too long"), OSError("no DNS")])
def test_a_failing_lookup_is_no_warning(error, monkeypatch):
    def getaddrinfo(*args, **kwargs):
        raise error

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert is_loopback("db.lab.example") is False
    assert is_loopback("127.0.0.2") is True  # an address needs no lookup


# --- the verb, with a fake sbatch ---------------------------------------------------------------

FAKE_SBATCH = """
import json, os, sys
record = os.environ["FAKE_SBATCH_RECORD"]
with open(record, "w") as f:
    json.dump({"argv": sys.argv[1:], "stdin": sys.stdin.read(),
               "storage": os.environ.get("DYNL2_STORAGE")}, f)
print("4242")
"""


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    """A ``sbatch`` first on PATH that records its call in ``record.json`` and answers 4242."""
    bin_dir = tmp_path / "fakebin"
    _fake_command(bin_dir, "sbatch", FAKE_SBATCH)
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_SBATCH_RECORD", str(record))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def test_launch_submits_with_the_url_in_sbatchs_environment_only(
    store_url, fake_sbatch, monkeypatch, capsys
):
    monkeypatch.setenv("DYNL2_STORAGE", store_url)
    argv = ["launch", "lx", "--slurm", "--workers", "3", "--time", "2:00:00", "--single-node",
            "--sbatch-arg=--output=/tmp/x-%A_%a.out"]  # fmt: skip
    code, out, err = _main(argv, capsys)
    assert (code, out, err) == (0, "4242\n", "")
    call = json.loads(fake_sbatch.read_text())
    assert call["storage"] == store_url  # in its environment
    assert not any("sqlite" in a or "store.db" in a for a in call["argv"])  # not on its argv
    assert "sqlite" not in call["stdin"] and "store.db" not in call["stdin"]  # nor in the script
    assert "--array=0-2" in call["argv"] and "--time=2:00:00" in call["argv"]
    assert call["stdin"].splitlines()[-1] == f"exec {sys.executable} -m study worker lx"


def test_launch_print_shows_the_script_and_the_command_and_submits_nothing(
    store_url, fake_sbatch, capsys
):
    argv = ["launch", "lx", "--slurm", "--print", "--single-node", "--storage", store_url]
    code, out, err = _main(argv, capsys)
    assert code == 0, err
    assert out.startswith("#!/bin/bash\n")
    assert f"exec {sys.executable} -m study worker lx\n" in out
    command = out.splitlines()[-1]
    assert command.startswith(f"{fake_sbatch.parent / 'fakebin' / 'sbatch'} --parsable ")
    assert command.endswith(" --export=ALL --job-name=dynl2-lx --array=0-0 --nodelist=" +
                            os.uname().nodename.split(".")[0])  # fmt: skip
    assert "store.db" not in out
    assert not fake_sbatch.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["launch", "nope", "--slurm", "--single-node"], "nope"),
        (["launch", "lx", "--slurm"], "SQLite's locking is unreliable across hosts"),
        (["launch", "lx", "--single-node"], "--slurm"),
        (["launch", "--slurm", "--single-node"], "an experiment NAME is needed"),
        (["launch", "lx", "--slurm", "--agents", "--single-node"], "give no EXPERIMENT"),
        (["launch", "lx", "--slurm", "--single-node", "--workers", "0"], "--workers"),
        (["launch", "lx", "--slurm", "--single-node", "--time", "1:2:3:4"], "--time"),
        (["launch", "lx", "--slurm", "--single-node", "--partition="], "--partition"),
        (["launch", "lx", "--slurm", "--single-node", "--cpus-per-task", "0"], "cpus-per-task"),
        (["launch", "lx", "--slurm", "--single-node", "--sbatch-arg=--export=NONE"], "--export"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_submitted(
    argv, message, store_url, fake_sbatch, monkeypatch, capsys
):
    monkeypatch.setenv("DYNL2_STORAGE", store_url)
    code, out, err = _main(argv, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err and out == ""
    assert not fake_sbatch.exists()


def test_launch_without_sbatch_on_path(store_url, tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    argv = ["launch", "lx", "--slurm", "--single-node", "--storage", store_url]
    code, out, err = _main(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and out == "", err
    assert "sbatch is not on PATH" in err


# --- who holds RUNNING trials ------------------------------------------------------------------


def test_status_shows_which_worker_holds_each_running_trial(store_url, monkeypatch, capsys):
    """One trial claimed by a worker under Slurm (host:pid and the array task), one by an
    older dynl2 (``HOST:PID`` only), one by a claim cut short (no attribute)."""
    with storage.open(store_url) as store:
        config = load_experiment_from(store, "lx")
        studies = open_studies(store, config, Heartbeat())
        study = studies[("dynamic", 1)]
        monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "31")
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
        with worker_module._quiet_optuna():  # Optuna's note on heartbeats outside optimize()
            slurm_trial, old, _cut_short = study.ask(), study.ask(), study.ask()
        worker_module._record_worker(study, [slurm_trial])
        storage_of(study).set_trial_user_attr(trial_id_of(old), WORKER_ATTR, "oldhost:99")
    code, out, err = _main(["status", "lx", "--storage", store_url], capsys)
    assert code == 0, err
    host = f"{os.uname().nodename}:{os.getpid()}"
    assert "  held by:\n" in out
    assert f"    dynamic trial 0: {host}  slurm job 31_2\n" in out
    assert "    dynamic trial 1: oldhost:99\n" in out
    assert "    dynamic trial 2: ?\n" in out
    with storage.open(store_url, create=False) as store:
        stored = open_studies(store, config, Heartbeat())[("dynamic", 1)].trials[0]
    assert stored.user_attrs[WORKER_JOB_ATTR] == "31_2"


def load_experiment_from(store: storage.Store, name: str):
    from study.run.runs import stored_experiment

    return stored_experiment(store, name)


def test_a_plain_slurm_job_is_named_by_its_job_id(monkeypatch):
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    assert worker_module.slurm_job() is None
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    assert worker_module.slurm_job() == "9"
