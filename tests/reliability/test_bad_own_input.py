"""A user's own data and model, wrong in every way we could think of: a missing or foreign file,
arrays that do not fit together, labels that are not classes, loaders and factories that raise,
return the wrong thing or never return. Each ends with one line on stderr naming the key, exit
status 2, no traceback, and nothing written (every file under the test's folder as before, no
store, no workspace). The CLI runs in this process, as in test_bad_input.py."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.tiny import tiny_config

from .helpers import run_cli

pytestmark = pytest.mark.reliability

DATA = '[data]\ndataset = "digits"\n'
MODEL = '[model]\nkind = "mlp"\nhidden = [16]\n'


def _digits(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 1, 8, 8)).astype(np.float32), np.arange(n) % 10


def _npz(place: Path, **arrays: object) -> None:
    np.savez(place / "d.npz", **arrays)  # type: ignore[arg-type]


def _good_npz(place: Path) -> None:
    x, y = _digits()
    _npz(place, x=x, y=y)


def _module(place: Path, name: str, text: str) -> None:
    (place / f"{name}.py").write_text(text)


LOADER = "import numpy as np\n\ndef load(**kw):\n{body}\n"
FACTORY = "import torch\nfrom torch import nn\n\ndef make(in_shape, n_outputs, **kw):\n{body}\n"


def _loader(body: str) -> Callable[[Path, str], None]:
    return lambda place, name: _module(place, name, LOADER.format(body=body))


def _factory(body: str) -> Callable[[Path, str], None]:
    def write(place: Path, name: str) -> None:
        _good_npz(place)
        _module(place, name, FACTORY.format(body=body))

    return write


def _with(setup: Callable[[Path], None]) -> Callable[[Path, str], None]:
    return lambda place, name: setup(place)


NPZ = '[data]\npath = "d.npz"\n'
CSV = '[data]\npath = "d.csv"\ntarget = "label"\n'
LOAD = '[data]\nloader = "{mod}:load"\n'
FACT = '[model]\nfactory = "{mod}:make"\n'
GOOD_ROWS = "a,b,label\n" + "".join(f"{i % 7},{i % 5},{i % 2}\n" for i in range(100))

# (id, setup(place, module name), [data] text, [model] text, the key the line must name,
#  a fragment of the line)
# fmt: off
CASES: list[tuple[str, Callable[[Path, str], None], str, str, str, str]] = [
    # the file
    ("no such file", _with(lambda p: None), NPZ, MODEL, "data.path", "no such file"),
    ("a folder", _with(lambda p: (p / "d.npz").mkdir()), NPZ, MODEL, "data.path", "not a regular"),
    ("a fifo", _with(lambda p: os.mkfifo(p / "d.npz")), NPZ, MODEL, "data.path", "not a regular"),
    ("unknown suffix", _with(lambda p: (p / "d.txt").write_text("1")),
     '[data]\npath = "d.txt"\n', MODEL, "data.path", ".npz, .pt, .csv"),
    ("damaged npz", _with(lambda p: (p / "d.npz").write_bytes(b"junk" * 100)), NPZ, MODEL,
     "data.path", "cannot read"),
    ("npz without y", _with(lambda p: _npz(p, x=_digits()[0])), NPZ, MODEL, "data.path",
     "no array 'y'"),
    ("npz without x", _with(lambda p: _npz(p, y=_digits()[1])), NPZ, MODEL, "data.path",
     "no array 'x'"),
    ("lengths differ", _with(lambda p: _npz(p, x=_digits()[0], y=_digits(150)[1])), NPZ, MODEL,
     "data.path", "200 examples but 'y' has 150"),
    ("nan in x", _with(lambda p: _npz(p, x=np.full((200, 3), np.nan), y=_digits()[1])), NPZ,
     MODEL, "data.path", "NaN or infinite"),
    ("inf in y", _with(lambda p: _npz(p, x=np.ones((200, 3)), y=np.full(200, np.inf))), NPZ,
     MODEL, "data.path", "NaN or infinite"),
    ("labels from 1", _with(lambda p: _npz(p, x=_digits()[0], y=_digits()[1] + 1)), NPZ, MODEL,
     "data.path", "class 0 never appears"),
    ("negative labels", _with(lambda p: _npz(p, x=_digits()[0], y=_digits()[1] - 1)), NPZ,
     MODEL, "data.path", "labels must be 0..C-1"),
    ("one class", _with(lambda p: _npz(p, x=_digits()[0], y=np.zeros(200, np.int64))), NPZ,
     MODEL, "data.path", "at least 2 classes"),
    ("x is 1-d", _with(lambda p: _npz(p, x=np.ones(200), y=_digits()[1])), NPZ, MODEL,
     "data.path", "[N, ...]"),
    ("x_val without y_val", _with(lambda p: _npz(p, x=_digits()[0], y=_digits()[1],
                                                 x_val=_digits()[0])),
     NPZ, MODEL, "data.path", "without 'y_val'"),
    ("x_val of another shape", _with(lambda p: _npz(p, x=_digits()[0], y=_digits()[1],
                                                    x_val=np.ones((50, 3)), y_val=np.ones(50))),
     NPZ, MODEL, "data.path", "'x_val' has examples of shape"),
    ("too few examples", _with(lambda p: _npz(p, x=np.ones((30, 3)), y=np.arange(30) % 2)), NPZ,
     MODEL, "data.val_fraction", "at least 10"),
    ("strings", _with(lambda p: _npz(p, x=np.array([["a"]] * 200), y=_digits()[1])), NPZ,
     MODEL, "data.path", "expected numbers"),
    ("y of 3 columns", _with(lambda p: _npz(p, x=_digits()[0], y=np.ones((200, 3)))), NPZ,
     MODEL, "data.path", "must be [N]"),
    ("fractional labels", _with(lambda p: _npz(p, x=np.ones((200, 3)),
                                                y=np.linspace(0, 1, 200))),
     NPZ + 'task = "classification"\n', MODEL, "data.path", "whole-number labels"),
    ("unknown task", _with(_good_npz), NPZ + 'task = "clustering"\n', MODEL, "data.task",
     "classification, regression"),
    ("zero val_fraction", _with(_good_npz), NPZ + "val_fraction = 0.0\n", MODEL,
     "data.val_fraction", "(0, 1)"),
    ("fractions leave nothing", _with(_good_npz),
     NPZ + "val_fraction = 0.5\ntest_fraction = 0.45\n", MODEL, "data.test_fraction", "10%"),
    ("path and loader", _with(_good_npz), NPZ + 'loader = "m:f"\n', MODEL, "data.loader",
     "not both"),
    ("dataset and path", _with(_good_npz), NPZ + 'dataset = "digits"\n', MODEL, "data.dataset",
     "not both"),
    ("a fingerprint that differs", _with(_good_npz), NPZ + f'fingerprint = "sha256:{"0" * 64}"\n',
     MODEL, "data.fingerprint", f"sha256:{'0' * 64}"),
    ("val_acc on float targets", _with(lambda p: _npz(p, x=np.ones((200, 3)),
                                                      y=np.linspace(0, 1, 200))),
     NPZ, MODEL, "search.metric", "regression"),
    # tables
    ("csv without target", _with(lambda p: (p / "d.csv").write_text(GOOD_ROWS)),
     '[data]\npath = "d.csv"\n', MODEL, "data.target", "label column"),
    ("csv target missing", _with(lambda p: (p / "d.csv").write_text(GOOD_ROWS)),
     '[data]\npath = "d.csv"\ntarget = "y"\n', MODEL, "data.target", "no column 'y'"),
    ("csv text feature", _with(lambda p: (p / "d.csv").write_text(
        "a,city,label\n" + "".join(f"{i},x{i % 3},{i % 2}\n" for i in range(100)))),
     CSV, MODEL, "data.features", "'city' is not numeric"),
    ("csv unknown feature", _with(lambda p: (p / "d.csv").write_text(GOOD_ROWS)),
     CSV + 'features = ["a", "c"]\n', MODEL, "data.features", "no column 'c'"),
    ("target on npz", _with(_good_npz), NPZ + 'target = "y"\n', MODEL, "data.target",
     "only a .csv"),
    ("pt holding a list", _with(lambda p: __import__("torch").save([1, 2], p / "d.pt")),
     '[data]\npath = "d.pt"\n', MODEL, "data.path", "dict of tensors"),
    ("pt holding an object", _with(lambda p: __import__("torch").save(
        {"x": __import__("fractions").Fraction(1, 3)}, p / "d.pt")),
     '[data]\npath = "d.pt"\n', MODEL, "data.path", "cannot read"),
    # loaders
    ("loader without colon", _with(lambda p: None), '[data]\nloader = "nocolon"\n', MODEL,
     "data.loader", "module:function"),
    ("loader module missing", _with(lambda p: None), LOAD, MODEL, "data.loader",
     "cannot import module"),
    ("loader function missing", _loader("    pass"), '[data]\nloader = "{mod}:other"\n', MODEL,
     "data.loader", "no function 'other'"),
    ("loader raises", _loader("    raise ValueError('no disk')"), LOAD, MODEL, "data.loader",
     "ValueError: no disk"),
    ("loader exits", _loader("    raise SystemExit(3)"), LOAD, MODEL, "data.loader",
     "SystemExit"),
    ("loader returns a list", _loader("    return [1, 2]"), LOAD, MODEL, "data.loader",
     "mapping of arrays"),
    ("loader returns X", _loader("    return {'X': np.ones((100, 3)), 'y': np.arange(100) % 2}"),
     LOAD, MODEL, "data.loader", "unexpected array 'X'"),
    ("loader never returns", _loader("    import time; time.sleep(5)"), LOAD, MODEL,
     "data.loader", "did not return within"),
    ("loader does not import", lambda p, m: _module(p, m, "def load(:\n"), LOAD, MODEL,
     "data.loader", "SyntaxError"),
    ("loader args not a table", _loader("    pass"), LOAD + "args = 3\n", MODEL, "data.args",
     "table of arguments"),
    ("loader root missing", _with(lambda p: None), LOAD + 'root = "nowhere"\n', MODEL,
     "data.loader", "no folder"),
    # factories
    ("factory without colon", _with(_good_npz), NPZ, '[model]\nfactory = "a.b"\n',
     "model.factory", "module:function"),
    ("factory module missing", _with(_good_npz), NPZ, FACT, "model.factory",
     "cannot import module"),
    ("factory raises", _factory("    raise RuntimeError('bad width')"), NPZ, FACT,
     "model.factory", "RuntimeError: bad width"),
    ("factory returns a dict", _factory("    return {}"), NPZ, FACT, "model.factory",
     "torch.nn.Module"),
    ("factory model of wrong output", _factory("    return nn.Sequential(nn.Flatten(), "
                                                "nn.Linear(64, 3))"),
     NPZ, FACT, "model.factory", "[batch, 10]"),
    ("factory model without parameters", _factory("    return nn.Flatten()"), NPZ, FACT,
     "model.factory", "no parameters"),
    ("factory model fails", _factory("    return nn.Linear(5, n_outputs)"), NPZ, FACT,
     "model.factory", "fails on a batch of shape (2, 1, 8, 8)"),
    ("factory with kind", _factory("    pass"), NPZ, FACT + 'kind = "mlp"\n', "model.kind",
     "takes no 'kind'"),
    # loops, and [train] penalize ("||" adds lines to [train])
    ("loop without colon", _with(_good_npz), NPZ, MODEL + '||loop = "a.b"\n', "train.loop",
     "module:function"),
    ("loop module missing", _with(_good_npz), NPZ, MODEL + '||loop = "{mod}:loop"\n',
     "train.loop", "cannot import module"),
    ("loop function missing", _factory("    pass"), NPZ, MODEL + '||loop = "{mod}:loop"\n',
     "train.loop", "no function 'loop'"),
    ("penalize unknown", _with(_good_npz), NPZ, MODEL + '||penalize = "biases"\n',
     "train.penalize", "weights, all"),
    ("factory args not plain", _factory("    pass"), NPZ,
     FACT + "[model.args]\nwhen = 1979-05-27T07:32:00Z\n", "model.args", "plain values"),
]
# fmt: on


def _snapshot(folder: Path) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for path in sorted(folder.rglob("*")):
        if "__pycache__" in path.parts:
            continue  # Python's own byte code of the user's module
        key = str(path.relative_to(folder))
        regular = path.is_file() and not path.is_fifo()
        out[key] = hashlib.sha256(path.read_bytes()).hexdigest() if regular else None
    return out


@pytest.mark.parametrize(
    ("setup", "data", "model", "key", "fragment"),
    [pytest.param(s, d, m, k, f, id=i) for i, s, d, m, k, f in CASES],
)
def test_own_data_and_model_mistakes(tmp_path, monkeypatch, capsys, request, setup, data, model,
                                     key, fragment):  # fmt: skip
    module = "m_" + hashlib.sha256(request.node.name.encode()).hexdigest()[:12]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DYNL2_LOADER_SECONDS", "0.5")
    monkeypatch.delenv("DYNL2_STORAGE", raising=False)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    setup(tmp_path, module)
    text = tiny_config("own", epochs=1, n_trials=1, seeds=1, arms=["fixed"])
    model, _, train = model.partition("||")
    text = text.replace(DATA, data.format(mod=module)).replace(MODEL, model.format(mod=module))
    text = text.replace("[train]\n", "[train]\n" + train.format(mod=module))
    (tmp_path / "case.toml").write_text(text)
    before = _snapshot(tmp_path)
    argv = ["run", str(tmp_path / "case.toml"), "--storage", f"sqlite:///{tmp_path}/s/store.db"]
    code, _, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert code == 2, err
    assert key in lines[0], lines[0]
    assert fragment in lines[0], lines[0]
    assert _snapshot(tmp_path) == before  # nothing written, created or removed


def test_there_are_at_least_40_cases():
    assert len(CASES) >= 40
