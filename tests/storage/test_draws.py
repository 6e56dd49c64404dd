"""``storage.draws``: a trial's place in its search, retries not counted."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from storage import (
    RETRY_OF,
    draw_count,
    draws_of,
    numbered_draws,
    retry_of,
    study_draws,
    trial_draws,
)


def trial(number: int, retries: int | None = None) -> SimpleNamespace:
    attrs = {} if retries is None else {RETRY_OF: retries, "retry_history": [retries]}
    return SimpleNamespace(number=number, system_attrs=attrs)


def test_without_retries_a_draw_is_the_number() -> None:
    assert trial_draws([trial(k) for k in (2, 0, 1)]) == {0: 0, 1: 1, 2: 2}
    assert trial_draws([]) == {} and draw_count({}) == 0


def test_a_retry_has_the_draw_of_the_first_trial_of_its_chain() -> None:
    """Trial 1 handed back, retried as 3 (after 2 was drawn); 3 handed back too, retried as
    5: Optuna's callback names the chain's first (1) in both."""
    trials = [trial(0), trial(1), trial(2), trial(3, 1), trial(4), trial(5, 1), trial(6)]
    table = trial_draws(trials)
    assert table == {0: 0, 1: 1, 2: 2, 3: 1, 4: 3, 5: 1, 6: 4}
    assert draw_count(table) == 5
    pairs = [(t.number, retry_of(t.system_attrs)) for t in trials]
    assert numbered_draws(pairs) == table


def test_a_retry_of_a_trial_not_there_is_a_new_draw() -> None:
    assert trial_draws([trial(0), trial(2, 1), trial(3)]) == {0: 0, 2: 1, 3: 2}


@pytest.mark.parametrize("value", ["1", 1.0, True, None, [1]])
def test_only_an_integer_names_a_retry(value: object) -> None:
    assert retry_of({RETRY_OF: value}) is None
    assert retry_of({}) is None
    assert retry_of({RETRY_OF: 4}) == 4


def test_draws_of_new_trials_follow_the_seen_ones_in_number_order() -> None:
    """A claim that pops the retry (trial 3, of draw 1) and creates trials 5 and 4."""
    seen = [trial(0), trial(1), trial(2), trial(3, 1)]
    assert draws_of(seen, [3, 5, 4]) == [1, 4, 3]
    assert draws_of(seen, [2]) == [2]


def test_study_draws_counts_each_study_on_its_own() -> None:
    rows = [(7, 0, None), (9, 0, None), (7, 1, None), (7, 2, 1), (9, 1, None), (7, 3, None)]
    assert study_draws(rows) == {7: {0: 0, 1: 1, 2: 1, 3: 2}, 9: {0: 0, 1: 1}}
