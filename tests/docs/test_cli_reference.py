"""docs/cli.md and docs/limits.md against the code: every verb of ``dynl2`` and every flag of
each has its place on the command-line page, every ``dynl2 ...`` command the README and the
pages show names a real verb with its real flags, and the environment-variable table lists
every ``DYNL2_*`` variable dynl2 and its tests read, and no other."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from study.cli.dispatch import build_parser
from study.config import env

ROOT = Path(__file__).resolve().parents[2]
CLI_PAGE = ROOT / "docs" / "cli.md"
LIMITS_PAGE = ROOT / "docs" / "limits.md"
TEXTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def commands() -> dict[str, set[str]]:
    """``"run"``, ``"suite run"``, ...: each command of the parser and its flags (those its
    help shows: a suppressed one is internal)."""
    out: dict[str, set[str]] = {}
    for verb, parser in _subparsers(build_parser()).items():
        actions = {verb: parser, **{f"{verb} {a}": p for a, p in _subparsers(parser).items()}}
        for name, sub in actions.items():
            out[name] = {
                option
                for action in sub._actions
                if action.help != argparse.SUPPRESS
                for option in action.option_strings
                if option not in ("-h", "--help")
            }
    return out


def sections(text: str) -> dict[str, str]:
    """The text under each heading `` `dynl2 COMMAND` ``, up to the next heading."""
    out: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        heading = re.fullmatch(r"#{2,6} (.*)", line)
        if heading:
            found = re.fullmatch(r"`dynl2 ([a-z][a-z -]*)`", heading[1])
            current = found[1] if found else None
            if current is not None:
                assert current not in out, f"two sections for dynl2 {current}"
                out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


def test_every_verb_and_flag_is_on_the_command_line_page() -> None:
    parsed = commands()
    documented = sections(CLI_PAGE.read_text(encoding="utf-8"))
    assert set(documented) == set(parsed), set(documented) ^ set(parsed)
    for command, flags in parsed.items():
        for flag in flags:
            assert re.search(rf"`{re.escape(flag)}(?![\w-])", documented[command]), (
                f"dynl2 {command}: {flag} is not on the page"
            )


def command_lines(text: str) -> list[str]:
    """Each ``dynl2 ...`` command in code (blocks and spans), up to a pipe, ``&&``, ``;`` or a
    comment; lines dynl2 prints (``dynl2 run: ...``) are left out."""
    code = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    out = []
    for snippet in [*code, *spans]:
        for found in re.finditer(r"(?<![\w./-])dynl2 [^\n|;&#`]*", snippet):
            before = snippet[: found.start()].rsplit("\n", 1)[-1].split()
            # a command starts a line, or follows a pipe, `time`, an IMAGE or an assignment
            if before and not re.fullmatch(r"&&|\||time|[A-Z]+|\S+=\S*", before[-1]):
                continue  # prose in code: "... while dynl2 used it"
            line = found[0].strip()
            verb = line.split()[1]
            if not verb.endswith(":"):
                out.append(line)
    return out


@pytest.mark.parametrize("path", TEXTS, ids=lambda p: p.name)
def test_every_command_shown_names_a_real_verb_and_its_flags(path: Path) -> None:
    parsed = commands()
    for line in command_lines(path.read_text(encoding="utf-8")):
        words = line.split()
        verb = words[1]
        if verb in ("--help", "-h") or verb.isupper():  # dynl2 VERB --help: a placeholder
            continue
        assert verb in parsed, f"{path.name}: {line!r}: no verb {verb!r}"
        if verb == "suite" and len(words) > 2 and words[2] in ("run", "status", "report"):
            verb = f"suite {words[2]}"
        flags = re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", line)
        for flag in flags:
            assert flag in parsed[verb] | {"-h", "--help"}, f"{path.name}: {line!r}: {flag}?"


_VARIABLE = re.compile(r"DYNL2_[A-Z_]+")
_NOT_A_VARIABLE = {"DYNL2_TABLES"}  # storage.schema's tuple of tables


def test_the_environment_table_lists_every_variable_and_no_other() -> None:
    """As ``tests/study/test_env.py`` holds the code to :data:`study.config.env.KNOBS`: the
    table lists each variable dynl2 reads and those only the tests read."""
    text = LIMITS_PAGE.read_text(encoding="utf-8")
    table = text[text.index("## Environment variables") :]
    table = table[: table.find("\n## ", 1) if "\n## " in table[1:] else len(table)]
    in_tests = set()
    for path in (ROOT / "tests").rglob("*.py"):
        in_tests |= set(_VARIABLE.findall(path.read_text(encoding="utf-8")))
    known = (set(env.KNOBS) | in_tests) - _NOT_A_VARIABLE
    listed = set(re.findall(r"^\| `(DYNL2_[A-Z_]+)` \|", table, flags=re.M))
    assert listed == known, listed ^ known
    for path in TEXTS:
        named = set(_VARIABLE.findall(path.read_text(encoding="utf-8")))
        assert named <= known, f"{path.name} names {named - known}, which dynl2 does not read"
