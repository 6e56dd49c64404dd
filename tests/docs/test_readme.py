"""The README is the front door and docs/ the house: the README stays short, no link or path in
either leads out of the repository, every relative link resolves (anchors included, the same on
GitHub and in the site), every page is in the site's nav, and what the README shows works —
its two opening commands are the ones it promises, the demo is the study it describes, and every
command of its tour and every Python block in it runs, against one tiny experiment trained once.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
import unicodedata
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
TEXTS = [README, *sorted(DOCS.glob("*.md"))]
MAX_README_LINES = 160
# The README opens with these two commands: the demo, and the suite as CI runs it.
OPENING = (
    "pip install -e . && dynl2 demo",
    "pip install -e '.[dev]' && ruff check . && ruff format --check . && mypy && pytest",
)
TOUR_VERBS = {"run", "status", "trials", "sql", "report", "suite", "plan", "serve"}


def _ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ---------------------------------------------------------------------------------------------
# Reading Markdown


def code_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of each fenced block, in order."""
    return re.findall(r"^```(\w*)[^\n]*\n(.*?)^```", text, flags=re.M | re.S)


def prose(text: str) -> str:
    """The text without its fenced blocks and code spans, where a link is not a link."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_DEFINITION = re.compile(
    r"""^ {0,3}\[[^\]]+\]:[ \t]*<?(\S+?)>?(?:[ \t]+(?:"[^"]*"|'[^']*'|\([^)]*\)))?[ \t]*$""",
    flags=re.M,
)
_HTML = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""")


def links(text: str) -> list[str]:
    """Every link target: inline links and images, reference definitions, HTML attributes."""
    text = prose(text)
    return [*_LINK.findall(text), *_DEFINITION.findall(text), *_HTML.findall(text)]


def headings(text: str) -> list[str]:
    outside_code = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.findall(r"^#{1,6} (.*?)\s*#*$", outside_code, flags=re.M)


def _plain(heading: str) -> str:
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    return heading.replace("`", "").replace("*", "")


def site_slug(heading: str) -> str:
    """The anchor MkDocs gives a heading (Python-Markdown's ``toc`` slugify)."""
    text = unicodedata.normalize("NFKD", _plain(heading)).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", _plain(heading).strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors that work both on GitHub and in the site."""
    return {
        site_slug(h) for h in headings(path.read_text(encoding="utf-8"))
        if site_slug(h) == github_slug(h)
    }  # fmt: skip


def nav_pages() -> set[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    found: set[str] = set()

    def walk(item: object) -> None:
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict):
            for value in item.values():
                walk(value)
        elif isinstance(item, list):
            for value in item:
                walk(value)

    walk(config["nav"])
    return found


# ---------------------------------------------------------------------------------------------
# The front door, its links and the nav


def test_the_readme_is_at_most_160_lines() -> None:
    lines = README.read_bytes().count(b"\n")  # what wc -l counts
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move the rest to docs/"


@pytest.mark.parametrize("path", TEXTS, ids=_ids)
def test_every_link_stays_in_the_repository_and_resolves(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    home = DOCS if path.parent == DOCS else ROOT  # the site holds docs/ and nothing else
    for target in links(text):
        assert not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:|/", target), (
            f"{path.name}: {target!r} points outside the repository"
        )
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        assert resolved.is_relative_to(home), f"{path.name}: {target!r} leaves {home.name}/"
        assert resolved.exists(), f"{path.name}: {target!r} names no file"
        if anchor:
            assert resolved.suffix == ".md", f"{path.name}: {target!r}: an anchor in a non-page"
            assert anchor in anchors(resolved), (
                f"{path.name}: {target!r}: no heading whose anchor is {anchor!r} on GitHub and "
                "in the site alike"
            )


@pytest.mark.parametrize("path", TEXTS, ids=_ids)
def test_no_path_leads_out_of_the_repository(path: Path) -> None:
    """A relative path written anywhere (in code too) stays inside the repository and exists:
    a clone has nothing beside it."""
    text = path.read_text(encoding="utf-8")
    for found in re.finditer(r"(?<![.\w])(?:\.\./)+[\w./-]*", text):
        resolved = (path.parent / found[0]).resolve()
        assert resolved.is_relative_to(ROOT) and resolved.exists(), (
            f"{path.name}: {found[0]!r} is outside the repository, or missing"
        )


_TOP = "study|trainers|storage|reports|bench|tests|examples|docs|\\.ci"  # the repository's folders
_REPO_PATH = re.compile(rf"(?<![\w./])(?:{_TOP})/[\w./-]*")
_MODULE = re.compile(r"(?:study|trainers|storage|reports)(?:\.[A-Za-z_]\w*)+")


@pytest.mark.parametrize("path", TEXTS, ids=_ids)
def test_every_file_and_python_name_it_names_exists(path: Path) -> None:
    """A path of the repository or a dotted name of dynl2's packages, written in code, exists:
    the code moves, and the pages follow it (placeholders such as NAME aside)."""
    for span in re.findall(r"`([^`\n]+)`", path.read_text(encoding="utf-8")):
        for found in _REPO_PATH.finditer(span):
            name = found[0].rstrip(".")
            if not re.search(r"[A-Z]{2}", name):
                assert (ROOT / name).exists(), f"{path.name}: `{span}`: {name} does not exist"
        for found in _MODULE.finditer(span):
            if found.start() == 0 or not re.match(r"[\w./]", span[found.start() - 1]):
                assert _resolves(found[0]), f"{path.name}: `{span}`: {found[0]} does not exist"


def _resolves(dotted: str) -> bool:
    """Whether ``dotted`` is a module of dynl2, or a name one of them holds."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


def test_every_page_is_in_the_nav_and_every_link_to_a_page_names_one() -> None:
    nav = nav_pages()
    assert nav == {p.name for p in DOCS.glob("*.md")}, nav ^ {p.name for p in DOCS.glob("*.md")}
    for path in TEXTS:
        for target in links(path.read_text(encoding="utf-8")):
            file = target.partition("#")[0]
            resolved = (path.parent / file).resolve() if file else path
            if resolved.suffix == ".md" and resolved.is_relative_to(DOCS):
                page = resolved.relative_to(DOCS).as_posix()
                assert page in nav, f"{path.name}: {target!r}: {page} is not in mkdocs.yml's nav"


# ---------------------------------------------------------------------------------------------
# The two opening commands


def test_the_readme_opens_with_its_two_commands() -> None:
    blocks = code_blocks(README.read_text(encoding="utf-8"))
    assert [body.strip() for _, body in blocks[:2]] == list(OPENING)
    assert OPENING[1] in (ROOT / ".ci" / "run").read_text(), "the second is what CI runs"


def test_the_demo_is_the_study_the_readme_describes(tmp_path: Path) -> None:
    """``dynl2 demo`` trains for minutes: its help runs, and its built-in config parses into
    the study the README describes (MNIST-1D, an MLP, arms dynamic (α searched) /
    dynamic_as_written (α the learning rate) / fixed / none, 3 searches of 20 trials each, 10
    evaluation seeds)."""
    from study.cli.demo import DEMO_TOML
    from study.config.experiment import parse_experiment

    proc = dynl2(["demo", "--help"], tmp_path, environment(tmp_path))
    assert proc.returncode == 0 and "--workers" in proc.stdout, proc.stderr
    config = parse_experiment(tomllib.loads(DEMO_TOML))
    assert config.name == "demo" and config.data["dataset"] == "mnist1d"
    assert config.model["kind"] == "mlp"
    assert {arm.name: arm.scheme for arm in config.arms} == {
        "dynamic": "dynamic", "dynamic_as_written": "dynamic", "fixed": "fixed", "none": "none",
    }  # fmt: skip
    literal = next(arm for arm in config.arms if arm.name == "dynamic_as_written")
    assert dict(literal.fixed) == {"alpha": "lr"} and not literal.ranges
    assert (config.search.replicates, config.search.n_trials) == (3, 20)
    assert config.evaluate.seeds == 10
    assert "lr" in config.train_ranges  # the learning rate tuned in every arm


# ---------------------------------------------------------------------------------------------
# The tour and the Python blocks, against one tiny experiment


def tour() -> list[str]:
    """The command lines of the README's tour."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## A tour") :]
    section = section[: section.index("\n## ", 1)]
    (body,) = [body for language, body in code_blocks(section) if language == "bash"][:1]
    return [line for line in body.splitlines() if line.startswith("dynl2 ")]


def environment(directory: Path) -> dict[str, str]:
    """dynl2 from this checkout, on a store of its own in ``directory``, one torch thread."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "DYNL2_STORAGE": f"sqlite:///{directory}/tour.db",
        "DYNL2_THREADS": "1",
    }
    for name in ("DYNL2_SQL_URL", "DYNL2_SERVE_TOKEN"):
        env.pop(name, None)
    return env


def dynl2(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "study", *argv], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_every_command_of_the_readme_is_in_its_tour() -> None:
    """So the tour's test covers them all: the opening's `dynl2 demo` aside, no other
    `dynl2` line sits in the README's code."""
    lines = tour()
    assert {shlex.split(line, comments=True)[1] for line in lines} >= TOUR_VERBS, lines
    for _, body in code_blocks(README.read_text(encoding="utf-8")):
        for line in body.splitlines():
            if line.startswith("dynl2 "):
                assert line in lines, f"{line!r} is outside the tour"


def _check(argv: list[str], out: str, cwd: Path) -> None:
    """What each verb of the tour must have printed or written."""
    verb = argv[0]
    if verb == "run":
        assert re.search(r"^report: .*\.html", out, flags=re.M), out[-2000:]
    elif verb == "status" and len(argv) > 1:
        assert "best params" in out, out
    elif verb == "trials":
        rows = list(csv.DictReader(io.StringIO(out))) if "csv" in argv else out.splitlines()
        assert rows, out
    elif verb == "sql":
        assert len(out.splitlines()) > 1, out
    elif verb == "plan":
        assert "power (%)" in out and ("recommended" in out or "no (R, S)" in out), out
    elif verb == "report" and "-o" in argv:
        page = cwd / argv[argv.index("-o") + 1]
        assert "<html" in page.read_text(encoding="utf-8")[:2000].lower()
    elif verb == "suite" and argv[1] == "run":
        assert re.search(r"^suite report: .*\.html", out, flags=re.M), out[-2000:]


def _serve(argv: list[str], cwd: Path, env: dict[str, str], experiment: str) -> None:
    """``dynl2 serve`` as shown, on a free port (``--port 0`` added): its first line names the
    address once it listens; its pages answer; SIGTERM stops it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "study", *argv, "--port", "0"], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout=120)
        assert first and first[0].startswith("dynl2 serve: http://"), (
            f"the server did not start: {first} {proc.poll()}"
        )
        base = first[0].split()[2].rstrip("/")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(base + "/api/experiments", timeout=60) as answer:
            listed = json.load(answer)
        assert experiment in json.dumps(listed), listed
        with opener.open(base + "/", timeout=60) as answer:
            assert answer.status == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]


def test_the_tour_and_the_python_blocks_run(tmp_path: Path) -> None:
    """Every command of the tour, in order, in a folder holding a copy of ``examples/``, on a
    SQLite store of its own: the first trains the tiny experiment the others read. Then each
    Python block of the README, as a script, on the same store."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = environment(tmp_path)
    experiment = None
    for line in tour():
        argv = shlex.split(line, comments=True)[1:]
        if argv[0] == "run":
            experiment = tomllib.loads((tmp_path / argv[1]).read_text())["experiment"]["name"]
        if argv[0] == "serve":
            assert experiment is not None, "the tour serves a store it has not filled"
            _serve(argv, tmp_path, env, experiment)
            continue
        proc = dynl2(argv, tmp_path, env)
        assert proc.returncode == 0, f"{line}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        _check(argv, proc.stdout, tmp_path)
    blocks = [body for language, body in code_blocks(README.read_text()) if language == "python"]
    assert blocks, "the README shows Python"
    for i, body in enumerate(blocks):
        script = tmp_path / f"readme_block_{i}.py"
        script.write_text(body, encoding="utf-8")
        proc = subprocess.run(
            [sys.executable, script.name], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, f"README Python block {i}:\n{body}\n{proc.stderr[-3000:]}"
