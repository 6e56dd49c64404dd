"""Issue 6, item 5: malformed configs and command lines. Each one ends with exactly one line on
stderr naming the problem, no traceback, exit status 2 for a mistake in what was typed (1 for a
failure of the environment: a database that does not answer, a damaged file), and nothing
written: every file under the test's folder is byte for byte as before, and no database,
folder or workspace appears.

The CLI runs in this process (``study.cli.dispatch.main``, what the ``dynl2`` script calls), so the
cases cost milliseconds; a few also run as real processes, to show the exit status and stderr
a user gets."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import storage

from .helpers import ROOT, child_env, run_cli, write_config

pytestmark = pytest.mark.reliability

BASE_NAME = "bad"
LR = "lr = { low = 1e-3, high = 3e-2, log = true }"
LAM = "lam = { low = 1e-6, high = 1e-1, log = true }"
ALPHA = "alpha = { low = 1e-4, high = 1.0, log = true }"

# (id, [(text to replace, replacement), ...], the key the message must name)
# fmt: off
CONFIGS: list[tuple[str, list[tuple[str, str]], str]] = [
    # wrong types
    ("name is a number", [('name = "bad"', "name = 3")], "experiment.name"),
    ("seed is a string", [("seed = 0", 'seed = "zero"')], "experiment.seed"),
    ("epochs is a string", [("epochs = 2", 'epochs = "ten"')], "train.epochs"),
    ("lr is a bool", [(LR, "lr = true")], "train.lr"),
    ("n_trials is fractional", [("n_trials = 2", "n_trials = 2.5")], "search.n_trials"),
    ("hidden is a string", [("hidden = [16]", 'hidden = "16"')], "model.hidden"),
    ("batch_size is a list", [("batch_size = 100", "batch_size = [100]")], "train.batch_size"),
    ("lam is a string", [(LAM, 'lam = "small"')], "arms.fixed.lam"),
    ("sampler is a number", [('sampler = "random"', "sampler = 1")], "search.sampler"),
    ("metric is a list", [('metric = "val_acc"', "metric = []")], "search.metric"),
    ("range bound is a string", [(LR, 'lr = { low = "a", high = 1.0 }')], "train.lr.low"),
    # missing or unknown sections and keys
    ("no [experiment]", [("[experiment]\n", "[other]\n")], "other"),
    ("no experiment name", [('name = "bad"\n', "")], "experiment.name"),
    ("no arms", [("[arms.dynamic]", "[x.dynamic]"), ("[arms.fixed]", "[x.fixed]")], "x"),
    ("arm without scheme", [('scheme = "fixed"\n', "")], "arms.fixed.scheme"),
    ("unknown key", [("seed = 0", "seed = 0\nowner = 'me'")], "experiment.owner"),
    ("empty arms", [("[arms.dynamic]", "[arms]\n[zz.dynamic]"), ("[arms.fixed]", "[zz.fixed]")],
     "zz"),
    # NaN and infinities
    ("lr is nan", [(LR, "lr = nan")], "train.lr"),
    ("lr high is inf", [(LR, "lr = { low = 1e-3, high = inf, log = true }")], "train.lr.high"),
    ("alpha low is -inf", [(ALPHA, "alpha = { low = -inf, high = 1.0 }")], "arms.dynamic.alpha"),
    ("seed is nan", [("seed = 0", "seed = nan")], "experiment.seed"),
    ("lam is +inf", [(LAM, "lam = +inf")], "arms.fixed.lam"),
    # negative and zero ranges and counts
    ("log range from 0", [(LR, "lr = { low = 0.0, high = 3e-2, log = true }")], "train.lr"),
    ("low above high", [(LAM, "lam = { low = 0.5, high = 0.1 }")], "arms.fixed.lam"),
    ("low equals high", [(LR, "lr = { low = 0.01, high = 0.01 }")], "train.lr"),
    ("zero step", [(LR, "lr = { low = 0.01, high = 0.02, step = 0.0 }")], "train.lr"),
    ("negative step", [(LR, "lr = { low = 0.01, high = 0.02, step = -0.01 }")], "train.lr"),
    ("zero epochs", [("epochs = 2", "epochs = 0")], "train.epochs"),
    ("negative epochs", [("epochs = 2", "epochs = -3")], "train.epochs"),
    ("zero trials", [("n_trials = 2", "n_trials = 0")], "search.n_trials"),
    ("negative trials", [("n_trials = 2", "n_trials = -1")], "search.n_trials"),
    ("zero seeds", [("seeds = 1", "seeds = 0")], "evaluate.seeds"),
    ("negative alpha", [(ALPHA, "alpha = -1.0")], "arms.dynamic.alpha"),
    # alpha = "lr", the scheme as its source wrote it (issue 31): that word only, dynamic only
    ("alpha is another word", [(ALPHA, 'alpha = "learning rate"')], "arms.dynamic.alpha"),
    ("alpha is LR", [(ALPHA, 'alpha = "LR"')], "arms.dynamic.alpha"),
    ("lr as a fixed lambda", [(LAM, 'lam = "lr"')], "arms.fixed.lam"),
    ("alpha = lr in fixed", [(LAM, 'lam = 1e-4\nalpha = "lr"')], "arms.fixed.alpha"),
    ("negative lr range", [(LR, "lr = { low = -0.1, high = 0.1 }")], "train.lr"),
    # huge values
    ("a billion trials", [("n_trials = 2", "n_trials = 1_000_000_000")], "search.n_trials"),
    # [search] replicates (issue 11)
    ("zero replicates", [("n_trials = 2", "n_trials = 2\nreplicates = 0")], "search.replicates"),
    ("negative replicates", [("n_trials = 2", "n_trials = 2\nreplicates = -3")],
     "search.replicates"),
    ("101 replicates", [("n_trials = 2", "n_trials = 2\nreplicates = 101")], "search.replicates"),
    ("a billion replicates", [("n_trials = 2", "n_trials = 2\nreplicates = 1_000_000_000")],
     "search.replicates"),
    ("fractional replicates", [("n_trials = 2", "n_trials = 2\nreplicates = 2.5")],
     "search.replicates"),
    ("replicates as text", [("n_trials = 2", 'n_trials = 2\nreplicates = "3"')],
     "search.replicates"),
    ("replicates as a boolean", [("n_trials = 2", "n_trials = 2\nreplicates = true")],
     "search.replicates"),
    ("replicates as a table", [("n_trials = 2", "n_trials = 2\nreplicates = { r = 3 }")],
     "search.replicates"),
    ("replicates with nothing searched",
     [("n_trials = 2", "n_trials = 2\nreplicates = 3"),
      ("lr = { low = 1e-3, high = 3e-2, log = true }", "lr = 1e-2"),
      ('alpha = { low = 1e-4, high = 1.0, log = true }', "alpha = 0.01"),
      ("lam = { low = 1e-6, high = 1e-1, log = true }", "lam = 1e-4")],
     "search.replicates"),
    # the sequential form of [search] replicates and [evaluate] margin (issue 28)
    ("replicates min above max",
     [("n_trials = 2", "n_trials = 2\nreplicates = { min = 5, max = 3 }")], "search.replicates"),
    ("sequential replicates from 1",
     [("n_trials = 2", "n_trials = 2\nreplicates = { min = 1, max = 4 }")],
     "search.replicates.min"),
    ("sequential replicates to 101",
     [("n_trials = 2", "n_trials = 2\nreplicates = { min = 3, max = 101 }")],
     "search.replicates.max"),
    ("sequential replicates without max",
     [("n_trials = 2", "n_trials = 2\nreplicates = { min = 3 }")], "search.replicates.max"),
    ("sequential replicates step 0",
     [("n_trials = 2", "n_trials = 2\nreplicates = { min = 3, max = 6, step = 0 }")],
     "search.replicates.step"),
    ("sequential replicates unknown key",
     [("n_trials = 2", "n_trials = 2\nreplicates = { min = 3, max = 6, stop = 9 }")],
     "search.replicates.stop"),
    ("margin zero", [("seeds = 1", "seeds = 1\nmargin = 0")], "evaluate.margin"),
    ("margin negative", [("seeds = 1", "seeds = 1\nmargin = -0.5")], "evaluate.margin"),
    ("margin nan", [("seeds = 1", "seeds = 1\nmargin = nan")], "evaluate.margin"),
    ("margin inf", [("seeds = 1", "seeds = 1\nmargin = inf")], "evaluate.margin"),
    ("margin as text", [("seeds = 1", 'seeds = 1\nmargin = "half a point"')], "evaluate.margin"),
    ("margin of 150 accuracy points", [("seeds = 1", "seeds = 1\nmargin = 150")],
     "evaluate.margin"),
    ("ten million seeds", [("seeds = 1", "seeds = 10_000_000")], "evaluate.seeds"),
    ("10^12 epochs", [("epochs = 2", "epochs = 1_000_000_000_000")], "train.epochs"),
    ("seed 2^63", [("seed = 0", "seed = 9223372036854775807")], "experiment.seed"),
    ("a billion units", [("hidden = [16]", "hidden = [1_000_000_000]")], "model.hidden"),
    ("batch of 10^9", [("batch_size = 100", "batch_size = 1_000_000_000")], "train.batch_size"),
    ("lr 1e308", [(LR, "lr = 1e308")], "train.lr"),
    # names: unicode, paths, quotes, HTML
    ("unicode name", [('name = "bad"', 'name = "λ-run"')], "experiment.name"),
    ("name ../", [('name = "bad"', 'name = "../escape"')], "experiment.name"),
    ("name with slash", [('name = "bad"', 'name = "a/b"')], "experiment.name"),
    ("name ..", [('name = "bad"', 'name = ".."')], "experiment.name"),
    ("absolute path name", [('name = "bad"', 'name = "/etc/passwd"')], "experiment.name"),
    ("windows path name", [('name = "bad"', 'name = "C:\\\\evil"')], "experiment.name"),
    ("name with quotes", [('name = "bad"', "name = 'say \"hi\"'")], "experiment.name"),
    ("name with html", [('name = "bad"', 'name = "<script>alert(1)</script>"')],
     "experiment.name"),
    ("name with NUL", [('name = "bad"', 'name = "a\\u0000b"')], "experiment.name"),
    ("empty name", [('name = "bad"', 'name = ""')], "experiment.name"),
    ("65-char name", [('name = "bad"', f'name = "{"n" * 65}"')], "experiment.name"),
    ("arm name with slash", [("[arms.fixed]", '[arms."a/b"]')], "arms"),
    ("arm name ..", [("[arms.fixed]", '[arms.".."]')], "arms"),
    ("arm name html", [("[arms.fixed]", '[arms."<b>x</b>"]')], "arms"),
    ("arm name with quote", [("[arms.fixed]", "[arms.'a\"b']")], "arms"),
]
# fmt: on

# Files that are not a valid TOML document at all: (id, bytes, fragment).
FILES = [
    ("TOML syntax error", b'[experiment]\nname = "x\n', "invalid TOML"),
    ("duplicate key", b"[experiment]\nseed = 1\nseed = 2\n", "invalid TOML"),
    ("not UTF-8", b'[experiment]\nname = "\xff"\n', "not UTF-8"),
    ("empty file", b"", "experiment"),
    ("binary junk", bytes(range(256)), "case.toml"),
]


def _fingerprint(folder: Path) -> dict[str, str | None]:
    """Every path under ``folder`` with the hash of its bytes (None for folders)."""
    out: dict[str, str | None] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        out[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return out


@pytest.fixture(scope="module")
def prepared_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding experiment ``exp`` (made once; each test works on a copy)."""
    folder = tmp_path_factory.mktemp("bad-input-store")
    path = folder / "exp.db"
    with storage.open(f"sqlite:///{path}") as store:
        from study.config.experiment import load_experiment

        config = load_experiment(write_config(folder, "exp", epochs=2, n_trials=2))
        store.create_experiment(config.name, config.to_dict())
    return path


@pytest.fixture
def place(tmp_path: Path, prepared_store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's folder, also the working directory (so a default workspace would show):
    a good config ``bad.toml``, a store ``exp.db``, a damaged store and a plain file."""
    write_config(tmp_path, BASE_NAME, epochs=2, n_trials=2)
    shutil.copyfile(prepared_store, tmp_path / "exp.db")
    (tmp_path / "damaged.db").write_bytes(b"this is not a SQLite database, " * 64)
    (tmp_path / "plain-file").write_text("in the way\n")
    monkeypatch.chdir(tmp_path)
    for variable in ("DYNL2_STORAGE", "DYNL2_HEARTBEAT", "DYNL2_DB_PATIENCE"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


def _check(place: Path, argv: list[str], code: int, fragment: str, capsys) -> None:
    before = _fingerprint(place)
    got, _, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert got == code, err
    assert lines[0].startswith("dynl2"), lines[0]
    assert fragment in lines[0], lines[0]
    assert _fingerprint(place) == before  # nothing written, created or removed


def _config_text(changes: list[tuple[str, str]], place: Path) -> str:
    text = (place / f"{BASE_NAME}.toml").read_text()
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize(("changes", "key"), [pytest.param(c, k, id=i) for i, c, k in CONFIGS])
def test_bad_config_is_refused_before_anything_is_written(place, changes, key, capsys):
    config = place / "case.toml"
    config.write_text(_config_text(changes, place), encoding="utf-8")
    argv = ["run", str(config), "--storage", f"sqlite:///{place / 'new' / 'store.db'}"]
    _check(place, argv, 2, key, capsys)


@pytest.mark.parametrize(("content", "fragment"), [pytest.param(c, f, id=i) for i, c, f in FILES])
def test_bad_config_file_is_refused(place, content, fragment, capsys):
    config = place / "case.toml"
    config.write_bytes(content)
    argv = ["run", str(config), "--storage", f"sqlite:///{place / 'new.db'}"]
    _check(place, argv, 2, fragment, capsys)


UNREACHABLE_PG = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"

# (id, argv with {p} for the test's folder, exit status, fragment, environment)
# fmt: off
COMMANDS: list[tuple[str, list[str], int, str, dict[str, str]]] = [
    # storage URLs and places
    ("unknown URL scheme", ["run", "{p}/bad.toml", "--storage", "bogus://x/y"], 2, "bogus", {}),
    ("URL without scheme", ["status", "--storage", "dynl2.db"], 2, "sqlite:///", {}),
    ("in-memory SQLite", ["status", "--storage", "sqlite://"], 2, "does not name", {}),
    ("bad URL in $DYNL2_STORAGE", ["status"], 2, "DYNL2_STORAGE",
     {"DYNL2_STORAGE": "ftp://example/x"}),
    ("unreachable PostgreSQL", ["run", "{p}/bad.toml", "--storage", UNREACHABLE_PG], 1,
     "Cannot connect", {}),
    ("unreachable PostgreSQL, sql", ["sql", "SELECT 1", "--storage", UNREACHABLE_PG], 1,
     "Cannot connect", {}),
    ("MySQL driver missing", ["run", "{p}/bad.toml", "--storage", "mysql://u@127.0.0.1:1/x"], 1,
     "pymysql", {}),
    ("folder under a file", ["run", "{p}/bad.toml", "--storage",
                             "sqlite:///{p}/plain-file/x.db"], 1, "Cannot create the folder", {}),
    ("unwritable place", ["run", "{p}/bad.toml", "--storage", "sqlite:////proc/dynl2/x.db"], 1,
     "Cannot create the folder", {}),
    ("missing folder, status", ["status", "--storage", "sqlite:///{p}/nope/x.db"], 1,
     "no dynl2 database", {}),
    ("missing file, sql", ["sql", "SELECT 1", "--storage", "sqlite:///{p}/absent.db"], 1,
     "absent.db", {}),
    ("a folder as the database", ["run", "{p}/bad.toml", "--storage", "sqlite:///{p}"], 1,
     "Cannot connect", {}),
    ("damaged SQLite, run", ["run", "{p}/bad.toml", "--storage", "sqlite:///{p}/damaged.db"], 1,
     "not a database", {}),
    ("damaged SQLite, status", ["status", "--storage", "sqlite:///{p}/damaged.db"], 1,
     "not a database", {}),
    ("damaged SQLite, sql", ["sql", "SELECT * FROM trials", "--storage",
                             "sqlite:///{p}/damaged.db"], 1, "not a database", {}),
    ("damaged SQLite, worker", ["worker", "exp", "--storage", "sqlite:///{p}/damaged.db"], 1,
     "not a database", {}),
    # arguments
    ("zero workers", ["run", "{p}/bad.toml", "--workers", "0"], 2, "--workers", {}),
    ("negative workers", ["run", "{p}/bad.toml", "--workers", "-1"], 2, "--workers", {}),
    ("workers not a number", ["run", "{p}/bad.toml", "--workers", "many"], 2, "--workers", {}),
    ("unknown verb", ["frobnicate"], 2, "frobnicate", {}),
    ("unknown flag", ["run", "{p}/bad.toml", "--fast"], 2, "--fast", {}),
    ("no config", ["run"], 2, "CONFIG.toml", {}),
    ("missing config file", ["run", "{p}/missing.toml"], 2, "no such file", {}),
    ("config is a folder", ["run", "{p}"], 2, "is a directory", {}),
    ("different config, same name", ["run", "{p}/exp-changed.toml", "--storage",
                                     "sqlite:///{p}/exp.db"], 2, "train.epochs", {}),
    ("unknown experiment", ["trials", "nope", "--storage", "sqlite:///{p}/exp.db"], 2, "nope", {}),
    ("unknown arm", ["trials", "exp", "--arm", "nope", "--storage", "sqlite:///{p}/exp.db"], 2,
     "--arm", {}),
    ("unknown format", ["trials", "exp", "--format", "xml", "--storage",
                        "sqlite:///{p}/exp.db"], 2, "--format", {}),
    ("status of nothing", ["status", "nope", "--storage", "sqlite:///{p}/exp.db"], 2, "nope", {}),
    ("worker of nothing", ["worker", "nope", "--storage", "sqlite:///{p}/exp.db"], 2, "nope", {}),
    ("zero seeds", ["evaluate", "exp", "--seeds", "0", "--storage", "sqlite:///{p}/exp.db"], 2,
     "--seeds", {}),
    ("zero max rows", ["sql", "SELECT 1", "--max-rows", "0", "--storage",
                       "sqlite:///{p}/exp.db"], 2, "--max-rows", {}),
    ("zero timeout", ["sql", "SELECT 1", "--timeout", "0", "--storage", "sqlite:///{p}/exp.db"],
     2, "timeout", {}),
    ("nan timeout", ["sql", "SELECT 1", "--timeout", "nan", "--storage",
                     "sqlite:///{p}/exp.db"], 2, "timeout", {}),
    ("infinite timeout", ["sql", "SELECT 1", "--timeout", "1e999", "--storage",
                          "sqlite:///{p}/exp.db"], 2, "timeout", {}),
    ("empty query", ["sql", "  ", "--storage", "sqlite:///{p}/exp.db"], 2, "empty", {}),
    ("report of nothing", ["report", "nope", "--storage", "sqlite:///{p}/exp.db"], 2, "nope", {}),
    ("compare one", ["report", "--compare", "exp", "--storage", "sqlite:///{p}/exp.db"], 2,
     "at least two", {}),
    ("train: zero epochs", ["train", "--epochs", "0"], 2, "--epochs", {}),
    ("train: nan lr", ["train", "--lr", "nan"], 2, "--lr", {}),
    ("train: unknown scheme", ["train", "--scheme", "l3"], 2, "--scheme", {}),
    ("train: negative alpha", ["train", "--scheme", "dynamic", "--alpha", "-1"], 2, "alpha", {}),
    ("train: alpha a word", ["train", "--scheme", "dynamic", "--alpha", "rate"], 2,
     '"lr" (the learning rate)', {}),
    ("train: alpha lr in fixed", ["train", "--scheme", "fixed", "--alpha", "lr"], 2, "--alpha",
     {}),
    # the environment variables the verbs read
    ("bad $DYNL2_HEARTBEAT", ["run", "{p}/bad.toml", "--storage", "sqlite:///{p}/new.db"], 2,
     "DYNL2_HEARTBEAT", {"DYNL2_HEARTBEAT": "fast"}),
    ("bad $DYNL2_DB_PATIENCE", ["run", "{p}/bad.toml", "--storage", "sqlite:///{p}/new.db"], 2,
     "DYNL2_DB_PATIENCE", {"DYNL2_DB_PATIENCE": "-1"}),
    ("nan $DYNL2_DB_PATIENCE", ["worker", "exp", "--storage", "sqlite:///{p}/exp.db"], 2,
     "DYNL2_DB_PATIENCE", {"DYNL2_DB_PATIENCE": "nan"}),
    ("demo: too many workers", ["demo", "--workers", "257"], 2, "from 1 to 256", {}),
    ("demo: zero workers", ["demo", "--workers", "0"], 2, "--workers", {}),
    ("demo: workers not a number", ["demo", "--workers", "2.5"], 2, "--workers", {}),
]
# fmt: on


@pytest.mark.parametrize(
    ("argv", "code", "fragment", "env"), [pytest.param(*c[1:], id=c[0]) for c in COMMANDS]
)
def test_bad_command_line(place, argv, code, fragment, env, capsys, monkeypatch):
    changed = _config_text([("epochs = 2", "epochs = 3"), ('name = "bad"', 'name = "exp"')], place)
    (place / "exp-changed.toml").write_text(changed)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _check(place, [a.format(p=place) for a in argv], code, fragment, capsys)


def _workspace_file(p: Path) -> None:
    (p / "dynl2-workspace").write_text("in the way\n")


def _report_folder(p: Path) -> None:
    (p / "dynl2-workspace" / "reports" / "bad.html").mkdir(parents=True)


def _report_fifo(p: Path) -> None:
    (p / "dynl2-workspace" / "reports").mkdir(parents=True)
    os.mkfifo(p / "dynl2-workspace" / "reports" / "bad.html")


def _report_link(p: Path) -> None:
    (p / "dynl2-workspace" / "reports").mkdir(parents=True)
    (p / "dynl2-workspace" / "reports" / "bad.html").symlink_to(p / "plain-file")


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        pytest.param(_workspace_file, "ENOTDIR", id="workspace is a file"),
        pytest.param(_report_folder, "a folder", id="report is a folder"),
        pytest.param(_report_fifo, "FIFO", id="report is a FIFO"),
        pytest.param(_report_link, "symbolic link", id="report is a link"),
    ],
)
def test_run_refuses_a_report_path_before_training(place, make, fragment, capsys):
    """``dynl2 run`` writes its report to ``./dynl2-workspace/reports/NAME.html`` at the end:
    a path there that cannot take it is refused before the store is created, not hours later."""
    make(place)
    argv = ["run", str(place / "bad.toml"), "--storage", f"sqlite:///{place / 'new.db'}"]
    _check(place, argv, 2, fragment, capsys)


# Exit status 2 from a real process: tests/study/test_run_e2e.py's BAD_RUNS.
REAL = [
    (["run", "{p}/bad.toml", "--storage", "sqlite:///{p}/damaged.db"], 1, "not a database"),
]


@pytest.mark.parametrize(("argv", "code", "fragment"), REAL, ids=["damaged"])
def test_as_a_real_process(place, argv, code, fragment):
    (place / "case.toml").write_text(_config_text([('name = "bad"', 'name = "../x"')], place))
    before = _fingerprint(place)
    proc = subprocess.run(
        [sys.executable, "-m", "study", *[a.format(p=place) for a in argv]],
        cwd=place, env={**child_env(), "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
    assert _fingerprint(place) == before
    assert not os.path.exists(place / "dynl2-workspace")


def test_there_are_at_least_50_cases():
    assert len(CONFIGS) + len(FILES) + len(COMMANDS) + len(REAL) >= 50
