"""``dynl2 report`` / ``reports`` / ``report --from-store`` / ``report --compare``."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from pathlib import Path

import pytest

import storage
from study.cli.dispatch import main

from .test_run_e2e import write_config


def dynl2(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``dynl2 ARGS`` run in ``cwd``, in this process (``study.cli.main``, what the console
    script calls): these tests are about the reports, not about a process's start; the verbs'
    output as real processes is tests/study/test_cli_output.py's. The torch threads a
    one-worker run sets (as a worker process's) are put back."""
    import torch

    threads = torch.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    try:
        with (
            contextlib.chdir(cwd),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            code = main(list(args))
    finally:
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["dynl2", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{tmp / 'r.db'}"
    for name in ("r1", "r2"):
        done = dynl2(
            "run", str(write_config(tmp, name=name)), "--quiet", "--storage", url, cwd=tmp
        )
        assert done.returncode == 0, done.stderr
        assert f"dynl2-workspace/reports/{name}.html" in done.stdout  # run ends with a report
    return tmp, url


@pytest.mark.slow
def test_report_writes_records_and_re_exports(experiment, tmp_path):
    tmp, url = experiment
    out = tmp_path / "sub" / "r1.html"
    made = dynl2("report", "r1", "-o", str(out), "--storage", url, cwd=tmp)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == str(out.resolve())
    html = out.read_text(encoding="utf-8")
    assert 'id="verdict"' in html and "r1" in html
    assert [p.name for p in out.parent.iterdir()] == ["r1.html"]  # no temporary files left
    with storage.open(url, create=False) as store:
        listed = store.reports("r1")
        assert len(listed) == 2  # the one `run` wrote, and this one
        assert listed.iloc[0]["path"] == str(out.resolve())
        assert "sentence" in listed.iloc[0]["summary"]
    again = tmp_path / "again.html"
    exported = dynl2("report", "r1", "--from-store", "-o", str(again), "--storage", url, cwd=tmp)
    assert exported.returncode == 0, exported.stderr
    assert again.read_text(encoding="utf-8") == html  # recovered from the database alone
    listing = dynl2("reports", "--storage", url, cwd=tmp)
    assert listing.returncode == 0 and listing.stdout.count("r1") >= 2


@pytest.mark.slow
def test_compare_page_has_one_verdict_row_per_experiment(experiment, tmp_path):
    tmp, url = experiment
    out = tmp_path / "cmp.html"
    done = dynl2("report", "--compare", "r1", "r2", "-o", str(out), "--storage", url, cwd=tmp)
    assert done.returncode == 0, done.stderr
    html = out.read_text(encoding="utf-8")
    assert "r1" in html and "r2" in html


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["report", "nope"], "nope"),
        (["report", "r1", "r2"], "--compare"),
        (["report", "--compare", "r1"], "at least two"),
        (["report", "--compare", "--from-store", "r1", "r2"], "cannot be combined"),
        (["reports", "nope"], "nope"),
    ],
)
def test_bad_report_input_is_one_line_exit_2(experiment, tmp_path, args, fragment):
    _, url = experiment
    with storage.open(url, create=False) as store:
        before = json.dumps(store.reports().astype(str).values.tolist())
    proc = dynl2(*args, "--storage", url, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
    with storage.open(url, create=False) as store:
        assert json.dumps(store.reports().astype(str).values.tolist()) == before
    assert not (tmp_path / "dynl2-workspace").exists()
