"""The setup section: what was run (the config, as the study layer parsed it), what each arm
searched and cost, and the host and package versions the report was made with."""

from __future__ import annotations

import json
import os
import platform
import shlex
from collections.abc import Mapping, Sequence
from importlib import metadata

import optuna
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from reports.model import ArmSetup, SearchSpace, Setup
from reports.spec import ExperimentSpec, RangeSpec
from reports.toml_text import to_toml

__all__ = ["build_setup", "reproducibility"]


def build_setup(
    config: ExperimentSpec,
    arms: Mapping[str, str],
    spaces: Mapping[str, Mapping[str, RangeSpec]],
    trials: pd.DataFrame,
    evals: pd.DataFrame,
    studies: Mapping[str, optuna.Study],
) -> Setup:
    """``arms`` (arm -> scheme) and ``spaces`` (arm -> searched ranges) cover the arms only
    the store knows too; such an arm has no fixed settings to show."""
    n_trials = config.search.n_trials
    fixed = {arm.name: arm.fixed for arm in config.arms}
    arm_setups = []
    for arm, scheme in arms.items():
        searched = tuple(
            SearchSpace(
                name=name,
                low=float(r.low),
                high=float(r.high),
                log=r.log,
                step=None if r.step is None else float(r.step),
            )
            for name, r in spaces[arm].items()
        )
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
                settings=dict(fixed.get(arm, {})),
                spaces=searched,
                budget=n_trials if searched else 0,
                trials=len(mine),
                trial_seconds=float(mine["duration_s"].sum()) if not mine.empty else 0.0,
                eval_seconds=float(evs["seconds"].sum()) if not evs.empty else 0.0,
                devices=tuple(sorted(devices)),
                reading=reading(scheme, fixed.get(arm, {}), [sp.name for sp in searched]),
            )
        )
    hardware = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu count": str(os.cpu_count()),
        "python": platform.python_version(),
    }
    # Plain data shaped like the TOML file, keys sorted at every level as the store keeps it
    # (JSON with sorted keys), so the page shows the config exactly as the store holds it.
    shown = json.loads(json.dumps(config.to_dict(), sort_keys=True))
    versions = _versions()
    return Setup(
        data=shown["data"],
        model=shown["model"],
        train=shown["train"],
        sampler=config.search.sampler,
        pruner=config.search.pruner,
        metric=config.search.metric,
        n_trials=n_trials,
        replicates=config.search.replicates,
        seeds=config.evaluate.seeds,
        arms=tuple(arm_setups),
        hardware=hardware,
        versions=versions,
        config_toml=to_toml(shown),
        command=f"dynl2 run {shlex.quote(config.name + '.toml')}",
        reproducibility=reproducibility(
            config.search.sampler,
            bool(getattr(config.search, "reproducible", False)),  # absent before issue 33
            config.search.pruner,
            versions,
        ),
    )


# Trials each model-based sampler draws at random before it models (Optuna's defaults, which
# study/search/samplers.py keeps): their parameters repeat in any rerun.
STARTUP = {"tpe": 10, "gp": 10, "cmaes": 1}


def reproducibility(
    sampler: str,
    reproducible: bool,
    pruner: str = "none",
    versions: Mapping[str, str] | None = None,
) -> str:
    """What a rerun of the config reproduces exactly and what it does not, for ``sampler``
    (``[search] reproducible`` and the pruner as given), with the versions that made the
    report (dynl2, torch, Optuna). One paragraph, for the report's Reproduce section."""
    versions = versions or {}
    made = ", ".join(
        f"{name} {versions[key]}"
        for key, name in (("dynl2", "dynl2"), ("torch", "torch"), ("optuna", "Optuna"))
        if key in versions
    )
    said = [
        f"A rerun with the same versions ({made})" if made else "A rerun with the same versions",
        " reproduces, with any number of workers, any --batch and after a resume: ",
    ]
    by_number = (
        "the k-th trial of each search (arm and replicate; trials handed back at a stop not "
        "counted) draws from a seed made of the experiment seed, the replicate and k"
    )
    if sampler == "random" or (sampler == "tpe" and reproducible):
        said.append(f"the parameters of every trial ({by_number}")
        if sampler == "tpe":
            said.append(
                ", and TPE models only the trials a fixed lag below k, waiting for them to "
                "end: [search] reproducible"
            )
        said.append(").")
    elif sampler == "qmc":
        said.append(
            "the parameters of every trial (one scrambled Sobol sequence per search, its points "
            "taken in the order trials are drawn)."
        )
    else:
        startup = STARTUP.get(sampler, 0)
        said.append(
            f"the parameters of the first {startup} trial(s) of each search, the sampler's "
            f"random start-up ({by_number}). Later ones are proposed from the trials that have "
            "ended when they are asked, so with more than one worker, another --batch or "
            "other timings they and the best configurations can differ"
        )
        said.append(
            "; [search] reproducible = true fixes each trial's history (slower)."
            if sampler == "tpe"
            else f"; [search] reproducible is not implemented for {sampler}."
        )
    if pruner != "none" and not reproducible:
        said.append(
            f" Which trials the {pruner} pruner stops depends on the trials that have ended "
            "before them, so it can differ between runs with more than one worker or another "
            "--batch."
        )
    elif pruner != "none":
        said.append(f" The {pruner} pruner judges each trial against that same history.")
    said.append(
        " Each trial's and each evaluation's metrics are a function of its parameters and "
        "seed, alone or in a fused group of any size and position, up to float32 rounding "
        "(about 1e-6 relative: a fused group sums the same products in another order), so an "
        "accuracy can differ by one borderline example and, rarely, a near tie for the best "
        "configuration go the other way. A stopped or crashed run retrains its interrupted "
        "trials under new trial numbers, with their parameters and trainer seeds, and the "
        "trials after them draw what they would have drawn: only the numbers shift (a trial "
        "interrupted twice is not retried again, and a new draw takes its place). Not "
        "reproduced: results on another device type, or with other torch or Optuna versions."
    )
    return "".join(said)


DYNAMIC_SCHEMES = ("dynamic", "dynamic_l1")
LITERAL = (
    "the source's literal reading: α is the learning rate, λ = max(½·lr / L, floor), so the "
    "scheme adds no hyperparameter of its own"
)
GENEROUS = "the generous reading: α is a hyperparameter of its own, searched"


def reading(scheme: str, settings: Mapping[str, object], searched: Sequence[str]) -> str | None:
    """Which reading of the dynamic scheme's source an arm tests: the literal one (``alpha =
    "lr"``: the source's code uses the learning rate for α), the generous one (α searched), or
    α held at a number; None for any other scheme."""
    if scheme not in DYNAMIC_SCHEMES:
        return None
    if settings.get("alpha") == "lr":
        return LITERAL
    if "alpha" in searched:
        return GENEROUS
    alpha = settings.get("alpha")
    held = "its default" if alpha is None else str(alpha)
    return f"α held at {held}, neither searched nor the learning rate"


def _versions() -> dict[str, str]:
    out = {}
    for package in ("dynl2", "torch", "optuna", "scipy", "plotly"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out
