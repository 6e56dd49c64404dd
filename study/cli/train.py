"""``dynl2 train``: one training run from the command line."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import TYPE_CHECKING, Any

from study.config.reader import number_problem
from study.errors import UsageError
from trainers import (
    DATASETS,
    MODELS,
    OPTIMIZERS,
    SCHEMES,
    SHAPES,
    ConfigError,
    TrainConfig,
    scheme_parameters,
)
from trainers.config import device_problem

if TYPE_CHECKING:
    from trainers import EpochRecord

# Flags that belong to one part of the config; None means "not given".
_SCHEME_FLAGS = (
    "lam",
    "alpha",
    "floor",
    "ceiling",
    "loss_ema",
    "lam_awd",
    "lam_start",
    "lam_end",
    "shape",
    "apply",
    "biases",
)
_DATA_FLAGS = ("n_val", "n_train", "n_features", "noise", "data_seed")
_DATA_KEYS = {"data_seed": "seed"}


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "train",
        help="one training run (human-readable, or --json)",
        description="Train one configuration and print its per-epoch history and test score.",
    )
    g = p.add_argument_group("data and model")
    g.add_argument("--dataset", default="mnist1d", help=f"one of {', '.join(DATASETS)}")
    g.add_argument("--n-val", type=_whole, help="validation examples (mnist1d, linear)")
    g.add_argument("--n-train", type=_whole, help="training examples (linear)")
    g.add_argument("--n-features", type=_whole, help="input dimension (linear)")
    g.add_argument("--noise", type=_real, help="label noise standard deviation (linear)")
    g.add_argument("--data-seed", type=_whole, help="split seed (default 0)")
    g.add_argument("--model", default="mlp", help=f"one of {', '.join(MODELS)}")
    g.add_argument(
        "--hidden", type=_widths, help="MLP hidden widths, comma-separated (default 100,100)"
    )
    g.add_argument("--channels", type=_whole, help="CNN channels per conv layer (default 25)")
    g = p.add_argument_group("regularization")
    g.add_argument("--scheme", default="none", help=f"one of {', '.join(SCHEMES)}")
    g.add_argument("--lam", type=_real, help="fixed: the constant lambda; swd: its factor")
    g.add_argument(
        "--alpha", type=_alpha,
        help="dynamic, dynamic_l1: lambda = 0.5*alpha/L; a number, or lr: the learning rate "
        "(the scheme as its source wrote it)",
    )  # fmt: skip
    g.add_argument("--floor", type=_real, help="dynamic, dynamic_l1: lower clamp (default 1e-8)")
    g.add_argument("--ceiling", type=_real, help="dynamic, dynamic_l1: upper clamp (default none)")
    g.add_argument("--loss-ema", type=_real, help="dynamic, dynamic_l1: loss EMA factor in [0,1)")
    g.add_argument("--lam-awd", type=_real, help="awd: the adaptive weight decay factor")
    g.add_argument("--lam-start", type=_real, help="schedule: lambda at the first step")
    g.add_argument("--lam-end", type=_real, help="schedule: lambda the schedule ends at")
    g.add_argument("--shape", help=f"schedule: one of {', '.join(SHAPES)} (default linear)")
    g.add_argument("--apply", help="coupled (default; swd: decoupled) or decoupled")
    g.add_argument(
        "--biases", action="store_const", const=True, help="penalize biases too (default: no)"
    )
    g = p.add_argument_group("training")
    g.add_argument("--optimizer", default="adam", help=f"one of {', '.join(OPTIMIZERS)}")
    g.add_argument("--lr", type=_real, default=1e-2, help="learning rate (default 0.01)")
    g.add_argument("--momentum", type=_real, default=0.9, help="SGD momentum (default 0.9)")
    g.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    g.add_argument("--epochs", type=_whole, default=20, help="epochs (default 20)")
    g.add_argument("--batch-size", type=_whole, default=100, help="batch size (default 100)")
    g.add_argument("--seed", type=_whole, default=0, help="initialization and batch order seed")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(handler=run)


_WHOLE = re.compile(r"-?[0-9]{1,30}", re.ASCII)  # ASCII digits: int() also takes "\u0663", "1_0"
_REAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|nan)", re.I)


def _whole(text: str) -> int:
    if not _WHOLE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {_shown(text)}")
    return int(text)


def _alpha(text: str) -> float | str:
    """``--alpha``: a number, or ``lr`` (α is the learning rate)."""
    if text == "lr":
        return text
    try:
        return _real(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f'expected a number or "lr" (the learning rate), got {_shown(text)}'
        ) from None


def _real(text: str) -> float:
    """A number as written in ASCII; one that is not zero but below the smallest normal float
    is refused as written, rather than read as 0 (dynl2 flushes subnormals)."""
    if not _REAL.fullmatch(text) or len(text) > 400:
        raise argparse.ArgumentTypeError(f"expected a number, got {_shown(text)}")
    problem = number_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return float(text)


def _widths(text: str) -> list[int]:
    widths = text.split(",")
    if not all(re.fullmatch(r"[0-9]{1,9}", w, re.ASCII) for w in widths):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole numbers, got {_shown(text)}"
        )
    return [int(w) for w in widths]


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The flags as a validated config; a bad value raises UsageError naming its flag."""
    if args.scheme in SCHEMES:
        takes = set(scheme_parameters(args.scheme)) | set(SCHEMES[args.scheme].settings)
        for name in _SCHEME_FLAGS:
            if getattr(args, name) is not None and name not in takes:
                params = ", ".join(_flag(k) for k in scheme_parameters(args.scheme)) or "none"
                raise UsageError(
                    f"{_flag(name)}: scheme {args.scheme!r} does not take this parameter; "
                    f"its parameters: {params}"
                )
    scheme: dict[str, object] = {"scheme": args.scheme}
    scheme.update({k: getattr(args, k) for k in _SCHEME_FLAGS if getattr(args, k) is not None})
    data: dict[str, object] = {"dataset": args.dataset}
    data.update(
        {
            _DATA_KEYS.get(k, k): getattr(args, k)
            for k in _DATA_FLAGS
            if getattr(args, k) is not None
        }
    )
    model: dict[str, object] = {"kind": args.model}
    if args.hidden is not None:
        model["hidden"] = args.hidden
    if args.channels is not None:
        model["channels"] = args.channels
    raw = {
        "data": data,
        "model": model,
        "scheme": scheme,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "momentum": args.momentum,
        "nesterov": args.nesterov,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "device": args.device,
    }
    try:
        config = TrainConfig.from_dict(raw)
    except ConfigError as exc:
        raise UsageError(f"{_flag(exc.key)}: {exc.detail}") from None
    problem = device_problem(config.device)  # before the first line is printed
    if problem is not None:
        raise UsageError(f"--device: {problem}")
    return config


def _flag(key: str) -> str:
    """``scheme.loss_ema`` → ``--loss-ema``; ``model.kind`` → ``--model``."""
    parts = key.split(".")
    last = parts[-1].split("[")[0]
    if parts[0] == "data" and last == "seed":
        last = "data_seed"
    last = {"kind": "model"}.get(last, last)
    return "--" + last.replace("_", "-")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    from study.run.runs import prepare_training  # Optuna, SQLAlchemy: not for the parser
    from trainers import DivergenceError, train  # torch: only once there is a run to train

    prepare_training()
    human = not args.json

    def on_epoch(record: EpochRecord) -> None:
        if human:
            print(_format_epoch(record), flush=True)

    if human:
        print(f"dynl2 train: {_describe(config)}", flush=True)
    try:
        result = train(config, on_epoch=on_epoch)
    except ConfigError as exc:  # raised once the data is known (model vs dataset, device)
        raise UsageError(f"{_flag(exc.key)}: {exc.detail}") from None
    except DivergenceError as exc:
        if args.json:
            print(json.dumps({"config": config.to_dict(), "error": str(exc)}))
        print(f"dynl2 train: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    acc = "" if result.test_acc is None else f"  test_acc {100 * result.test_acc:.2f}%"
    print(f"test_loss {result.test_loss:.4f}{acc}  ({result.seconds:.1f} s on {result.device})")
    return 0


def _describe(config: TrainConfig) -> str:
    scheme = ", ".join(f"{k}={v}" for k, v in config.scheme.to_dict().items() if k != "scheme")
    return (
        f"{config.data.name} / {config.model.name} / {config.scheme.name}({scheme}) / "
        f"{config.optimizer} lr={config.lr} / {config.epochs} epochs, batch {config.batch_size}, "
        f"seed {config.seed}"
    )


def _format_epoch(r: EpochRecord) -> str:
    def pct(v: float | None) -> str:
        return "   -  " if v is None else f"{100 * v:5.1f}%"

    return (
        f"epoch {r.epoch:4d}  train_loss {r.train_loss:.4f} acc {pct(r.train_acc)}  "
        f"val_loss {r.val_loss:.4f} acc {pct(r.val_acc)}  "
        f"lambda {r.lam_mean:.3g} [{r.lam_min:.3g}, {r.lam_max:.3g}]  "
        f"|w| {r.weight_norm:.3g}  {r.seconds:.2f}s"
    )
