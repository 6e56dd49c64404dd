"""Step one of a report: read the store and compute a frozen :class:`ReportData`.

Nothing here draws or writes HTML. The store is read through its public surface only
(``trials``, ``epochs``, ``evaluations``, ``get_experiment`` and Optuna's storage); the stored
experiment config is read as plain data, so this layer needs neither ``study`` nor torch.
"""

from __future__ import annotations

import math
import os
import platform
import shlex
import statistics
import warnings
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import optuna
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from reports.budget import BudgetPoint, budget_curve, crossing
from reports.model import (
    ArmDynamics,
    ArmResult,
    ArmSearch,
    ArmSensitivity,
    ArmSetup,
    Dynamics,
    EvaluationRow,
    Failure,
    ParamSeries,
    ReportData,
    Search,
    SearchSpace,
    Sensitivity,
    Setup,
    Tables,
    TrialRow,
    Verdict,
)
from reports.replicates import Replicated, replicated
from reports.stats import FEW_SEEDS, mean_ci, sentence
from reports.toml_text import to_toml
from storage import EPOCH_METRICS, Store, best_trials, split_evaluations, study_name

__all__ = ["build_report_data"]

TOP_TRIALS = 10  # rows per arm in the top-trials table
FANOVA_MAX_TRIALS = 60  # above this many complete trials, PED-ANOVA (fANOVA takes seconds)
_METRIC_DIRECTION = {"val_acc": "maximize", "val_loss": "minimize"}
_RESULT_ATTR = "dynl2_result"  # the trial attribute dynl2's workers set: complete, pruned, ...


def build_report_data(store: Store, experiment: str) -> ReportData:
    """Everything the report says about ``experiment``, computed from ``store``.

    Raises :class:`storage.ExperimentNotFound` when the experiment does not exist. An
    experiment without trials or evaluations still gives a report whose sections say so.
    """
    info = store.get_experiment(experiment)
    config: Mapping[str, Any] = info.config
    trials = store.trials(experiment)
    stored = store.evaluations(experiment)
    search_cfg = _table(config, "search")
    val_metric = str(search_cfg.get("metric", "val_acc"))
    direction = _METRIC_DIRECTION.get(val_metric, "maximize")
    arms = _arm_schemes(config, trials, stored)
    # Only the evaluations of each arm's best configuration as the search stands now: rows
    # of an earlier best (evaluated before the search ended) are left out, and said so.
    searched = {arm for arm in arms if _searched(config, arm)}
    evals, stale = split_evaluations(stored, trials, direction, searched)
    searches = _load_studies(store, experiment, trials)
    studies = {arm: study for (arm, r), study in searches.items() if r == 1}  # importances
    accuracy = _is_accuracy(config, evals)
    complete = trials[(trials["state"] == "COMPLETE") & trials["value"].notna()]
    best = best_trials(complete, direction)
    unfinished = _unfinished(store, experiment, config, searched)
    return ReportData(
        experiment=experiment,
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        accuracy=accuracy,
        verdict=_verdict(
            arms, trials, evals, accuracy, unfinished, stale, _replicates(config), searched
        ),
        setup=_setup(experiment, config, arms, trials, evals, studies),
        search=_search(
            arms,
            trials,
            val_metric,
            direction,
            searches,
            _replicates(config),
        ),
        sensitivity=_sensitivity(config, arms, complete, studies, accuracy, direction),
        dynamics=_dynamics(store, experiment, arms, best),
        tables=_tables(arms, complete, evals, direction, accuracy),
    )


# ------------------------------------------------------------------------ reading helpers


def _table(config: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = config.get(key)
    return value if isinstance(value, Mapping) else {}


def _is_range(value: object) -> bool:
    return isinstance(value, Mapping) and "low" in value and "high" in value


def _arm_schemes(
    config: Mapping[str, Any], trials: pd.DataFrame, evals: pd.DataFrame
) -> dict[str, str]:
    """Arm name -> scheme, in the config's order, then any arm only the store knows."""
    out = {
        str(name): str(body.get("scheme", "?")) if isinstance(body, Mapping) else "?"
        for name, body in _table(config, "arms").items()
    }
    for frame in (trials, evals):
        for arm in frame["arm"].unique() if not frame.empty else ():
            out.setdefault(str(arm), "?")
    return out


def _is_accuracy(config: Mapping[str, Any], evals: pd.DataFrame) -> bool:
    if not evals.empty:
        return bool(evals["test_acc"].notna().any())
    return _table(config, "data").get("dataset") != "linear"


def _searched(config: Mapping[str, Any], arm: str) -> dict[str, Mapping[str, Any]]:
    """The ranges searched in ``arm``: the train ranges, then the arm's own."""
    train = {k: v for k, v in _table(config, "train").items() if _is_range(v)}
    body = _table(_table(config, "arms"), arm)
    return {**train, **{k: v for k, v in body.items() if _is_range(v)}}


def _load_studies(
    store: Store, experiment: str, trials: pd.DataFrame
) -> dict[tuple[str, int], optuna.Study]:
    """The Optuna study of every search (arm, replicate) that has trials, each loaded once."""
    if trials.empty:
        return {}
    storage = store.optuna_storage()
    out = {}
    for arm, replicate in sorted({(str(a), int(r)) for a, r in zip(
        trials["arm"], trials["replicate"], strict=True
    )}):  # fmt: skip
        name = study_name(experiment, arm, replicate)
        try:
            out[(arm, replicate)] = optuna.load_study(study_name=name, storage=storage)
        except KeyError:  # a study the store lists but Optuna cannot load: skip it
            continue
    return out


def _finite(value: object) -> float | None:
    if value is None or value is pd.NA:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


def _replicates(config: Mapping[str, Any]) -> int:
    """``[search] replicates`` of a stored config (absent: 1, as before replicates)."""
    value = _table(config, "search").get("replicates", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def _label(arm: str, replicate: int, replicates: int) -> str:
    """A search as the report names it: the arm, or ``ARM/R`` with more than one replicate
    (as ``dynl2 status`` does, ``study.studies.label``)."""
    return arm if replicates == 1 else f"{arm}/{replicate}"


def _unfinished(
    store: Store, experiment: str, config: Mapping[str, Any], searched: set[str]
) -> tuple[str, ...]:
    """``"arm k/n"`` (``"arm/R k/n"`` with replicates) for each search short of ``n_trials``
    results (COMPLETE, PRUNED, or FAIL because the run diverged: what dynl2 counts toward the
    budget)."""
    budget = _table(config, "search").get("n_trials")
    if not isinstance(budget, int) or isinstance(budget, bool):
        return ()
    replicates = _replicates(config)
    tallies = store.trial_tallies(experiment, _RESULT_ATTR)
    out = []
    for arm in sorted(searched):
        for replicate in range(1, replicates + 1):
            tally = tallies.get((arm, replicate))
            done = 0
            if tally is not None:
                done = tally.states.get("COMPLETE", 0) + tally.states.get("PRUNED", 0)
                done += tally.results.get(("FAIL", "diverged"), 0)
            if done < budget:
                out.append(f"{_label(arm, replicate, replicates)} {done}/{budget}")
    return tuple(out)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# -------------------------------------------------------------------------------- verdict


def _verdict(
    arms: Mapping[str, str],
    trials: pd.DataFrame,
    evals: pd.DataFrame,
    accuracy: bool,
    unfinished: tuple[str, ...] = (),
    stale: pd.DataFrame | None = None,
    replicates: int = 1,
    searched: Collection[str] | None = None,
) -> Verdict:
    """The verdict: each arm's test metric, and every arm against the fixed one paired by
    (replicate, seed) (:func:`reports.replicates.replicated`). An arm with nothing to search
    trains one configuration, the same in every replicate: its evaluations (of replicate 1)
    pair with every replicate's."""
    metric = "test_acc" if accuracy else "test_loss"
    scale = 100.0 if accuracy else 1.0
    digits = 2 if accuracy else 4
    higher = accuracy
    results = []
    keyed: dict[str, dict[tuple[int, int], float]] = {}
    for arm, scheme in arms.items():
        rows = evals[evals["arm"] == arm] if not evals.empty else evals
        keyed[arm] = {
            (int(r), int(seed)): scale * float(value)
            for r, seed, value in zip(rows["replicate"], rows["seed"], rows[metric], strict=True)
            if _finite(value) is not None
        }
        values = list(keyed[arm].values())
        by_replicate: dict[int, list[float]] = {}
        for (rep, _), v in keyed[arm].items():
            by_replicate.setdefault(rep, []).append(v)
        if searched is not None and arm not in searched:  # one configuration for every search
            once = {seed: v for (r, seed), v in keyed[arm].items() if r == 1}
            keyed[arm] = {
                (r, seed): v for r in range(1, replicates + 1) for seed, v in once.items()
            }
        by_seed = {seed: v for (r, seed), v in keyed[arm].items() if r == 1}
        # With replicates the arm's interval, like the comparisons', is over its replicates'
        # means: the runs of one search are not independent draws of the scheme's level.
        means = [statistics.fmean(v) for _, v in sorted(by_replicate.items())]
        ci = (mean_ci(means) if len(means) > 1 else mean_ci(values)) if values else None
        results.append(ArmResult(arm, scheme, ci, len(rows) - len(values), by_seed, tuple(values)))
    dynamic = next((a for a, s in arms.items() if s == "dynamic"), None)
    fixed = next((a for a, s in arms.items() if s == "fixed"), None)

    compared: list[Replicated] = []
    if fixed is not None:
        others = [a for a in arms if a != fixed]
        others.sort(key=lambda a: a != dynamic)  # the dynamic arm's row first
        for arm in others:
            compared.append(
                replicated(arm, fixed, keyed[arm], keyed[fixed], higher_is_better=higher)
            )
    comparisons = [c.comparison for c in compared]
    main_r = next((c for c in compared if c.comparison.arm == dynamic), None)
    main = None if main_r is None else main_r.comparison
    sentences = tuple(_compared_sentence(c, accuracy=accuracy, digits=digits) for c in compared)

    warnings_: list[str] = []
    if evals.empty:
        text = (
            "No evaluations yet: nothing can be said about the test split until each arm's "
            "best configuration is evaluated (dynl2 evaluate EXPERIMENT)."
        )
        warnings_.append("No evaluations exist yet.")
    elif dynamic is None or fixed is None:
        missing = " and ".join(
            f'no "{s}" arm' for s, a in (("dynamic", dynamic), ("fixed", fixed)) if a is None
        )
        text = f"The experiment has {missing}, so there is no dynamic-vs-fixed comparison."
    else:
        assert main is not None
        text = sentences[comparisons.index(main)]
    if main_r is not None and 0 < main_r.seeds < FEW_SEEDS:
        warnings_.append(
            f"Only {_plural(main_r.seeds, 'paired seed')}: too few seeds to say anything "
            f"reliable (at least {FEW_SEEDS} are needed)."
        )
    if replicates > 1 and searched is not None and not evals.empty:
        unevaluated = [
            _label(arm, r, replicates)
            for arm in arms
            if arm in searched
            for r in range(1, replicates + 1)
            if not any(key[0] == r for key in keyed[arm])
        ]
        if unevaluated:
            warnings_.append(
                f"Not evaluated yet: {', '.join(unevaluated)} (of {replicates} replicates); the "
                "comparisons rest on the replicates both arms have. dynl2 evaluate adds them."
            )
    if main_r is not None and main_r.replicates == 1 and main is not None and main.diff:
        warnings_.append(
            "One search per arm: the interval covers the evaluation seeds of the two "
            "configurations this search chose, not the search's own randomness, and a rerun "
            "of the search may disagree. Repeat the search (an experiment with another "
            "[experiment] seed) before reading this as a verdict about the schemes."
        )
    if unfinished and not evals.empty:
        text = f"Provisional, the search is unfinished ({', '.join(unfinished)} trials): {text}"
        warnings_.append(
            "The search is unfinished, so each arm's best configuration may still change; "
            "finish it (dynl2 run) and evaluate again for a final verdict."
        )
    n_stale = 0 if stale is None else len(stale)
    if stale is not None and n_stale:
        arms_stale = ", ".join(sorted({str(a) for a in stale["arm"]}))
        warnings_.append(
            f"{_plural(n_stale, 'stored evaluation')} of an earlier best configuration "
            f"({arms_stale}) left out: the search found a better one since; dynl2 evaluate "
            "redoes those seeds."
        )
    for r in results:
        if r.n_failed:
            warnings_.append(
                f"{r.arm}: {_plural(r.n_failed, 'evaluation')} without a finite test metric "
                "(diverged), left out of the statistics."
            )

    def n_trials(arm: str | None) -> int:
        if arm is None or trials.empty:
            return 0
        return int(((trials["arm"] == arm) & (trials["state"] == "COMPLETE")).sum())

    if dynamic is not None and fixed is not None:
        basis = _basis(main_r, dynamic, fixed, n_trials(dynamic), n_trials(fixed), digits)
    else:
        basis = f"{_plural(len(evals), 'evaluation')} and {_plural(len(trials), 'trial')} stored."
    return Verdict(
        metric=metric,
        unit="points" if accuracy else "",
        higher_is_better=higher,
        arms=tuple(results),
        dynamic_arm=dynamic,
        fixed_arm=fixed,
        main=main,
        comparisons=tuple(comparisons),
        comparison_sentences=sentences,
        sentence=text[0].upper() + text[1:],
        basis=basis,
        warnings=tuple(warnings_),
        unfinished=unfinished,
        stale=n_stale,
        replicates=main_r.replicates if main_r is not None else 1,
        seeds=main_r.seeds if main_r is not None else 0,
        components=None if main_r is None else main_r.components,
        method=main_r.method if main_r is not None else "seeds only",
    )


def _compared_sentence(c: Replicated, *, accuracy: bool, digits: int) -> str:
    """The comparison's sentence: over seeds (one search; about these two configurations) or
    over replicates × seeds."""
    if c.method == "replicate means":
        over = f"{c.replicates} searches × {_plural(c.seeds, 'seed')}"
        return sentence(c.comparison, accuracy=accuracy, digits=digits, over=over)
    text = sentence(c.comparison, accuracy=accuracy, digits=digits)
    if c.comparison.diff is None or c.comparison.diff.half_width is None:
        return text
    return text + " This is about the two configurations one search chose; a rerun may disagree."


def _basis(
    main: Replicated | None,
    dynamic: str,
    fixed: str,
    dynamic_trials: int,
    fixed_trials: int,
    digits: int,
) -> str:
    """What the verdict rests on: searches, seeds, trials, and the two spreads."""
    trials = (
        f"{_plural(dynamic_trials, 'complete trial')} for {dynamic}, "
        f"{_plural(fixed_trials, 'complete trial')} for {fixed}"
    )
    if main is None:
        return f"Rests on no paired evaluation yet; the search: {trials}."
    parts = main.components
    spreads = []
    if parts.search_sd is not None:
        spreads.append(f"search sd {parts.search_sd:.{digits}f}")
    if parts.seed_sd is not None:
        spreads.append(f"seed sd {parts.seed_sd:.{digits}f}")
    spread = f" Spread of the difference: {', '.join(spreads)}." if spreads else ""
    return (
        f"Rests on {main.replicates} search{'' if main.replicates == 1 else 'es'} per arm "
        f"(R = {main.replicates}) × "
        f"{_plural(main.seeds, 'paired evaluation seed')} (S = {main.seeds}), "
        f"{main.comparison.n_pairs} paired runs in all; the searches: {trials} "
        f"({main.method}).{spread}"
    )


# ---------------------------------------------------------------------------------- setup


def _versions() -> dict[str, str]:
    out = {}
    for package in ("dynl2", "torch", "optuna", "scipy", "plotly"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def _setup(
    experiment: str,
    config: Mapping[str, Any],
    arms: Mapping[str, str],
    trials: pd.DataFrame,
    evals: pd.DataFrame,
    studies: Mapping[str, optuna.Study],
) -> Setup:
    search = _table(config, "search")
    n_trials = int(search.get("n_trials", 0))
    arm_setups = []
    for arm, scheme in arms.items():
        spaces = tuple(
            SearchSpace(
                name=name,
                low=float(r["low"]),
                high=float(r["high"]),
                log=bool(r.get("log", False)),
                step=None if r.get("step") is None else float(r["step"]),
            )
            for name, r in _searched(config, arm).items()
        )
        body = _table(_table(config, "arms"), arm)
        settings = {k: v for k, v in body.items() if k != "scheme" and not _is_range(v)}
        mine = trials[trials["arm"] == arm] if not trials.empty else trials
        evs = evals[evals["arm"] == arm] if not evals.empty else evals
        devices: set[str] = set()
        if arm in studies:
            for t in studies[arm].get_trials(deepcopy=False):
                resolved = t.user_attrs.get("config")
                if isinstance(resolved, Mapping) and resolved.get("device") is not None:
                    devices.add(str(resolved["device"]))
        arm_setups.append(
            ArmSetup(
                arm=arm,
                scheme=scheme,
                settings=settings,
                spaces=spaces,
                budget=n_trials if spaces else 0,
                trials=len(mine),
                trial_seconds=float(mine["duration_s"].sum()) if not mine.empty else 0.0,
                eval_seconds=float(evs["seconds"].sum()) if not evs.empty else 0.0,
                devices=tuple(sorted(devices)),
            )
        )
    hardware = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu count": str(os.cpu_count()),
        "python": platform.python_version(),
    }
    return Setup(
        data=_table(config, "data"),
        model=_table(config, "model"),
        train=_table(config, "train"),
        sampler=str(search.get("sampler", "")),
        pruner=str(search.get("pruner", "")),
        metric=str(search.get("metric", "")),
        n_trials=n_trials,
        replicates=_replicates(config),
        seeds=int(_table(config, "evaluate").get("seeds", 0)),
        arms=tuple(arm_setups),
        hardware=hardware,
        versions=_versions(),
        config_toml=to_toml(config),
        command=f"dynl2 run {shlex.quote(experiment + '.toml')}",
    )


# --------------------------------------------------------------------------------- search


def _results(study: optuna.Study) -> list[float | None]:
    """A search's results in trial order, as :mod:`reports.budget` takes them: a complete
    trial's value; None for a pruned or diverged one (a result that cannot be the best).
    Trials of a worker that died, retried elsewhere, are no result and are left out."""
    out: list[float | None] = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.state == optuna.trial.TrialState.COMPLETE and _finite(t.value) is not None:
            out.append(t.value)
        elif t.state == optuna.trial.TrialState.PRUNED or (
            t.state == optuna.trial.TrialState.FAIL
            and t.user_attrs.get(_RESULT_ATTR) == "diverged"
        ):
            out.append(None)
    return out


def _budget(
    arms: Mapping[str, str],
    studies: Mapping[tuple[str, int], optuna.Study],
    metric: str,
    direction: str,
) -> tuple[dict[str, tuple[BudgetPoint, ...]], str | None]:
    """Each arm's budget curve (over its replicates), and one sentence on the dynamic and
    fixed ones."""
    curves: dict[str, tuple[BudgetPoint, ...]] = {}
    for arm in arms:
        mine = {r: _results(study) for (a, r), study in studies.items() if a == arm}
        curve = budget_curve(mine, higher_is_better=direction == "maximize") if mine else []
        if curve:
            curves[arm] = tuple(curve)
    dynamic = next((a for a, s in arms.items() if s == "dynamic" and a in curves), None)
    fixed = next((a for a, s in arms.items() if s == "fixed" and a in curves), None)
    if dynamic is None or fixed is None:
        return curves, None
    common = sorted({p.n for p in curves[dynamic]} & {p.n for p in curves[fixed]})
    if not common:
        return curves, None
    at = max(n for n in common if n <= 10) if common[0] <= 10 else common[0]
    value = {arm: next(p.mean for p in curves[arm] if p.n == at) for arm in (dynamic, fixed)}
    where = crossing(curves[dynamic], curves[fixed])
    cross = (
        f"the curves cross at n ≈ {where}"
        if where is not None
        else f"the curves do not cross within {common[-1]} trials"
    )
    text = (
        f"At {_plural(at, 'trial')}, {dynamic}'s expected best {metric} is "
        f"{value[dynamic]:.4g} vs {fixed}'s {value[fixed]:.4g}; {cross}."
    )
    return curves, text


def _search(
    arms: Mapping[str, str],
    trials: pd.DataFrame,
    metric: str,
    direction: str,
    studies: Mapping[tuple[str, int], optuna.Study] | None = None,
    replicates: int = 1,
) -> Search:
    """The search section: per search (an arm, or ``ARM/R`` with replicates) its trials and
    best so far; per arm its budget curve."""
    if trials.empty:
        return Search(metric, direction, (), "No trials yet: the search has not started.")
    out = []
    keys = [(arm, r) for r in range(1, replicates + 1) for arm in arms]
    for arm, replicate in sorted(keys, key=lambda k: (list(arms).index(k[0]), k[1])):
        mine = trials[(trials["arm"] == arm) & (trials["replicate"] == replicate)]
        mine = mine.sort_values("number")
        if mine.empty:
            continue
        done = mine[(mine["state"] == "COMPLETE") & mine["value"].notna()]
        values = [float(v) for v in done["value"]]
        running = pd.Series(values, dtype=float)
        best = running.cummax() if direction == "maximize" else running.cummin()
        failed = mine[mine["state"] == "FAIL"]
        failures = tuple(
            Failure(int(n), str(r) if r else "no reason recorded")
            for n, r in zip(failed["number"], failed["fail_reason"], strict=True)
        )
        out.append(
            ArmSearch(
                arm=_label(arm, replicate, replicates),
                numbers=tuple(int(n) for n in done["number"]),
                values=tuple(values),
                best_so_far=tuple(float(v) for v in best),
                counts={str(k): int(v) for k, v in mine["state"].value_counts().items()},
                failures=failures,
            )
        )
    message = None
    if not any(a.numbers for a in out):
        message = "No complete trial yet: nothing to chart."
    curves, said = _budget(arms, studies or {}, metric, direction)
    return Search(metric, direction, tuple(out), message, curves, said)


# ---------------------------------------------------------------------------- sensitivity


def _importances(
    study: optuna.Study | None, n_complete: int, n_params: int
) -> tuple[tuple[tuple[str, float], ...], str]:
    if study is None or n_complete < 2 or n_params < 1:
        return (), "not enough trials (needs 2 complete trials and a searched parameter)"
    if n_complete <= FANOVA_MAX_TRIALS:
        evaluator: Any = optuna.importance.FanovaImportanceEvaluator(seed=0)
        name = "fANOVA"
    else:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        name = "PED-ANOVA"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as exc:  # optuna raises several kinds for degenerate studies
        text = str(exc).strip().splitlines()
        return (), f"not enough trials ({text[0] if text else type(exc).__name__})"
    pairs = tuple((str(k), float(v)) for k, v in got.items())
    return pairs, f"{name} over {_plural(n_complete, 'complete trial')}"


def _sensitivity(
    config: Mapping[str, Any],
    arms: Mapping[str, str],
    complete: pd.DataFrame,
    studies: Mapping[str, optuna.Study],
    accuracy: bool,
    direction: str,
) -> Sensitivity:
    out = []
    for arm, scheme in arms.items():
        rows = complete[complete["arm"] == arm]
        if rows.empty:
            continue
        values = [float(v) for v in rows["value"]]
        params = list(rows["params"])
        series = []
        for name, r in _searched(config, arm).items():
            pts = [
                (float(p[name]), v)
                for p, v in zip(params, values, strict=True)
                if isinstance(p, Mapping) and isinstance(p.get(name), int | float)
            ]
            series.append(
                ParamSeries(
                    name,
                    bool(r.get("log", False)),
                    tuple(x for x, _ in pts),
                    tuple(y for _, y in pts),
                )
            )
        alpha_floor = None
        by_name = {s.name: s for s in series}
        if scheme == "dynamic" and "alpha" in by_name and "floor" in by_name:
            triples = [
                (float(p["alpha"]), float(p["floor"]), v)
                for p, v in zip(params, values, strict=True)
                if isinstance(p, Mapping) and "alpha" in p and "floor" in p
            ]
            alpha_floor = (
                tuple(t[0] for t in triples),
                tuple(t[1] for t in triples),
                tuple(t[2] for t in triples),
            )
        best = max(values) if direction == "maximize" else min(values)
        if accuracy:
            tolerance, tol_text = 0.01, "0.01 (1 point)"
        else:
            tolerance, tol_text = 0.01 * abs(best), "1% of the best value"
        near = sum(abs(v - best) <= tolerance + 1e-12 for v in values) / len(values)
        importances, note = _importances(studies.get(arm), len(values), len(series))
        out.append(
            ArmSensitivity(
                arm=arm,
                n_complete=len(values),
                params=tuple(series),
                alpha_floor=alpha_floor,
                near_best_share=near,
                near_best_tolerance=tol_text,
                importances=importances,
                importance_note=note,
            )
        )
    message = None if out else "No complete trial yet: no sensitivity to show."
    return Sensitivity(tuple(out), message)


# ------------------------------------------------------------------------------- dynamics


def _dynamics(
    store: Store, experiment: str, arms: Mapping[str, str], best: Mapping[str, pd.Series]
) -> Dynamics:
    if not best:
        return Dynamics((), "No complete trial yet: no training curves.")
    epochs = store.epochs(experiment)
    out = []
    for arm, scheme in arms.items():
        if arm not in best:
            continue
        trial = best[arm]
        rows = epochs[epochs["trial_id"] == trial["trial_id"]].sort_values("epoch")
        series = {
            m: tuple(float("nan") if _finite(v) is None else float(v) for v in rows[m])
            for m in EPOCH_METRICS
        }
        out.append(
            ArmDynamics(
                arm=arm,
                scheme=scheme,
                number=int(trial["number"]),
                value=float(trial["value"]),
                epochs=tuple(int(e) for e in rows["epoch"]),
                series=series,
            )
        )
    message = None
    if not any(a.epochs for a in out):
        message = "The best trials have no recorded epochs."
    return Dynamics(tuple(out), message)


# --------------------------------------------------------------------------------- tables


def _tables(
    arms: Mapping[str, str],
    complete: pd.DataFrame,
    evals: pd.DataFrame,
    direction: str,
    accuracy: bool,
) -> Tables:
    top: list[TrialRow] = []
    for arm in arms:
        rows = complete[complete["arm"] == arm].sort_values(
            ["value", "number"], ascending=[direction == "minimize", True], kind="stable"
        )
        for _, r in rows.head(TOP_TRIALS).iterrows():
            best_epoch = r["best_epoch"]
            top.append(
                TrialRow(
                    arm=arm,
                    number=int(r["number"]),
                    value=_finite(r["value"]),
                    params=dict(r["params"]) if isinstance(r["params"], Mapping) else {},
                    best_epoch=None if pd.isna(best_epoch) else int(best_epoch),
                    duration_s=_finite(r["duration_s"]),
                )
            )
    metric, scale = ("test_acc", 100.0) if accuracy else ("test_loss", 1.0)
    rows_out = []
    if not evals.empty:
        ordered = evals.sort_values(["arm", "seed"])
        for arm, seed, value, loss, seconds in zip(
            ordered["arm"],
            ordered["seed"],
            ordered[metric],
            ordered["test_loss"],
            ordered["seconds"],
            strict=True,
        ):
            m = _finite(value)
            rows_out.append(
                EvaluationRow(
                    str(arm),
                    int(seed),
                    None if m is None else scale * m,
                    _finite(loss),
                    _finite(seconds),
                )
            )
    parts = []
    if not top:
        parts.append("no complete trial yet")
    if not rows_out:
        parts.append("no evaluations yet")
    message = ("; ".join(parts).capitalize() + ".") if parts else None
    return Tables(tuple(top), tuple(rows_out), message)
