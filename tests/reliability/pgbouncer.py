"""Start a PgBouncer of one's own in front of a PostgreSQL server, for tests and benchmarks.

Plain Python (no pytest), so a benchmark can import it too::

    with PgBouncer("127.0.0.1", 5432, pool_mode="transaction", pool_size=3) as bouncer:
        url = bouncer.url("postgresql+psycopg://postgres@127.0.0.1:5432/test")

It writes a temporary ini (``auth_type = trust``: PgBouncer lets every client in and logs in to
the server as the client's user, which the server then authenticates as it would directly),
listens on a free port of 127.0.0.1, waits until PgBouncer answers, and stops it (SIGINT, then
SIGKILL) at the end. PgBouncer refuses to run as root: as root it is started with ``-u`` as an
unprivileged user (``nobody``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from sqlalchemy.engine import make_url

__all__ = ["PGBOUNCER", "PgBouncer", "PgBouncerError", "pgbouncer_path"]

PGBOUNCER = "/usr/sbin/pgbouncer"  # Debian's package; else the first on $PATH
START_TIMEOUT_S = 30.0  # how long PgBouncer may take to listen (an upper bound on a hang)
UNPRIVILEGED_USER = "nobody"


class PgBouncerError(RuntimeError):
    """PgBouncer could not be started."""


def pgbouncer_path() -> str | None:
    """The pgbouncer program, or ``None`` when it is not installed."""
    if os.access(PGBOUNCER, os.X_OK):
        return PGBOUNCER
    return shutil.which("pgbouncer")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgBouncer:
    """A PgBouncer process of one's own (a context manager: started on enter, stopped on exit).

    ``pool_mode``: ``transaction`` (a server connection per transaction) or ``session``.
    ``pool_size``: server connections per database and user (``default_pool_size``).
    ``max_client_conn``: clients it accepts at once. ``users``: the logins it lets in
    (``auth_type = trust`` still wants each user listed in its ``auth_file``).
    """

    def __init__(
        self,
        server_host: str = "127.0.0.1",
        server_port: int = 5432,
        *,
        pool_mode: str = "transaction",
        pool_size: int = 3,
        max_client_conn: int = 200,
        users: Sequence[str] = ("postgres",),
    ) -> None:
        self.server_host = server_host
        self.server_port = server_port
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.users = tuple(users)
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def url(self, server_url: str) -> str:
        """``server_url`` (a database on the server PgBouncer fronts) through PgBouncer."""
        parsed = make_url(server_url).set(host="127.0.0.1", port=self.port)
        return parsed.render_as_string(hide_password=False)

    def start(self) -> None:
        program = pgbouncer_path()
        if program is None:
            raise PgBouncerError("pgbouncer is not installed (apt install pgbouncer)")
        self._dir = tempfile.TemporaryDirectory(prefix="dynl2-pgbouncer-")
        folder = Path(self._dir.name)
        folder.chmod(0o755)  # readable by the unprivileged user it runs as under root
        self.port = _free_port()
        ini = folder / "pgbouncer.ini"
        users = folder / "users.txt"
        users.write_text("".join(f'"{user}" ""\n' for user in self.users))
        ini.write_text(
            "[databases]\n"
            f"* = host={self.server_host} port={self.server_port}\n\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            "reserve_pool_size = 0\n"
            f"max_client_conn = {self.max_client_conn}\n"
            "server_reset_query =\n"
            "logfile =\n"
            "pidfile =\n"
        )
        for path in (ini, users):
            path.chmod(0o644)
        argv = [program]
        if os.geteuid() == 0:
            argv += ["-u", UNPRIVILEGED_USER]
        log = (folder / "stderr.txt").open("wb")
        self._proc = subprocess.Popen(
            [*argv, str(ini)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self._wait_listening(folder / "stderr.txt")

    def _wait_listening(self, log: Path) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                said = log.read_text(errors="replace").strip()
                self.stop()
                raise PgBouncerError(f"pgbouncer ended at start: {said[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise PgBouncerError(f"pgbouncer did not listen in {START_TIMEOUT_S:.0f} s")
            time.sleep(0.05)

    def log(self) -> str:
        """What PgBouncer has written so far (its log goes to stderr)."""
        if self._dir is None:
            return ""
        path = Path(self._dir.name) / "stderr.txt"
        return path.read_text(errors="replace") if path.is_file() else ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # PgBouncer's immediate shutdown
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
