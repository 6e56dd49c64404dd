"""``dynl2 serve`` under load while agents train, run by hand.

    python bench/serve_load.py [--clients 20] [--interval 1] [--workers 2] [--trials 48]
                               [--epochs 20] [--repeats 2] [--storage URL]

Each round trains one experiment (the digits MLP of tests/tiny.py: two searched arms, random
search, no pruning, one evaluation seed) with ``--workers`` ``dynl2 agent --once`` processes
(search, evaluation, report), twice, interleaved:

1. quiet: no server, no clients;
2. loaded: ``dynl2 serve`` on the same store and ``--clients`` threads, each polling, every
   ``--interval`` seconds (default 1: three times as often as the live page polls), the
   experiment's page and then the trials API (``?limit=100``), for as long as the agents train.

Trials per minute are the experiment's search trials over the wall time from the agents' start
to the last one's exit (evaluation and report included). For the loaded runs it prints each
request kind's p50 and p99 latency, the number of requests and of errors (any status but 200,
or no answer: must be 0), and the loaded rate against the quiet rate of the same repeat (the
server must not slow training by more than 10%: a ratio of at least 0.90). Each run gets a
fresh SQLite file unless ``--storage`` names a server database, where each run's experiment
gets a new name. Never run by CI; timings are never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import storage  # noqa: E402
from study.config.experiment import parse_experiment  # noqa: E402
from study.config.reader import parse_config_text  # noqa: E402
from study.run.runs import create_or_resume  # noqa: E402
from tests.tiny import tiny_config  # noqa: E402

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Load:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.latencies.setdefault(kind, []).append(seconds)
            if error is not None:
                self.errors.append(f"{kind}: {error}")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "DYNL2_THREADS": "1"}


def _create(url: str, name: str, trials: int, epochs: int) -> None:
    text = tiny_config(name, epochs=epochs, n_trials=trials, seeds=1, arms=("dynamic", "fixed"))
    config = parse_experiment(parse_config_text(text, name))
    with storage.open(url) as store:
        create_or_resume(store, config)


def _train(url: str, workers: int) -> float:
    """Wall seconds from the agents' start to the last one's exit (nothing left to do)."""
    argv = [sys.executable, "-m", "study", "agent", "--storage", url, "--once", "--quiet"]
    argv += ["--poll", "0.5"]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*argv, "--index", str(i)],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"a worker failed ({proc.returncode}): {err[-2000:]}")
    return time.perf_counter() - started


def _serve(url: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "study", "serve", "--storage", url, "--port", "0"],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("dynl2 serve: http://"):
        proc.kill()
        sys.exit(f"the server did not start: {line!r} {proc.communicate()[1][-2000:]}")
    return proc, line.split()[2].rstrip("/")


def _client(base: str, name: str, load: Load, stop: threading.Event, interval: float) -> None:
    paths = {
        "page": f"{base}/experiments/{name}",
        "trials API": f"{base}/api/experiments/{name}/trials?limit=100",
    }
    while not stop.wait(interval):
        for kind, url in paths.items():
            started = time.perf_counter()
            error = None
            try:
                with OPENER.open(url, timeout=60) as response:
                    response.read()
                    if response.status != 200:
                        error = f"HTTP {response.status}"
            except (urllib.error.URLError, OSError) as exc:
                error = str(exc)
            load.add(kind, time.perf_counter() - started, error)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="agents")
    parser.add_argument("--trials", type=int, default=48, help="per arm")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds a client waits between polls"
    )
    parser.add_argument("--storage", help="a server database (default: a fresh SQLite file)")
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{args.workers} agents, {args.clients} clients every {args.interval:g} s, "
        f"{args.trials} trials × 2 arms × "
        f"{args.epochs} epochs"
    )
    failed = False
    with tempfile.TemporaryDirectory(prefix="dynl2-serve-load-") as tmp:
        for repeat in range(1, args.repeats + 1):
            rates = {}
            for mode in ("quiet", "loaded"):
                url = args.storage or f"sqlite:///{Path(tmp) / f'{mode}{repeat}.db'}"
                name = f"load-{mode}-{repeat}-{uuid.uuid4().hex[:6]}"
                _create(url, name, args.trials, args.epochs)
                if mode == "quiet":
                    seconds = _train(url, args.workers)
                else:
                    server, base = _serve(url)
                    load, stop = Load(), threading.Event()
                    clients = [
                        threading.Thread(
                            target=_client, args=(base, name, load, stop, args.interval)
                        )
                        for _ in range(args.clients)
                    ]
                    for c in clients:
                        c.start()
                    seconds = _train(url, args.workers)
                    stop.set()
                    for c in clients:
                        c.join()
                    server.terminate()
                    server.communicate(timeout=60)
                    for kind, values in load.latencies.items():
                        print(
                            f"  repeat {repeat} {kind:10s}: {len(values)} requests, p50 "
                            f"{1000 * statistics.median(values):.0f} ms, p99 "
                            f"{1000 * _quantile(values, 0.99):.0f} ms"
                        )
                    print(f"  repeat {repeat} errors: {len(load.errors)}")
                    for line in load.errors[:5]:
                        print(f"    {line}")
                    failed |= bool(load.errors)
                rates[mode] = 2 * args.trials / seconds * 60
                print(
                    f"  repeat {repeat} {mode:6s}: {rates[mode]:.1f} trials/min ({seconds:.1f} s)"
                )
            print(f"repeat {repeat}: loaded / quiet = {rates['loaded'] / rates['quiet']:.3f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
