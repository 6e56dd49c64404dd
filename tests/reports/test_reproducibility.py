"""The report's Reproduce section: what a rerun repeats, for each sampler (issue 33)."""

from __future__ import annotations

import jinja2
import pytest

from reports.experiment_setup import reproducibility
from reports.model import Setup
from reports.templates import REPORT

VERSIONS = {"dynl2": "0.9", "torch": "2.13.0", "optuna": "5.1.0", "scipy": "1.0"}


@pytest.mark.parametrize("sampler", ["random", "qmc", "tpe", "gp", "cmaes"])
def test_it_names_the_versions_and_what_is_not_reproduced(sampler: str) -> None:
    text = reproducibility(sampler, False, "none", VERSIONS)
    assert "(dynl2 0.9, torch 2.13.0, Optuna 5.1.0)" in text
    assert "scipy" not in text
    assert "float32 rounding" in text and "another device type" in text
    assert "the trials after them draw what they would have drawn: only the numbers shift" in text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("sampler", "reproducible", "says", "not_says"),
    [
        ("random", False, "the parameters of every trial", "start-up"),
        ("qmc", False, "the parameters of every trial (one scrambled Sobol", "start-up"),
        ("tpe", True, "the parameters of every trial", "can differ; "),
        ("tpe", False, "the first 10 trial(s)", "the parameters of every trial"),
        ("gp", False, "the first 10 trial(s)", "the parameters of every trial"),
        ("cmaes", False, "the first 1 trial(s)", "the parameters of every trial"),
    ],
)
def test_what_each_sampler_repeats(sampler, reproducible, says, not_says) -> None:
    text = reproducibility(sampler, reproducible)
    assert says in text
    assert not_says not in text


def test_model_based_samplers_say_how_to_get_more() -> None:
    assert "[search] reproducible = true fixes each trial's history" in reproducibility(
        "tpe", False
    )
    assert "[search] reproducible is not implemented for gp" in reproducibility("gp", False)
    assert "reproducible" in reproducibility("tpe", True)


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_a_pruner_s_decisions_repeat_only_with_reproducible(pruner: str) -> None:
    assert f"Which trials the {pruner} pruner stops depends" in reproducibility(
        "random", False, pruner
    )
    assert "pruner" not in reproducibility("random", False, "none")
    assert "judges each trial against that same history" in reproducibility("tpe", True, "median")


def test_the_page_shows_it_in_the_reproduce_section() -> None:
    """The Reproduce block of the report's template, rendered as reports/render.py renders it
    (autoescaped), shows the sentence; a Setup without one (an older caller) shows none."""
    block = REPORT[REPORT.index("<h3>Reproduce</h3>") :]
    block = block[: block.index("</section>")]
    template = jinja2.Environment(autoescape=True).from_string(block)
    said = Setup(data={}, model={}, train={}, reproducibility="A rerun <repeats> this.")
    html = template.render(s=said, d={"experiment": "tiny"})
    assert "<p>A rerun &lt;repeats&gt; this.</p>" in html
    html = template.render(s=Setup(data={}, model={}, train={}), d={"experiment": "tiny"})
    assert html.count("<p>") == 1
