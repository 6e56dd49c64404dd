"""Issue 17: hostile configs and flags. Every one ends with exactly one short line on stderr
naming the problem and what is allowed, no traceback, exit status 2 (1 for the environment),
nothing written (every file under the test's folder byte for byte as before, no store created),
in bounded time and memory.

Most cases run the CLI in this process, as ``test_bad_input`` does. The cases that could hang
or eat the machine on a regression (a device file or a FIFO as the config, nesting that makes
``tomllib`` recurse or allocate quadratically, millions of layers) run in one child process
with an address-space cap (``RLIMIT_AS``), a time limit per case (``SIGALRM``) and a
``timeout=`` on the whole child, so a regression fails its case instead of taking the machine
down; two of them also run as a real ``python -m study`` process."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import storage
from study.config.experiment import load_experiment
from study.config.reader import MAX_CONFIG_BYTES, MAX_DEPTH

from . import test_bad_input
from .helpers import ROOT, child_env, run_cli, write_config
from .test_bad_input import BASE_NAME, _config_text, _fingerprint

# test_bad_input's fixtures: a test folder with a good config and a store (``place``)
place = test_bad_input.place
prepared_store = test_bad_input.prepared_store

pytestmark = pytest.mark.reliability

LR = "lr = { low = 1e-3, high = 3e-2, log = true }"
LAM = "lam = { low = 1e-6, high = 1e-1, log = true }"
ALPHA = "alpha = { low = 1e-4, high = 1.0, log = true }"
DIGITS = 'dataset = "digits"'
CUDA = torch.cuda.is_available()
MPS = torch.backends.mps.is_available()
MAX_LINE = 600  # "one clear line": a hostile key or value is never echoed in full


def _many(item: str, count: int) -> str:
    return ", ".join([item] * count)


# (id, [(text to replace, replacement), ...], what the line must contain)
# fmt: off
CONFIGS: list[tuple[str, list[tuple[str, str]], str]] = [
    # device strings: refused before the experiment is created
    ("device cuda:99999999999999999999999",
     [('device = "cpu"', 'device = "cuda:99999999999999999999999"')], "train.device"),
    ("device cuda:Arabic-Indic 3", [('device = "cpu"', 'device = "cuda:\u0663"')], "train.device"),
    ("device cuda:fullwidth 1", [('device = "cpu"', 'device = "cuda:\uff11"')], "train.device"),
    ("device cpu newline", [('device = "cpu"', 'device = "cpu\\n"')], "train.device"),
    ("device leading space", [('device = "cpu"', 'device = " cpu"')], "train.device"),
    ("device upper case", [('device = "cpu"', 'device = "CPU"')], "train.device"),
    ("device cuda:-1", [('device = "cpu"', 'device = "cuda:-1"')], "train.device"),
    ("device cpu:0", [('device = "cpu"', 'device = "cpu:0"')], "train.device"),
    ("device with NUL", [('device = "cpu"', 'device = "auto\\u0000"')], "train.device"),
    ("device empty", [('device = "cpu"', 'device = ""')], "train.device"),
    ("device 200 KB", [('device = "cpu"', f'device = "{"x" * 200_000}"')], "train.device"),
    ("device one past the last GPU",
     [('device = "cpu"', f'device = "cuda:{torch.cuda.device_count()}"')], "CUDA"),
    # data
    ("data seed -1", [(DIGITS, f"{DIGITS}\nseed = -1")], "data.seed"),
    ("data seed 2^63", [(DIGITS, f"{DIGITS}\nseed = 9223372036854775808")], "data.seed"),
    ("data seed true", [(DIGITS, f"{DIGITS}\nseed = true")], "data.seed"),
    ("val_fraction 0.001", [(DIGITS, f"{DIGITS}\nval_fraction = 0.001")], "data.val_fraction"),
    ("val_fraction just below the minimum", [(DIGITS, f"{DIGITS}\nval_fraction = 0.0199")],
     "data.val_fraction"),
    ("test_fraction 0.001", [(DIGITS, f"{DIGITS}\ntest_fraction = 0.001")],
     "data.test_fraction"),
    ("mnist1d n_val 9", [(DIGITS, 'dataset = "mnist1d"\nn_val = 9')], "data.n_val"),
    ("linear n_val 5", [(DIGITS, 'dataset = "linear"\nn_val = 5')], "data.n_val"),
    ("linear 10^11 numbers", [(DIGITS, 'dataset = "linear"\nn_train = 1_000_000\n'
                                       "n_features = 100_000")], "data.n_features"),
    ("linear 100001 features", [(DIGITS, 'dataset = "linear"\nn_features = 100_001')],
     "data.n_features"),
    # ranges and numbers Optuna or the float parser would mangle
    ("step 1e-300", [(LR, "lr = { low = 1e-3, high = 3e-2, step = 1e-300 }")], "train.lr"),
    ("step 1e-20", [(LR, "lr = { low = 1e-3, high = 3e-2, step = 1e-20 }")], "train.lr"),
    ("low 5e-324", [(LR, "lr = { low = 5e-324, high = 3e-2, log = true }")], "5e-324"),
    ("low 1e-400", [(LR, "lr = { low = 1e-400, high = 3e-2, log = true }")], "1e-400"),
    ("low just below the smallest normal",
     [(LAM, "lam = { low = 2.2250738585072011e-308, high = 1e-1, log = true }")],
     "arms.fixed.lam.low"),
    ("fixed floor 1e-310", [(ALPHA, f"{ALPHA}\nfloor = 1e-310")], "arms.dynamic.floor"),
    ("epochs 2^64", [("epochs = 2", "epochs = 18446744073709551616")], "train.epochs"),
    ("epochs of 5000 digits", [("epochs = 2", f"epochs = {'9' * 5000}")], "train.epochs"),
    ("epochs in Arabic-Indic digits", [("epochs = 2", 'epochs = "\u0663"')], "train.epochs"),
    ("trials 1e400", [("n_trials = 2", "n_trials = 1e400")], "search.n_trials"),
    ("seeds true", [("seeds = 1", "seeds = true")], "evaluate.seeds"),
    ("batch -5", [("metric = ", "batch = -5\nmetric = ")], "search.batch"),
    ("epochs 1000001", [("epochs = 2", "epochs = 1_000_001")], "train.epochs"),
    # models
    ("65 layers", [("hidden = [16]", f"hidden = [{_many('16', 65)}]")], "model.hidden"),
    ("two 65536-wide layers", [("hidden = [16]", "hidden = [65536, 65536]")], "model.hidden"),
    ("cnn with 4097 channels", [(DIGITS, 'dataset = "mnist1d"'),
                                ('kind = "mlp"\nhidden = [16]', 'kind = "cnn"\nchannels = 4097')],
     "model.channels"),
    ("negative width", [("hidden = [16]", "hidden = [-1]")], "model.hidden"),
    # arms and keys
    ("65 arms", [("[evaluate]", "".join(f'[arms.a{i}]\nscheme = "none"\n' for i in range(63))
                  + "[evaluate]")], "arms"),
    ("100 KB key", [("epochs = 2", f"epochs = 2\n{'k' * 100_000} = 1")], "train."),
    ("key with a newline", [("seed = 0", 'seed = 0\n"a\\nb" = 1')], "experiment."),
    # nesting at the limit and one past it
    ("nesting one past the limit",
     [("seed = 0", "seed = 0\nx = " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))],
     "nested"),
    ("dotted key one past the limit",
     [("seed = 0", "seed = 0\n" + ".".join(["k"] * MAX_DEPTH) + " = 1")], "nested"),
]
# fmt: on
# At the limit the nesting is read, and the config is refused for what it says instead.
AT_THE_LIMIT: list[tuple[str, list[tuple[str, str]], str]] = [
    (
        "nesting at the limit",
        [("seed = 0", "seed = 0\nx = " + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2))],
        "experiment.x",
    ),
    (
        "dotted key at the limit",
        [("seed = 0", "seed = 0\n" + ".".join(["k"] * (MAX_DEPTH - 1)) + " = 1")],
        "experiment.k",
    ),
]
if not CUDA:
    CONFIGS.append(("device cuda, no CUDA here", [('device = "cpu"', 'device = "cuda"')], "CUDA"))
if not MPS:
    CONFIGS.append(("device mps, no MPS here", [('device = "cpu"', 'device = "mps"')], "MPS"))


@pytest.mark.parametrize(
    ("changes", "fragment"), [pytest.param(c, f, id=i) for i, c, f in CONFIGS + AT_THE_LIMIT]
)
def test_hostile_config(place, changes, fragment, capsys):
    config = place / "case.toml"
    config.write_text(_config_text(changes, place), encoding="utf-8")
    argv = ["run", str(config), "--storage", f"sqlite:///{place / 'new' / 'store.db'}"]
    _check_short(place, argv, 2, fragment, capsys)


def _check_short(place: Path, argv: list[str], code: int, fragment: str, capsys) -> None:
    """``test_bad_input``'s check (one line naming ``fragment``, exit ``code``, no traceback,
    nothing written), and the line stays short."""
    before = _fingerprint(place)
    got, _, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err
    assert got == code, err[-3000:]
    assert lines[0].startswith("dynl2"), lines[0][:MAX_LINE]
    assert fragment in lines[0], lines[0][:MAX_LINE]
    assert len(lines[0]) < MAX_LINE, lines[0][:MAX_LINE]
    assert _fingerprint(place) == before  # nothing written, created or removed


# Config files that are not sane as files: (id, how to make it, what the line must contain).
def _size(place: Path, extra: int) -> Path:
    """A valid config padded with a comment to MAX_CONFIG_BYTES + ``extra`` bytes, whose epochs
    are 0: at the cap it is read and refused for the epochs; past it, for its size."""
    text = _config_text([("epochs = 2", "epochs = 0")], place) + "#"
    text += "x" * (MAX_CONFIG_BYTES + extra - len(text.encode()) - 1) + "\n"
    path = place / "case.toml"
    path.write_text(text)
    assert path.stat().st_size == MAX_CONFIG_BYTES + extra
    return path


def _symlink_to_folder(place: Path) -> Path:
    (place / "folder").mkdir()
    (place / "link").symlink_to(place / "folder")
    return place / "link"


def _write(content: bytes):
    def make(place: Path) -> Path:
        (place / "case.toml").write_bytes(content)
        return place / "case.toml"

    return make


FILES = [
    ("one byte past the size cap", lambda p: _size(p, 1), str(MAX_CONFIG_BYTES)),
    ("at the size cap", lambda p: _size(p, 0), "train.epochs"),
    ("a symlink to a folder", _symlink_to_folder, "directory"),
    ("/proc/self/mem", lambda p: Path("/proc/self/mem"), "cannot read"),
    ("NUL bytes", _write(b"[experiment]\x00\x00\n"), "invalid TOML"),
    # a BOM at the start is dropped (Windows editors write one); the config is then read
    ("a byte-order mark", _write(b'\xef\xbb\xbf[experiment]\nname = "x"\n'), "arms: missing"),
    ("a BOM inside", _write(b'[experiment]\n\xef\xbb\xbfname = "x"\n'), "invalid TOML"),
    ("10000 unterminated strings", _write(b'x = "\n' * 10_000), "invalid TOML"),
    ("20000 tables", _write("".join(f"[t{i}]\n" for i in range(20_000)).encode()), "t0"),
]


@pytest.mark.parametrize(("make", "fragment"), [pytest.param(m, f, id=i) for i, m, f in FILES])
def test_hostile_config_file(place, make, fragment, capsys):
    path = make(place)
    argv = ["run", str(path), "--storage", f"sqlite:///{place / 'new' / 'store.db'}"]
    _check_short(place, argv, 2, fragment, capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file of mode 000")
def test_unreadable_config(place, capsys):
    path = place / "case.toml"
    path.write_text("[experiment]\n")
    path.chmod(0)
    _check_short(place, ["run", str(path)], 2, "cannot read", capsys)


# Flags: (id, argv with {p} for the test's folder, what the line must contain).
WIDE = ["--dataset", "linear", "--model", "linear"]
# fmt: off
COMMANDS: list[tuple[str, list[str], str]] = [
    ("train --device cpu newline", ["train", "--device", "cpu\n"], "--device"),
    ("train --device cuda:Arabic-Indic 3", ["train", "--device", "cuda:\u0663"], "--device"),
    ("train --device cuda:huge", ["train", "--device", "cuda:99999999999999999999999"],
     "--device"),
    ("train --data-seed -1", ["train", "--data-seed", "-1"], "--data-seed"),
    ("train --seed 2^63", ["train", "--seed", str(2**63)], "--seed"),
    ("train --epochs Arabic-Indic 3", ["train", "--epochs", "\u0663"], "--epochs"),
    ("train --epochs 1_0", ["train", "--epochs", "1_0"], "--epochs"),
    ("train --hidden 65 layers", ["train", "--hidden", ",".join(["4"] * 65)], "--hidden"),
    ("train --hidden 60000 layers", ["train", "--hidden", ",".join(["1"] * 60_000)],
     "--hidden"),
    ("train --hidden 65536,65536", ["train", "--hidden", "65536,65536"], "--hidden"),
    ("train --hidden Arabic-Indic 3", ["train", "--hidden", "\u0663"], "--hidden"),
    ("train --lr 5e-324", ["train", "--lr", "5e-324"], "5e-324"),
    ("train --floor 1e-310", ["train", "--scheme", "dynamic", "--alpha", "1", "--floor",
                              "1e-310"], "--floor"),
    ("train 10^11 numbers", ["train", *WIDE, "--n-train", "1000000", "--n-features", "100000"],
     "--n-features"),
    ("train --n-val 5", ["train", *WIDE, "--n-val", "5"], "--n-val"),
    ("train --channels 4097", ["train", "--model", "cnn", "--channels", "4097"], "--channels"),
    ("evaluate --seeds 20000000", ["evaluate", "exp", "--seeds", "20000000", "--storage",
                                   "sqlite:///{p}/exp.db"], "1000"),
    ("evaluate --seeds 1001", ["evaluate", "exp", "--seeds", "1001", "--storage",
                               "sqlite:///{p}/exp.db"], "1000"),
    ("evaluate --workers 257", ["evaluate", "exp", "--workers", "257", "--storage",
                                "sqlite:///{p}/exp.db"], "256"),
    # a regression here would fail to create its store (a file is in the way): exit 1, not 2
    ("run --workers 257", ["run", "{p}/bad.toml", "--workers", "257", "--storage",
                           "sqlite:///{p}/plain-file/x.db"], "256"),
]
# fmt: on
if not CUDA:
    COMMANDS.append(("train --device cuda, no CUDA here", ["train", "--device", "cuda"], "CUDA"))


@pytest.mark.parametrize(("argv", "fragment"), [pytest.param(a, f, id=i) for i, a, f in COMMANDS])
def test_hostile_flags(place, argv, fragment, capsys):
    _check_short(place, [a.format(p=place) for a in argv], 2, fragment, capsys)


def _store_with_device(place: Path, device: str) -> str:
    """A store holding experiment ``gpu`` whose stored config asks for ``device``: written
    as a store from another machine, or an older dynl2, would hold it."""
    url = f"sqlite:///{place / 'gpu.db'}"
    doc = load_experiment(place / "bad.toml").to_dict()
    doc["experiment"]["name"] = "gpu"
    doc["train"]["device"] = device
    with storage.open(url) as store:
        store.create_experiment("gpu", doc)
    return url


# (verb, device stored, what the line must contain)
STORED = [
    pytest.param(verb, device, fragment, id=f"{verb} {device!r}")
    for verb in ("evaluate", "worker")
    for device, fragment in [("cuda:\u0663", "train.device"), ("cpu\n", "train.device")]
]
if not CUDA:
    STORED += [
        pytest.param("evaluate", "cuda", "CUDA", id="evaluate 'cuda'"),
        pytest.param("worker", "cuda", "CUDA", id="worker 'cuda'"),
    ]


@pytest.mark.parametrize(("verb", "device", "fragment"), STORED)
def test_stored_device_is_refused_before_anything_is_written(
    place, verb, device, fragment, capsys
):
    url = _store_with_device(place, device)
    argv = [verb, "gpu", "--storage", url] + (["--provisional"] if verb == "evaluate" else [])
    _check_short(place, argv, 2, fragment, capsys)


# ---------------------------------------------------------------------------------------------
# The dangerous cases: one child process, capped.

CHILD_MEMORY = 3 * 2**30  # address space: importing torch and the CLI takes about 1 GiB
CASE_SECONDS = 20  # per case, SIGALRM in the child; a correct refusal takes milliseconds

_CHILD = r"""
import contextlib, io, json, os, signal, sys, traceback
from study.cli import dispatch as cli

class Late(BaseException):
    pass

def alarm(signum, frame):
    raise Late()

signal.signal(signal.SIGALRM, alarm)
cases = json.loads(sys.stdin.read())
for case in cases:
    os.chdir(case["cwd"])
    print(json.dumps({"id": case["id"], "started": True}), flush=True)
    out, err = io.StringIO(), io.StringIO()
    signal.alarm(case["seconds"])
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(case["argv"])
    except Late:
        code = "timeout"
    except BaseException as exc:
        code = "escaped"
        err.write(traceback.format_exc())
    finally:
        signal.alarm(0)
    print(json.dumps({"id": case["id"], "code": code, "err": err.getvalue()[-4000:],
                      "out": out.getvalue()[-2000:]}), flush=True)
"""


def _deep(opening: str, closing: str, depth: int, inner: str = "1") -> str:
    return "x = " + opening * depth + inner + closing * depth + "\n"


def _text_file(text: str):
    def make(folder: Path) -> str:
        (folder / "case.toml").write_text(text)
        return str(folder / "case.toml")

    return make


def _fifo(folder: Path) -> str:
    os.mkfifo(folder / "case.toml")
    return str(folder / "case.toml")


def _symlink_to_zero(folder: Path) -> str:
    (folder / "case.toml").symlink_to("/dev/zero")
    return str(folder / "case.toml")


def _config_with(old: str, new: str):
    def make(folder: Path) -> str:
        text = (folder / f"{BASE_NAME}.toml").read_text()
        assert old in text
        (folder / "case.toml").write_text(text.replace(old, new))
        return str(folder / "case.toml")

    return make


# (id, makes the config and returns its path, extra argv, what the line must contain);
# argv is ["run", PATH, "--storage", a new store in the case's folder, *extra] unless the
# maker returns a list (the whole argv).
# fmt: off
DANGEROUS = [
    ("/dev/zero", lambda f: "/dev/zero", "not a regular file"),
    ("/dev/urandom", lambda f: "/dev/urandom", "not a regular file"),
    ("a symlink to /dev/zero", _symlink_to_zero, "not a regular file"),
    ("a FIFO", _fifo, "FIFO"),
    ("100k-deep arrays", _text_file(_deep("[", "]", 100_000)), "nested"),
    ("100k-deep inline tables", _text_file(_deep("{a=", "}", 60_000)), "nested"),
    ("3000-level dotted key", _text_file(".".join(["a"] * 3000) + " = 1\n"), "nested"),
    ("100k-level dotted key", _text_file(".".join(["a"] * 100_000) + " = 1\n"), "nested"),
    ("100k-part table header", _text_file("[" + ".".join(["a"] * 100_000) + "]\n"), "nested"),
    ("deep arrays, unclosed", _text_file("x = " + "[" * 200_000), "nested"),
    ("hidden with 2 million layers", _config_with("hidden = [16]",
                                                  f"hidden = [{_many('1', 2_000_000)}]"),
     str(MAX_CONFIG_BYTES)),
    ("hidden with 80k layers", _config_with("hidden = [16]",
                                            f"hidden = [{_many('1', 80_000)}]"),
     "model.hidden"),
    ("evaluate --seeds 20000000 --provisional",
     lambda f: ["evaluate", "exp", "--seeds", "20000000", "--provisional", "--storage",
                f"sqlite:///{f / 'exp.db'}"], "--seeds"),
]
# fmt: on


@pytest.fixture(scope="module")
def dangerous(tmp_path_factory: pytest.TempPathFactory, prepared_store: Path) -> dict:
    """Every DANGEROUS case in its own folder, all run in one capped child process: for each
    id, the child's result and the folder's fingerprints before and after."""
    cases, folders = [], {}
    for case_id, make, _ in DANGEROUS:
        folder = tmp_path_factory.mktemp("hostile")
        write_config(folder, BASE_NAME, epochs=2, n_trials=2)
        shutil.copyfile(prepared_store, folder / "exp.db")
        made = make(folder)
        if isinstance(made, list):
            argv = made
        else:
            argv = ["run", made, "--storage", f"sqlite:///{folder / 'new' / 'store.db'}"]
        folders[case_id] = (folder, _fingerprint(folder))
        cases.append({"id": case_id, "cwd": str(folder), "argv": argv, "seconds": CASE_SECONDS})
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD], input=json.dumps(cases), cwd=ROOT,
            env={**child_env(), "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
            timeout=120 + CASE_SECONDS * len(cases), preexec_fn=_cap_memory,
        )  # fmt: skip
        out, err = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:  # what it said before it was killed
        out, err = (_text(exc.stdout), _text(exc.stderr) + "\n(the child timed out)")
    results: dict[str, dict] = {}
    for line in out.splitlines():
        said = json.loads(line)
        if "code" in said:
            results[said["id"]] = said
        else:  # started: replaced when it finishes
            results[said["id"]] = {"code": "killed while running", "err": err[-3000:]}
    missing = {"code": "not reached", "err": err[-3000:]}
    return {
        case_id: (results.get(case_id, missing), before, _fingerprint(folder))
        for case_id, (folder, before) in folders.items()
    }


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))


@pytest.mark.parametrize(
    ("case_id", "fragment"), [pytest.param(i, f, id=i) for i, _, f in DANGEROUS]
)
def test_dangerous_config(dangerous, case_id, fragment):
    result, before, after = dangerous[case_id]
    err = result["err"]
    assert result["code"] == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dynl2"), lines[0]
    assert fragment in lines[0], lines[0]
    assert len(lines[0]) < MAX_LINE, lines[0][:MAX_LINE]
    assert after == before  # nothing written, created or removed


@pytest.mark.parametrize("which", ["/dev/zero", "fifo"])
def test_as_a_real_process(place, which):
    if which == "fifo":
        os.mkfifo(place / "case.toml")
        path = str(place / "case.toml")
    else:
        path = which
    before = _fingerprint(place)
    proc = subprocess.run(
        [sys.executable, "-m", "study", "run", path], cwd=place,
        env={**child_env(), "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=120, preexec_fn=_cap_memory,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a regular file" in lines[0], proc.stderr[-3000:]
    assert _fingerprint(place) == before
    assert not (place / "dynl2-workspace").exists()


def test_there_are_at_least_40_cases():
    total = len(CONFIGS) + len(AT_THE_LIMIT) + len(FILES) + len(COMMANDS) + len(DANGEROUS)
    assert total + len(STORED) >= 40
