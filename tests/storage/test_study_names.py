"""Issue 11: one Optuna study per search, ``EXP/ARM`` for replicate 1 (the name an arm's study
always had) and ``EXP/ARM/R`` for replicate R >= 2; anything else is not dynl2's."""

from __future__ import annotations

import pytest

from storage import InvalidRecord, split_study_name, study_name


@pytest.mark.parametrize(
    ("experiment", "arm", "replicate", "name"),
    [("e", "dynamic", 1, "e/dynamic"), ("e", "fixed", 2, "e/fixed/2"), ("x", "a", 100, "x/a/100")],
)
def test_names_and_back(experiment, arm, replicate, name):
    assert study_name(experiment, arm, replicate) == name
    assert split_study_name(name) == (experiment, arm, replicate)


def test_replicate_one_keeps_the_old_name():
    assert study_name("e", "dynamic") == study_name("e", "dynamic", 1) == "e/dynamic"


@pytest.mark.parametrize(
    "name", ["e", "e/", "/a", "e/a/1", "e/a/0", "e/a/02", "e/a/x", "e/a/-2", "e/a/2/3", "e//2",
             "e/a/١٢", "e/a/1234567"],
)  # fmt: skip
def test_other_names_are_not_dynl2_studies(name):
    assert split_study_name(name) is None


@pytest.mark.parametrize("replicate", [0, -1, True, 2.0, "2"])
def test_a_bad_replicate_is_refused(replicate):
    with pytest.raises(InvalidRecord, match="replicate"):
        study_name("e", "a", replicate)
