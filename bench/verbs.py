"""How long the reading verbs take to start and answer, as a user runs them, run by hand.

    python bench/verbs.py [--storage URL --experiment NAME] [--repeats 7]

Times whole processes with the wall clock, start-up included: ``dynl2 sql "select 1"``, ``dynl2
sql "select * from dynl2_experiments"``, ``dynl2 status NAME``, ``dynl2 status`` and ``dynl2
--help``, each ``--repeats`` times, interleaved (one of each, then again), against two
baselines measured in the same run the same way: ``python -c pass`` (the interpreter's own
start) and ``python -c "import sqlalchemy"`` (the one library every store read needs). Prints
each command's median and its range, and the median as a ratio to each baseline; timings are
never asserted. Without ``--storage`` it makes a store first, in a temporary folder, with
``dynl2 run examples/tiny.toml`` (seconds on a CPU), and reads experiment ``tiny`` from it.
Every timed command must exit 0, or the script exits 1.

The header says what was measured on: the Python, the CPUs and their load, whether the
interpreter may write bytecode (``PYTHONDONTWRITEBYTECODE``: with it set, a module changed
since its ``.pyc`` was written is compiled again at every start).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dynl2_command() -> list[str]:
    """The ``dynl2`` console script beside this interpreter, else ``python -m study``."""
    script = Path(sys.executable).with_name("dynl2")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "study"]


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """Wall seconds of one run of ``argv``; a failure ends the benchmark."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench/verbs.py: {' '.join(argv)} exited {proc.returncode}: {proc.stderr}")
    return seconds


def make_store(folder: Path, env: dict[str, str]) -> str:
    config = ROOT / "examples" / "tiny.toml"
    print(f"making a store: dynl2 run {config.relative_to(ROOT)} in {folder} ...", flush=True)
    timed([*dynl2_command(), "run", str(config), "--quiet"], env, folder)
    return f"sqlite:///{folder / 'dynl2-workspace' / 'dynl2.db'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", help="the store's URL (default: a new tiny store)")
    parser.add_argument("--experiment", default="tiny", help="the experiment status reads")
    parser.add_argument("--repeats", type=int, default=7, help="runs of each command")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    env = {**os.environ, "DYNL2_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="dynl2-verbs-") as tmp:
        folder = Path(tmp)
        url = args.storage or make_store(folder, env)
        env["DYNL2_STORAGE"] = url  # in the environment, as a user would keep a password
        dynl2 = dynl2_command()
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import sqlalchemy'": [sys.executable, "-c", "import sqlalchemy"],
            'dynl2 sql "select 1"': [*dynl2, "sql", "select 1"],
            'dynl2 sql "select * from dynl2_experiments"': [
                *dynl2,
                "sql",
                "select * from dynl2_experiments",
            ],
            f"dynl2 status {args.experiment}": [*dynl2, "status", args.experiment],
            "dynl2 status": [*dynl2, "status"],
            "dynl2 --help": [*dynl2, "--help"],
        }
        runs: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, argv in commands.items():
                runs[name].append(timed(argv, env, folder))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"dynl2 reading verbs, whole processes, wall clock; {args.repeats} runs each, "
        f"interleaved\nPython {platform.python_version()} ({sys.executable}), "
        f"{platform.platform()}, {os.cpu_count()} CPUs, load average {load} (after)\n"
        f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}, "
        f"store {url.split('://')[0]}, dynl2 as: {' '.join(dynl2)}"
    )
    bare = statistics.median(runs["python -c pass"])
    alchemy = statistics.median(runs["python -c 'import sqlalchemy'"])
    width = max(len(name) for name in commands)
    print(f"{'command':<{width}}  median s  (min-max)      x python   x sqlalchemy")
    for name, seconds in runs.items():
        median = statistics.median(seconds)
        print(
            f"{name:<{width}}  {median:8.3f}  ({min(seconds):.3f}-{max(seconds):.3f})  "
            f"{median / bare:8.1f}   {median / alchemy:8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
