"""The two readings of the dynamic scheme against each other and against fixed λ, per
experiment of a stored suite and pooled: the numbers of ``docs/findings.md``; run by hand.

    python docs/readings.py SUITE [--storage URL] [--literal ARM] [--generous ARM]

The report compares every arm with the fixed one; this script adds the comparison the report
does not make, the literal reading (``alpha = "lr"``, default arm ``dynamic_as_written``)
against the generous one (α searched, default arm ``dynamic``), beside each against ``fixed``.
Each difference is paired by (replicate, seed) over the evaluations of each search's current
best configuration, exactly as the verdict pairs them (:func:`reports.replicates.replicated`),
and decided against the experiment's ``[evaluate] margin`` (:func:`reports.decision`); the
pooled line is the suite report's random-effects estimate (:func:`reports.meta.pool`). Every
interval is cut at ±100 points, what a difference of accuracies can be, and a cut one is marked
† as in the reports (the p value is the uncut t test's). It only reads the store.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the checkout: runs without dynl2 installed
sys.path.insert(0, str(ROOT))

import storage  # noqa: E402
from reports.decision import decide_comparison  # noqa: E402
from reports.meta import pool, standard_error  # noqa: E402
from reports.replicates import replicated  # noqa: E402
from reports.stats import ACCURACY_DIFFERENCE, CUT, signed  # noqa: E402
from study.api.experiments import storage_url  # noqa: E402
from study.errors import StudyError  # noqa: E402
from study.run.runs import stored_experiment  # noqa: E402


def values(
    store: storage.Store, name: str
) -> tuple[dict[str, dict[tuple[int, int], float]], float | None]:
    """Each arm's test accuracy (points) keyed (replicate, seed), over the current
    evaluations, and the experiment's margin."""
    config = stored_experiment(store, name)
    searched = {arm.name for arm in config.arms if config.searched(arm.name)}
    evals, _ = storage.split_evaluations(
        store.evaluations(name), store.trials(name), config.direction, searched
    )
    out: dict[str, dict[tuple[int, int], float]] = {}
    for arm, rep, seed, acc in zip(
        evals["arm"], evals["replicate"], evals["seed"], evals["test_acc"], strict=True
    ):
        if acc == acc:  # not NaN: a diverged run is left out, as in the verdict
            out.setdefault(str(arm), {})[(int(rep), int(seed))] = 100.0 * float(acc)
    return out, config.evaluate.margin


def pooled_line(arm: str, base: str, rows: list[tuple[float, float, int]]) -> tuple[str, bool]:
    """The pooled ``arm − base`` line over (mean, standard error, degrees of freedom) rows, as
    the suite report pools them, and whether its interval is cut at ±100 points."""
    p = pool([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], ACCURACY_DIFFERENCE)
    line = (
        f"pooled {arm} − {base} over {p.k}: {signed(p.mean, 2)} points, 95% CI "
        f"[{signed(p.low, 2)}, {signed(p.high, 2)}]{CUT if p.truncated else ''}, "
        f"p = {p.p_value:.3f}"
    )
    return line, p.truncated


def main() -> int:
    try:
        return compare()
    except (StudyError, storage.StorageError) as exc:  # a missing store or suite: one line
        print(f"readings: {exc}", file=sys.stderr)
        return 2


def compare() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite")
    parser.add_argument("--storage", metavar="URL", help="database URL (default: $DYNL2_STORAGE)")
    parser.add_argument("--literal", default="dynamic_as_written")
    parser.add_argument("--generous", default="dynamic")
    args = parser.parse_args()
    pairs = ((args.literal, "fixed"), (args.literal, args.generous), (args.generous, "fixed"))
    pooled: dict[tuple[str, str], list[tuple[float, float, int]]] = {p: [] for p in pairs}
    any_cut = False
    with storage.open(storage_url(args.storage), create=False) as store:
        members = [m.experiment for m in store.suite(args.suite).members]
        for name in members:
            arms, margin = values(store, name)
            cells = []
            for arm, base in pairs:
                if arm not in arms or base not in arms:
                    cells.append(f"{arm} − {base}: –")
                    continue
                c = replicated(arm, base, arms[arm], arms[base], higher_is_better=True,
                               bounds=ACCURACY_DIFFERENCE)  # fmt: skip
                d = decide_comparison(c, higher_is_better=True, margin=margin)
                diff = c.comparison.diff
                assert diff is not None
                interval = (
                    "no interval"
                    if diff.low is None or diff.high is None
                    else f"[{signed(diff.low, 2)}, {signed(diff.high, 2)}]"
                    + (CUT if diff.truncated else "")
                )
                any_cut |= diff.truncated
                shown = f"{signed(diff.mean, 2)} {interval} {d.decision}"
                cells.append(f"{arm} − {base} {shown} (R = {c.replicates})")
                if diff.half_width is not None and diff.half_width > 0:
                    pooled[(arm, base)].append((diff.mean, standard_error(diff), diff.n - 1))
            print(f"{name}: " + "; ".join(cells))
    for (arm, base), rows in pooled.items():
        if not rows:
            print(f"pooled {arm} − {base}: nothing to pool")
            continue
        line, cut = pooled_line(arm, base, rows)
        print(line)
        any_cut |= cut
    if any_cut:
        print(f"{CUT} the 95% interval reached past ±100 points and is shown cut there.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
