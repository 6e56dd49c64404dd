"""The one writer of every file dynl2 writes (the HTML reports): checked first, written whole.

A target is checked before anything is computed or written: it must be a new name or an
existing regular file. A folder, FIFO, socket or device is refused, and so is a symbolic link,
dangling or not (docs/store.md); links in the folders above the file
are followed. The text goes to a temporary file beside the target (created with mode 0666 less
the umask, or with the permission bits of the file it replaces), is flushed to disk, and is
renamed over the target: a reader, a kill or a full disk never leaves half a file. Missing
folders are created, and removed again when the write fails. Every ``OSError`` becomes one line
that names the path, the problem and its errno: a :class:`TargetError` (the user's choice of
path, exit status 2) or a :class:`WriteError` (the disk or the system, exit status 1).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from pathlib import Path

from study.errors import StudyError, UsageError

# Default file names are cut to this many bytes (with a hash of the whole name, so that two
# long names stay apart): below every common file system's limit on one name (ext4, XFS and
# btrfs allow 255 bytes, eCryptfs 143), with room for the temporary file's name beside it.
NAME_BYTES = 120

ALLOWED = "give the path of a regular file, or of a new file in a folder you can write"

# What the user chose (exit status 2): the path is not one that can be written. Anything else
# (a full disk, a quota, an I/O error) is the environment's doing (exit status 1).
_USER_ERRNOS = {
    errno.ENOENT: "a folder on the way does not exist or takes no new files",
    errno.ENOTDIR: "a part of the path before the file name is not a folder",
    errno.EISDIR: "it is a folder",
    errno.ENAMETOOLONG: "the name is longer than the file system allows",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted (an immutable or append-only file or folder?)",
    errno.EROFS: "the file system is read-only",
    errno.ELOOP: "too many symbolic links on the way",
    errno.ETXTBSY: "the file is a running program",
    errno.EBUSY: "the file or folder is in use by the system (a mount point?)",
    errno.EXDEV: "the folder is on another file system",
    errno.EINVAL: "the file system does not accept this name",
}


class TargetError(UsageError):
    """A path dynl2 was asked to write that cannot or must not be written: exit status 2."""


# One line for every verb that meets a deleted current directory (``rm -r`` of the folder a
# shell is still in): os.getcwd() then fails with a bare ENOENT that names no path.
CWD_GONE = (
    "the current directory no longer exists (deleted while the shell was in it?), and the "
    "default paths (./dynl2-workspace/) and relative ones are under it; cd to a folder that "
    "exists, or give absolute paths (--storage URL, -o FILE)"
)


class CwdGone(StudyError):
    """The current directory was deleted and a path needs it: exit status 1, as for a store
    that is missing (the environment changed under the user, not the user's input)."""

    def __init__(self) -> None:
        super().__init__(CWD_GONE)


def cwd_gone() -> bool:
    """True when the current directory no longer exists."""
    try:
        os.getcwd()
    except FileNotFoundError:
        return True
    return False


class WriteError(StudyError):
    """Writing failed for a reason of the environment (disk full, I/O error): exit status 1."""


def _show(path: Path | str) -> str:
    """A path for a one-line message: as typed when printable, else Python's quoting."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def os_error(exc: OSError, path: Path, what: str) -> StudyError:
    """``exc`` met while writing ``what`` to ``path`` as one line, of the right class."""
    code = exc.errno or 0
    name = errno.errorcode.get(code, f"errno {code}")
    reason = _USER_ERRNOS.get(code) or (exc.strerror or str(exc)).rstrip(".")
    if code == errno.ENAMETOOLONG:
        name_bytes, limit = len(os.fsencode(path.name)), _name_max(path.parent)
        reason = (
            f"the name is {name_bytes} bytes, more than the {limit} this file system allows"
            if name_bytes > limit
            else f"the path is {len(os.fsencode(str(path)))} bytes, more than the system allows"
        )
    message = f"cannot write the {what} to {_show(path)}: {reason} ({name})"
    if code in _USER_ERRNOS:
        return TargetError(f"{message}; {ALLOWED}")
    return WriteError(message)


def target_path(raw: str | os.PathLike[str], *, what: str = "report") -> Path:
    """The absolute path ``raw`` names, its folders' links resolved (not the file's own).

    Refuses, before anything is written, a name that cannot be a file (empty, with a NUL
    byte, ending in ``/``, or ``.``/``..``) and a path whose nearest existing folder is a
    dangling symbolic link."""
    text = os.fspath(raw)
    shown = _show(text)
    if not text:
        raise TargetError(f"the {what}'s path is empty; {ALLOWED}")
    if "\0" in text:
        raise TargetError(f"the {what}'s path {shown} holds a NUL byte; {ALLOWED}")
    path = Path(text)
    if text.endswith(os.sep) or path.name in ("", ".", ".."):
        raise TargetError(f"cannot write the {what} to {shown}: it names a folder; {ALLOWED}")
    for folder in (path.parent, *path.parent.parents):
        if os.path.lexists(folder):
            if os.path.islink(folder) and not os.path.exists(folder):
                # Resolving it would name a folder that is not there, and creating that
                # folder would be writing through the link.
                raise TargetError(
                    f"cannot write the {what} to {shown}: {_show(folder)} is a dangling "
                    f"symbolic link (to {_points_to(folder)}); {ALLOWED}"
                )
            break
    try:
        return path.parent.resolve() / path.name
    except RuntimeError:  # a loop of symbolic links (Python 3.11's resolve)
        raise TargetError(
            f"cannot write the {what} to {shown}: {_USER_ERRNOS[errno.ELOOP]} (ELOOP); {ALLOWED}"
        ) from None
    except OSError as exc:
        if not path.is_absolute() and cwd_gone():  # not "a folder on the way does not exist"
            raise CwdGone() from None
        raise os_error(exc, path, what) from None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "a special file"


def _points_to(link: Path) -> str:
    try:
        return _show(os.readlink(link))
    except OSError:
        return "?"


def check_target(path: Path, *, what: str = "report") -> os.stat_result | None:
    """Refuse ``path`` (from :func:`target_path`) unless it is a new name or a regular file
    in a folder, or a place for one; returns the existing file's status (None for a new one).
    Nothing is written."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise os_error(exc, path, what) from None
    if info is not None and stat.S_ISLNK(info.st_mode):
        raise TargetError(
            f"cannot write the {what} to {_show(path)}: it is a symbolic link (to "
            f"{_points_to(path)}), and dynl2 does not write through links; {ALLOWED} "
            "(such as the link's target)"
        )
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise TargetError(
            f"cannot write the {what} to {_show(path)}: it is {_kind(info.st_mode)}, "
            f"not a regular file; {ALLOWED}"
        )
    if info is None:  # a new file: the folder may be created, but nothing on the way is a file
        folder = path.parent
        try:
            os.stat(folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise os_error(exc, path, what) from None
        else:
            if not folder.is_dir():
                raise os_error(OSError(errno.ENOTDIR, "Not a directory"), path, what)
        if len(os.fsencode(path.name)) > _name_max(folder):
            raise os_error(OSError(errno.ENAMETOOLONG, "File name too long"), path, what)
    _check_writable(path, what)
    return info


def _check_writable(path: Path, what: str) -> None:
    """Refuse ``path`` when the nearest existing folder on its way takes no new files (the
    page is written beside the target and renamed over it, and missing folders are made
    there): a read-only file system, or no write permission. Root passes the permission
    check, as its write would."""
    for place in (path.parent, *path.parent.parents):
        if os.path.lexists(place):
            break
    else:
        return
    if os.access(place, os.W_OK | os.X_OK):
        return
    try:
        read_only = bool(os.statvfs(place).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    code = errno.EROFS if read_only else errno.EACCES
    raise os_error(OSError(code, os.strerror(code)), path, what)


def _name_max(folder: Path) -> int:
    """The longest name (bytes) the file system of ``folder`` (or its nearest existing
    ancestor) takes."""
    for place in (folder, *folder.parents):
        with contextlib.suppress(OSError, ValueError):
            return os.pathconf(place, "PC_NAME_MAX")
    return 255


def bounded_name(stem: str, suffix: str) -> str:
    """``stem + suffix`` as a default file name: NUL and ``/`` replaced, and cut to
    :data:`NAME_BYTES` bytes with a short hash of the whole stem when it is longer."""
    stem = stem.replace("\0", "_").replace(os.sep, "_")
    if len(os.fsencode(stem + suffix)) <= NAME_BYTES:
        return stem + suffix
    digest = hashlib.sha256(stem.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    keep = NAME_BYTES - len(suffix) - len(digest) - 1
    head = os.fsencode(stem)[:keep].decode("utf-8", "ignore")
    return f"{head}-{digest}{suffix}"


def default_report_path(name: str) -> Path:
    """``./dynl2-workspace/reports/NAME.html``, the name cut to a length every file system
    takes (see :func:`bounded_name`)."""
    return Path.cwd() / "dynl2-workspace" / "reports" / bounded_name(name, ".html")


def _temp_name(name: str, name_max: int) -> str:
    """A fresh hidden name beside ``name``, within the file system's limit on one name."""
    token = f".{secrets.token_hex(6)}.tmp"
    room = max(0, name_max - len(token) - 1)
    head = os.fsencode(name)[:room].decode("utf-8", "ignore")
    return f".{head}{token}"


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and the missing folders above it; returns those made, outermost
    first (for :func:`_remove_folders`)."""
    missing: list[Path] = []
    place = folder
    while not os.path.lexists(place):
        missing.append(place)
        place = place.parent
    made: list[Path] = []
    try:
        for new in reversed(missing):
            os.mkdir(new)  # mode 0777 less the umask, like mkdir(1)
            made.append(new)
    except BaseException:
        _remove_folders(made)
        raise
    return made


def _remove_folders(made: list[Path]) -> None:
    for folder in reversed(made):
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only while empty: never what something else put there


class StagedFile:
    """A file written beside its target and not yet in place: :meth:`commit` renames it over
    the target, :meth:`discard` removes it (and any folder made for it). Lets a caller do
    another step between the two (record the report in the store) so that the rename, which
    rarely fails, is the last thing done."""

    def __init__(self, path: str | os.PathLike[str], text: str, *, what: str = "report") -> None:
        self.path = target_path(path, what=what)
        self.what = what
        existing = check_target(self.path, what=what)
        self._made: list[Path] = []
        self._temp: Path | None = None
        try:
            self._made = _make_folders(self.path.parent)
            self._temp = self.path.parent / _temp_name(self.path.name, _name_max(self.path.parent))
            # A new file gets 0666 less the umask (what the user's other files get); a file
            # replaced keeps its permission bits (a report made private stays private).
            mode = 0o666 if existing is None else stat.S_IMODE(existing.st_mode) & 0o777
            self._write(self._temp, text, mode)
        except BaseException as exc:
            self.discard()
            if isinstance(exc, OSError):
                raise os_error(exc, self.path, what) from None
            raise

    @staticmethod
    def _write(temp: Path, text: str, mode: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o666)
        try:
            if mode != 0o666:
                os.fchmod(fd, mode)
            out = os.fdopen(fd, "w", encoding="utf-8")
        except BaseException:
            os.close(fd)
            raise
        with out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())  # on disk before it takes the target's name

    def commit(self) -> Path:
        """Rename the file over the target, checked once more just before (a FIFO put there
        since is refused, not replaced); returns the target's path."""
        assert self._temp is not None, "commit after discard"
        try:
            check_target(self.path, what=self.what)
            os.replace(self._temp, self.path)
        except BaseException as exc:
            self.discard()
            if isinstance(exc, OSError):
                raise os_error(exc, self.path, self.what) from None
            raise
        self._temp = None
        self._made = []
        _sync_folder(self.path.parent)
        return self.path

    def discard(self) -> None:
        if self._temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._temp)
            self._temp = None
        _remove_folders(self._made)
        self._made = []


def _sync_folder(folder: Path) -> None:
    """Flush the rename to disk. Best effort: the file is in place whole either way, and some
    file systems cannot sync a folder."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_file(path: str | os.PathLike[str], text: str, *, what: str = "report") -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all; returns the absolute path
    written. Raises :class:`TargetError` or :class:`WriteError` with one line."""
    return StagedFile(path, text, what=what).commit()
