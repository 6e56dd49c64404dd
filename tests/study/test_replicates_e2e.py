"""Issue 11, end to end: search replicates on a cheap dataset, with known answers.

Four arms on digits: ``dynamic``, ``fixed``, ``twin`` (the fixed scheme with the same range as
``fixed``) and ``handicapped`` (the fixed scheme with λ in [1, 10], far too strong). Three
replicates: each arm is searched three times, each search's best evaluated on the same seeds.
The handicapped arm must be reported significantly worse than fixed over the replicates; the
twin, the same scheme with the same range, must not be reported different. Then the stored
experiment is run again with one more replicate (added, nothing redone), and with fewer (or
another setting): refused."""

from __future__ import annotations

import json

import optuna
import pytest
import sqlalchemy as sa

import storage
from storage import migrations
from study.cli import dispatch as cli

from ..reliability.helpers import run_cli
from ..storage.backends import BACKENDS, empty_url
from ..tiny import ARM_BLOCKS, tiny_config, write_tiny

pytestmark = pytest.mark.slow

# The tiny study (tests/tiny.py) with lr fixed, so that each arm searches its strength alone,
# and two more arms: the fixed scheme again with the same range, and with a range far too strong.
_TWIN = ARM_BLOCKS["fixed"].replace("[arms.fixed]", "[arms.twin]")
_HANDICAPPED = (
    ARM_BLOCKS["fixed"]
    .replace("[arms.fixed]", "[arms.handicapped]")
    .replace("low = 1e-6, high = 1e-1", "low = 1.0, high = 10.0")
)
ARMS = ("dynamic", "fixed", "handicapped", "twin")


def _write(tmp_path, replicates=3, seeds=4, **changes):
    text = tiny_config("truth", epochs=8, n_trials=3, seeds=seeds, arms=("dynamic", "fixed"))
    text = text.replace("lr = { low = 1e-3, high = 3e-2, log = true }", "lr = 0.02")
    text = text.replace("n_trials = 3\n", f"n_trials = 3\nreplicates = {replicates}\n")
    text += _TWIN + _HANDICAPPED
    for old, new in changes.items():
        text = text.replace(old, new)
    path = tmp_path / "truth.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """The experiment, run once with three replicates by two worker processes (module-wide:
    it trains for a while)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = tmp_path_factory.mktemp("replicates")
    url = f"sqlite:///{tmp / 'truth.db'}"
    config = _write(tmp)
    code = cli.main(["run", str(config), "--storage", url, "--quiet", "--workers", "2"])
    assert code == 0
    return tmp, url


def _summary(url):
    with storage.open(url, create=False) as store:
        return store.reports("truth").iloc[0]["summary"]


def test_each_replicate_is_its_own_study_and_its_own_evaluations(ran):
    _, url = ran
    with storage.open(url, create=False) as store:
        names = {s.study_name for s in store.optuna_storage().get_all_studies()}
        trials = store.trials("truth")
        evals = store.evaluations("truth")
    assert names == {f"truth/{arm}{'' if r == 1 else f'/{r}'}" for arm in ARMS for r in (1, 2, 3)}
    results = trials[trials["state"].isin(["COMPLETE", "PRUNED"])]
    assert results.groupby(["arm", "replicate"]).size().to_dict() == {
        (arm, r): 3 for arm in ARMS for r in (1, 2, 3)
    }
    assert evals.groupby(["arm", "replicate"]).size().to_dict() == {
        (arm, r): 4 for arm in ARMS for r in (1, 2, 3)
    }
    # each replicate's own sampler: the dynamic arm's searches drew different alphas
    alphas = {
        r: tuple(
            p["alpha"]
            for p in trials[(trials["arm"] == "dynamic") & (trials["replicate"] == r)]["params"]
        )
        for r in (1, 2, 3)
    }
    assert len(set(alphas.values())) == 3


def test_the_handicapped_arm_loses_and_the_twin_does_not(ran):
    summary = _summary(ran[1])
    assert summary["replicates"] == 3 and summary["seeds"] == 4
    assert summary["method"] == "replicate means"
    by_arm = {c["arm"]: c for c in summary["comparisons"]}
    handicapped = by_arm["handicapped"]
    assert handicapped["significant"] and handicapped["winner"] == "fixed", handicapped
    assert handicapped["diff"]["n"] == 3  # the interval is over the three replicates
    twin = by_arm["twin"]
    assert not twin["significant"], twin
    components = summary["main"]["components"]
    assert components["search_sd"] is not None and components["seed_sd"] is not None
    assert set(summary["budget_curves"]) == set(ARMS)
    assert all(p["low"] is not None for p in summary["budget_curves"]["dynamic"])  # a band


def test_status_trials_and_report_show_the_replicates(ran, capsys):
    _, url = ran
    code, out, err = run_cli(["status", "truth", "--storage", url], capsys)
    assert code == 0, err
    for arm in ARMS:
        for r in (1, 2, 3):
            assert f"{arm}/{r} " in out, out
    code, out, err = run_cli(["trials", "truth", "--format", "json", "--storage", url], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert {row["replicate"] for row in rows} == {1, 2, 3}
    code, out, err = run_cli(["trials", "truth", "--format", "csv", "--storage", url], capsys)
    assert code == 0 and out.splitlines()[0].split(",")[:2] == ["arm", "replicate"]


def test_raising_replicates_adds_one_search_and_lowering_is_refused(ran, capsys):
    tmp, url = ran
    with storage.open(url, create=False) as store:
        before = store.trials("truth").set_index("trial_id")["datetime_complete"]
        evals_before = len(store.evaluations("truth"))
    lowered = _write(tmp, replicates=2)
    code, _, err = run_cli(["run", str(lowered), "--storage", url, "--quiet"], capsys)
    assert code == 2 and "search.replicates" in err and "lowered" in err
    other = _write(tmp, replicates=4, **{"epochs = 8": "epochs = 9"})
    code, _, err = run_cli(["run", str(other), "--storage", url, "--quiet"], capsys)
    assert code == 2 and "train.epochs" in err
    raised = _write(tmp, replicates=4)
    code, _, err = run_cli(["run", str(raised), "--storage", url, "--quiet"], capsys)
    assert code == 0, err
    with storage.open(url, create=False) as store:
        trials = store.trials("truth")
        evals = store.evaluations("truth")
        config = store.get_experiment("truth").config
    assert config["search"]["replicates"] == 4
    assert set(trials["replicate"]) == {1, 2, 3, 4}
    kept = trials.set_index("trial_id")["datetime_complete"]
    assert (kept[before.index] == before).all()  # nothing of replicates 1-3 trained again
    assert len(trials[trials["replicate"] == 4]) == len(ARMS) * 3
    assert len(evals) == evals_before + len(ARMS) * 4
    assert _summary(url)["replicates"] == 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_store_of_the_previous_schema_reads_reports_and_resumes_as_one_replicate(
    backend, tmp_path, capsys
):
    """A store as the previous dynl2 left it (its tables before the replicate column, no
    dynl2_alembic_version; made by running a study, then taking the tables back): the verbs
    that read show it as one replicate without writing; ``run`` with more seeds resumes it
    (upgrading it) and reports it as R = 1."""
    config = write_tiny(
        tmp_path, "old", epochs=2, n_trials=2, seeds=2, arms=("dynamic", "fixed", "none")
    )
    with empty_url(backend, tmp_path) as url:
        assert cli.main(["run", str(config), "--storage", url, "--quiet"]) == 0
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        try:
            with migrations.transaction(url, engine) as connection:
                migrations.downgrade(connection, "0001")
                connection.execute(sa.text("DROP TABLE dynl2_alembic_version"))
            columns = {c["name"] for c in sa.inspect(engine).get_columns("dynl2_evaluations")}
        finally:
            engine.dispose()
        assert "replicate" not in columns  # the previous schema
        capsys.readouterr()
        code, out, err = run_cli(["trials", "old", "--format", "json", "--storage", url], capsys)
        assert code == 0, err
        assert {row["replicate"] for row in json.loads(out)} == {1}
        code, out, err = run_cli(["status", "old", "--storage", url], capsys)
        assert code == 0 and "2 runs" in out, (out, err)
        more = config.read_text().replace("seeds = 2", "seeds = 3")
        config.write_text(more)
        code, _, err = run_cli(["run", str(config), "--storage", url, "--quiet"], capsys)
        assert code == 0, err
        with storage.open(url, create=False) as store:
            evals = store.evaluations("old")
            summary = store.reports("old").iloc[0]["summary"]
        assert set(evals["replicate"]) == {1} and len(evals) == 3 * 3  # three arms, three seeds
        assert summary["replicates"] == 1 and summary["method"] == "seeds only"


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_replicates_on_each_backend(backend, tmp_path, capsys):
    """The replicate machinery (study names, claims across replicates, evaluations keyed by
    replicate, the verdict over replicate means) on SQLite and PostgreSQL alike."""
    config = write_tiny(
        tmp_path, "two", epochs=2, n_trials=2, seeds=2, arms=("dynamic", "fixed", "none")
    )
    config.write_text(config.read_text().replace("n_trials = 2", "n_trials = 2\nreplicates = 2"))
    with empty_url(backend, tmp_path) as url:
        code, _, err = run_cli(["run", str(config), "--storage", url, "--quiet"], capsys)
        assert code == 0, err
        with storage.open(url, create=False) as store:
            names = {s.study_name for s in store.optuna_storage().get_all_studies()}
            evals = store.evaluations("two")
            summary = store.reports("two").iloc[0]["summary"]
    assert names == {f"two/{a}{s}" for a in ("dynamic", "fixed", "none") for s in ("", "/2")}
    # the searched arms per replicate; "none" searches lr too
    assert evals.groupby(["arm", "replicate"]).size().to_dict() == {
        (a, r): 2 for a in ("dynamic", "fixed", "none") for r in (1, 2)
    }
    assert summary["replicates"] == 2 and summary["method"] == "replicate means"
