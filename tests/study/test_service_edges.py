"""The service's edges (issue 25, security items): ``dynl2 serve`` answers only the hosts it
serves (no DNS rebinding), and ``dynl2 submit``, a real process against a small fake server in
this test, never sends its token off the origin it was given, reads a bounded answer, prints
only printable text, and ends every odd answer in one line; a token that no HTTP header can
carry is refused at both ends."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from study.cli.dispatch import main
from study.service.hosts import HostCheck, default_hosts, parse_host
from tests.reliability.helpers import ROOT, child_env, finish
from tests.study.test_service import start_server, stop_server
from tests.tiny import write_tiny

TOKEN = "s3cret-token"

# ------------------------------------------------------------------------------ Host


def _raw(base: str, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` as it is to the server at ``base``; its status and body."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _get(path: str, host: str | None, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    return ("\r\n".join([*lines, "Connection: close", "", ""])).encode("latin-1")


@pytest.fixture(scope="module")
def tokened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with a token over a new SQLite store, allowing one more name; its base URL."""
    directory = tmp_path_factory.mktemp("hosts")
    server = start_server(
        f"sqlite:///{directory / 'store.db'}",
        "--allowed-host",
        "Proxy.Example",
        "--allowed-host",
        "pinned.example:8443",
        DYNL2_SERVE_TOKEN=TOKEN,
    )
    try:
        yield server.base
    finally:
        stop_server(server)


REFUSED_HOSTS = [
    ("another name", _get("/healthz", "evil.example")),
    ("another name, this port", _get("/api/experiments", "evil.example:{port}")),
    ("this name, other port", _get("/healthz", "127.0.0.1:1")),
    ("empty", _get("/healthz", "")),
    ("HTTP/1.0 without one", _get("/healthz", None, "1.0")),
    ("a pinned name at another port", _get("/healthz", "pinned.example:443")),
    ("a user part", _get("/healthz", "x@127.0.0.1:{port}")),
    ("absolute-form naming another", _get("http://evil.example/healthz", "127.0.0.1:{port}")),
    ("a page", _get("/", "rebound.attacker.test:{port}")),
]


@pytest.mark.parametrize(
    "request_bytes", [r for _, r in REFUSED_HOSTS], ids=[i for i, _ in REFUSED_HOSTS]
)
def test_a_request_for_another_host_is_refused_with_one_json_line(
    tokened: str, request_bytes: bytes
) -> None:
    port = tokened.rsplit(":", 1)[1]
    status, body = _raw(tokened, request_bytes.replace(b"{port}", port.encode()))
    assert status == 400, body[:300]
    answer = json.loads(body)
    assert set(answer) == {"error"} and "\n" not in answer["error"]
    assert "experiments" not in answer["error"]  # nothing of the store


def test_the_hosts_it_serves_are_answered(tokened: str) -> None:
    port = tokened.rsplit(":", 1)[1]
    for host in (
        f"127.0.0.1:{port}",
        f"LOCALHOST:{port}",
        "proxy.example",
        "proxy.example:9000",
        "pinned.example:8443",
    ):
        status, body = _raw(tokened, _get("/healthz", host))
        assert status == 200, (host, body[:300])


@pytest.mark.parametrize(
    "entry",
    ["", "a/b", "host:0", "host:70000", "host:port", "user@host", "hôst", "[::1", "a b"],
)
def test_serve_refuses_an_allowed_host_that_is_not_one(
    entry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    code = main(["serve", "--storage", url, "--allowed-host", entry])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("dynl2 serve: error: --allowed-host: expected"), err
    assert "\n" not in err
    assert not (tmp_path / "store.db").exists()


def test_host_names_are_parsed_as_a_host_header_carries_them() -> None:
    assert parse_host("LocalHost:8000") == ("localhost", 8000)
    assert parse_host("[::1]:80") == ("[::1]", 80)
    assert parse_host("example.org") == ("example.org", None)
    check = HostCheck(lambda *a: None, [*default_hosts("0.0.0.0", 8000), "a.example"])  # type: ignore[arg-type, return-value]
    assert check.allows(f"{socket.gethostname()}:8000") and check.allows("a.example:1")
    assert not check.allows(f"{socket.gethostname()}:8001") and not check.allows("b.example")
    # two Host headers (uvicorn's parser already refuses them before the app) and none
    two = {"type": "http", "headers": [(b"host", b"a.example"), (b"host", b"a.example")]}
    assert check._refusal(two) and check._refusal({"type": "http", "headers": []})
    assert check._refusal({"type": "http", "headers": [(b"host", b"a.example")]}) is None


# --------------------------------------------------------------------- a fake server


@dataclass
class Fake:
    """A loopback HTTP server that answers every POST with ``answer`` and notes what it got."""

    answer: Callable[[http.server.BaseHTTPRequestHandler], None]
    seen: list[dict[str, str]] = field(default_factory=list)
    base: str = ""


@pytest.fixture
def fake() -> Iterator[Callable[[Callable[[http.server.BaseHTTPRequestHandler], None]], Fake]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(answer: Callable[[http.server.BaseHTTPRequestHandler], None]) -> Fake:
        made = Fake(answer)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                made.seen.append(dict(self.headers))
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                # the client may stop reading, as it should past its limit
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    made.answer(self)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        made.base = f"http://127.0.0.1:{server.server_address[1]}"
        return made

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _reply(
    status: int, body: bytes, **headers: str
) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key.replace("_", "-"), value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def _submit(tmp_path: Path, server: str, token: str = TOKEN) -> tuple[int, str, str]:
    """``dynl2 submit`` as a process; its exit status, stdout and stderr."""
    path = write_tiny(tmp_path, "sent", epochs=2, n_trials=2, seeds=1, arms=("fixed",))
    proc = subprocess.Popen(
        [sys.executable, "-m", "study", "submit", str(path), "--server", server],
        cwd=ROOT, env=child_env(DYNL2_SERVE_TOKEN=token, NO_PROXY="127.0.0.1"), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    return finish(proc, 120)


def _one_line(err: str) -> str:
    line = err.strip()
    assert line.startswith("dynl2 submit: error: ") and "\n" not in line, err[-2000:]
    assert "Traceback" not in line and line.isprintable()
    return line


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_submit_never_follows_a_redirect_with_its_token(
    code: int, tmp_path: Path, fake: Callable[..., Fake]
) -> None:
    elsewhere = fake(_reply(201, b'{"experiment": "sent", "created": true, "url": "/x"}'))
    redirecting = fake(_reply(code, b"", Location=elsewhere.base + "/api/experiments"))
    status, out, err = _submit(tmp_path, redirecting.base)
    line = _one_line(err)
    assert status == 1 and out == ""
    assert f"redirect (HTTP {code}) to {elsewhere.base}/api/experiments" in line
    assert redirecting.seen and redirecting.seen[0]["Authorization"] == f"Bearer {TOKEN}"
    assert elsewhere.seen == []  # the token went nowhere else
    assert TOKEN not in err


ODD_ANSWERS = [
    ("an HTML page", 200, b"<html><body>hello</body></html>", "JSON object"),
    ("a list", 200, b"[1, 2]", "JSON object"),
    ("null", 200, b"null", "JSON object"),
    ("nested past the stack", 200, b"[" * 60_000, "JSON object"),
    ("not UTF-8", 200, b'{"a": "\xff"}', "JSON object"),
    ("an object without the experiment", 200, b'{"created": true}', "without an experiment"),
    ("50 MB", 200, b"{" + b" " * 50_000_000 + b"}", "more than 64 KiB"),
    ("a 400 that is not JSON", 400, b"<h1>Bad</h1>", "(HTTP 400)"),
    ("a 500 with a list", 500, b"[]", "(HTTP 500)"),
]


@pytest.mark.parametrize(
    ("status", "body", "named"), [a[1:] for a in ODD_ANSWERS], ids=[a[0] for a in ODD_ANSWERS]
)
def test_submit_ends_an_odd_answer_in_one_line(
    status: int, body: bytes, named: str, tmp_path: Path, fake: Callable[..., Fake]
) -> None:
    server = fake(_reply(status, body, Content_Type="application/json"))
    code, out, err = _submit(tmp_path, server.base)
    assert code == (2 if status == 400 else 1) and out == ""
    assert named in _one_line(err)


def test_submit_prints_only_printable_text(tmp_path: Path, fake: Callable[..., Fake]) -> None:
    escapes = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\r\u202e"
    refused = fake(_reply(400, json.dumps({"error": f"bad {escapes}" + "x" * 5000}).encode()))
    code, out, err = _submit(tmp_path, refused.base)
    line = _one_line(err)
    assert code == 2 and "\x1b" not in err and "\r" not in err and "\u202e" not in err
    assert "\\x1b" in line and len(line) < 600  # shown escaped, and bounded
    accepted = fake(
        _reply(
            201,
            json.dumps({"experiment": f"sent{escapes}", "created": True, "url": "/e"}).encode(),
        )
    )
    code, out, err = _submit(tmp_path, accepted.base)
    assert code == 0 and err == "" and "\x1b" not in out
    assert out.startswith("experiment sent\\x1b") and out.rstrip().endswith(f"{accepted.base}/e")


# ----------------------------------------------------------------------------- tokens

BAD_TOKENS = ["tökén", "tok\u00a0en", "tok\x7fen", "t\u202eok", "😀"]


@pytest.mark.parametrize("token", BAD_TOKENS)
def test_a_token_no_header_can_carry_is_refused_at_both_ends(
    token: str, tmp_path: Path, fake: Callable[..., Fake], capsys: pytest.CaptureFixture[str]
) -> None:
    server = fake(_reply(201, b"{}"))
    code, out, err = _submit(tmp_path, server.base, token=token)
    assert code == 2 and out == "" and server.seen == []
    assert "DYNL2_SERVE_TOKEN" in err and "visible ASCII" in err and token not in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["serve", "--storage", url, "--token-file", str(token_file)]) == 2
    line = capsys.readouterr().err.strip()
    assert "--token-file" in line and "visible ASCII" in line and "\n" not in line
    assert not (tmp_path / "store.db").exists()


def test_submit_shows_no_password_of_the_server_url(
    tmp_path: Path, fake: Callable[..., Fake]
) -> None:
    """A user:password in --server (or in a redirect's Location) is masked in the line."""
    elsewhere = "http://u:hunter2@127.0.0.1:1/api/experiments"
    redirecting = fake(_reply(302, b"", Location=elsewhere))
    port = redirecting.base.rsplit(":", 1)[1]
    for server in (f"http://u:hunter2@127.0.0.1:{port}", redirecting.base):
        code, out, err = _submit(tmp_path, server)
        assert code == 1 and out == "" and "hunter2" not in err
        assert "u:***@" in _one_line(err)
