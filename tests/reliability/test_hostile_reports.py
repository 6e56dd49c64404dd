"""Issue 17: where ``dynl2 report`` writes, and what it refuses to write over.

``dynl2 report -o /dev/null`` run as root once renamed the report over the device node. Every
target here that is not a new name or a regular file — a FIFO, a socket, a folder, a symbolic
link, a name too long, a path through a regular file, a place that takes no files — goes
through each of the three ways to write a report (plain, ``--from-store``, ``--compare``), in
this process. Each must end with exit status 2, one line on stderr naming the problem, the
target and everything around it exactly as before (no temporary file left), and the store
untouched. The writes that succeed get normal permissions, and the default name of a long
``--compare`` stays within the file system's limit on one name."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

import storage
from study.cli import dispatch as cli
from study.run import files
from tests.reports import synthetic as syn

from .helpers import run_cli, store_fingerprint

pytestmark = pytest.mark.reliability

MODES: dict[str, Callable[[str], list[str]]] = {
    "plain": lambda out: ["report", "a", "-o", out],
    "from-store": lambda out: ["report", "a", "--from-store", "-o", out],
    "compare": lambda out: ["report", "--compare", "a", "b", "-o", out],
}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two small synthetic experiments, ``a`` (with one stored report) and ``b``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = tmp_path_factory.mktemp("hostile-reports")
    url = f"sqlite:///{tmp / 'r.db'}"
    arms = {"dynamic": syn.ARMS["dynamic"], "fixed": syn.ARMS["fixed"]}
    with storage.open(url) as store:
        for name in ("a", "b"):
            syn.create(store, name, arms=arms)
            syn.add_evaluations(store, name, "dynamic", [0.8, 0.81, 0.82])
            syn.add_evaluations(store, name, "fixed", [0.79, 0.8, 0.8])
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["report", "a", "-o", str(tmp / "a.html"), "--storage", url]) == 0
    return url


def _snapshot(root: Path) -> dict[str, object]:
    """Every entry under ``root`` (links not followed): its kind, and the bytes of a regular
    file, the target of a link."""
    seen: dict[str, object] = {}
    for folder, dirs, names in os.walk(root, followlinks=False):
        for name in dirs + names:
            path = Path(folder, name)
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                what: object = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            elif stat.S_ISLNK(info.st_mode):
                what = ("link", os.readlink(path))
            else:
                what = stat.S_IFMT(info.st_mode)
            seen[str(path.relative_to(root))] = (what, stat.S_IMODE(info.st_mode))
    return seen


def _socket(path: Path) -> None:
    with contextlib.chdir(path.parent):  # a socket's path is limited to 108 bytes
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path.name)
        sock.close()  # the node stays


def _fifo(d: Path) -> str:
    os.mkfifo(d / "r.html")
    return str(d / "r.html")


def _sock(d: Path) -> str:
    _socket(d / "r.html")
    return str(d / "r.html")


def _folder(d: Path) -> str:
    (d / "r.html").mkdir()
    (d / "r.html" / "inside.txt").write_text("keep me")
    return str(d / "r.html")


def _link_to_file(d: Path) -> str:
    (d / "real.html").write_text("the user's own file")
    (d / "r.html").symlink_to(d / "real.html")
    return str(d / "r.html")


def _dangling_link(d: Path) -> str:
    (d / "r.html").symlink_to(d / "nowhere.html")
    return str(d / "r.html")


def _link_to_fifo(d: Path) -> str:
    os.mkfifo(d / "pipe")
    (d / "r.html").symlink_to("pipe")
    return str(d / "r.html")


def _link_to_folder(d: Path) -> str:
    (d / "sub").mkdir()
    (d / "r.html").symlink_to("sub")
    return str(d / "r.html")


def _dangling_folder(d: Path) -> str:
    (d / "gone").symlink_to(d / "nowhere")
    return str(d / "gone" / "sub" / "r.html")


def _link_loop(d: Path) -> str:
    (d / "r.html").symlink_to("loop")
    (d / "loop").symlink_to("r.html")
    return str(d / "r.html")


def _parent_is_file(d: Path) -> str:
    (d / "file.html").write_text("a regular file")
    return str(d / "file.html" / "x.html")


def _grandparent_is_file(d: Path) -> str:
    (d / "file.html").write_text("a regular file")
    return str(d / "file.html" / "sub" / "x.html")


# Each kind of target: how to make it in an empty folder (returns the -o argument), and a
# word the one line must hold.
TARGETS: dict[str, tuple[Callable[[Path], str], str]] = {
    "fifo": (_fifo, "FIFO"),
    "socket": (_sock, "socket"),
    "folder": (_folder, "folder"),
    "folder-slash": (lambda d: str(d / "new") + "/", "folder"),
    "dot": (lambda d: str(d) + "/.", "folder"),
    "dotdot": (lambda d: str(d / "sub" / ".."), "folder"),
    "link-to-file": (_link_to_file, "symbolic link"),
    "dangling-link": (_dangling_link, "symbolic link"),
    "link-to-fifo": (_link_to_fifo, "symbolic link"),
    "link-to-folder": (_link_to_folder, "symbolic link"),
    "dangling-link-folder": (_dangling_folder, "dangling symbolic link"),
    "link-loop": (_link_loop, "symbolic link"),
    "link-loop-folder": (lambda d: _link_loop(d) + "/x.html", "dangling symbolic link"),
    "name-300": (lambda d: str(d / ("x" * 300 + ".html")), "ENAMETOOLONG"),
    "parent-is-file": (_parent_is_file, "ENOTDIR"),
    "grandparent-is-file": (_grandparent_is_file, "ENOTDIR"),
    "proc": (lambda d: "/proc/dynl2-hostile-test.html", "ENOENT"),
    "empty": (lambda d: "", "empty"),
    "nul": (lambda d: str(d / "a\0b.html"), "NUL"),
}


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("target", list(TARGETS))
def test_a_target_that_is_no_regular_file_is_refused(url, tmp_path, capsys, mode, target):
    make, word = TARGETS[target]
    case = tmp_path / "case"
    case.mkdir()
    out = make(case)
    before, store_before = _snapshot(case), store_fingerprint(url)
    code, stdout, err = run_cli([*MODES[mode](out), "--storage", url], capsys)
    line = _one_line(err)
    assert code == 2, line
    assert line.startswith("dynl2 report: error: ") and word in line, line
    assert stdout == ""
    assert _snapshot(case) == before  # the target as it was, and nothing left beside it
    assert store_fingerprint(url) == store_before  # nothing recorded
    assert not os.path.lexists("/proc/dynl2-hostile-test.html")


def _reports(url: str) -> int:
    with storage.open(url, create=False) as store:
        return len(store.reports())


@pytest.mark.parametrize("mode", list(MODES))
def test_a_new_file_gets_normal_permissions_and_its_folders(url, tmp_path, capsys, mode):
    out = tmp_path / "new" / "folders" / "r.html"
    recorded = _reports(url)
    old = os.umask(0o022)
    try:
        code, stdout, err = run_cli([*MODES[mode](str(out)), "--storage", url], capsys)
    finally:
        os.umask(old)
    assert code == 0, err
    assert stdout.strip() == str(out.resolve())
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o755
    assert "</html>" in out.read_text(encoding="utf-8")
    assert [p.name for p in out.parent.iterdir()] == ["r.html"]
    assert _reports(url) == recorded + (mode == "plain")  # only a plain report is recorded


@pytest.mark.parametrize("mode", list(MODES))
def test_a_replaced_file_keeps_its_permissions(url, tmp_path, capsys, mode):
    out = tmp_path / "r.html"
    out.write_text("old")
    out.chmod(0o600)
    code, _, err = run_cli([*MODES[mode](str(out)), "--storage", url], capsys)
    assert code == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # a private report stays private
    assert out.read_text(encoding="utf-8") != "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_links_in_the_folders_above_are_followed(url, tmp_path, capsys):
    (tmp_path / "real").mkdir()
    (tmp_path / "via").symlink_to("real")
    code, stdout, err = run_cli(["report", "a", "-o", str(tmp_path / "via" / "r.html"),
                                 "--storage", url], capsys)  # fmt: skip
    assert code == 0, err
    assert stdout.strip() == str(tmp_path.resolve() / "real" / "r.html")
    assert (tmp_path / "real" / "r.html").is_file()
    assert (tmp_path / "via").is_symlink()


@pytest.mark.parametrize("mode", list(MODES))
def test_a_disk_that_fails_leaves_nothing(url, tmp_path, capsys, monkeypatch, mode):
    """A full disk is the environment's fault (exit 1): one line, no file, no new folder."""

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", fsync)
    before, recorded = _snapshot(tmp_path), _reports(url)
    out = tmp_path / "new" / "r.html"
    code, _, err = run_cli([*MODES[mode](str(out)), "--storage", url], capsys)
    monkeypatch.undo()
    line = _one_line(err)
    assert code == 1 and "ENOSPC" in line and str(out) in line, line
    assert _snapshot(tmp_path) == before  # no file, no temporary file, no folder "new"
    assert _reports(url) == recorded


def test_a_report_the_store_cannot_record_is_not_written(url, tmp_path, capsys, monkeypatch):
    """The store is written before the file takes its name: when recording fails, the old
    report stays in place, and nothing new is left."""

    def record_report(*args: object, **kwargs: object) -> int:
        raise storage.StorageError("the database failed: disk I/O error")

    out = tmp_path / "r.html"
    out.write_text("the previous report")
    before, store_before = _snapshot(tmp_path), store_fingerprint(url)
    monkeypatch.setattr(storage.Store, "record_report", record_report)
    code, _, err = run_cli(["report", "a", "-o", str(out), "--storage", url], capsys)
    monkeypatch.undo()
    line = _one_line(err)
    assert code == 1 and "disk I/O error" in line, line
    assert _snapshot(tmp_path) == before
    assert store_fingerprint(url) == store_before


def test_a_rename_that_fails_after_recording_says_how_to_export(url, tmp_path, capsys,
                                                                monkeypatch):  # fmt: skip
    """The one step after the store's commit: when it fails, the line says the report is
    kept in the store and how to write it out."""

    def replace(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    out = tmp_path / "r.html"
    recorded = _reports(url)
    monkeypatch.setattr(files.os, "replace", replace)
    code, _, err = run_cli(["report", "a", "-o", str(out), "--storage", url], capsys)
    monkeypatch.undo()
    line = _one_line(err)
    assert code == 1 and "EIO" in line and "--from-store" in line, line
    assert list(tmp_path.iterdir()) == []
    assert _reports(url) == recorded + 1


def test_the_default_name_of_a_long_compare_stays_short(url, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run_cli(["report", "--compare", *["a", "b"] * 150, "--storage", url],
                                capsys)  # fmt: skip
    assert code == 0, _one_line(err)
    path = Path(stdout.strip())
    assert path.parent == tmp_path.resolve() / "dynl2-workspace" / "reports"
    assert path.is_file() and len(os.fsencode(path.name)) <= files.NAME_BYTES
    assert path.name.startswith("compare-a-b-a-b") and path.suffix == ".html"
    code, stdout, _ = run_cli(["report", "--compare", *["a", "b"] * 151, "--storage", url],
                              capsys)  # fmt: skip
    assert code == 0 and Path(stdout.strip()) != path  # the hash keeps long names apart


@pytest.mark.parametrize("name", ["x" * 255, "é" * 255, "<b>'\"&" * 40])
def test_default_names_stay_within_one_name(name):
    bounded = files.bounded_name(name, ".html")
    assert len(os.fsencode(bounded)) <= files.NAME_BYTES
    assert bounded.endswith(".html") and "/" not in bounded
    assert files.bounded_name(name + "y", ".html") != bounded
    assert files.bounded_name("short", ".html") == "short.html"
