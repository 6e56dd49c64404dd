"""``dynl2 serve`` and ``dynl2 submit``: flags in, the web service (:mod:`study.service.app`)
or one request to it, lines out."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import storage
from study.cli.args import code_flag, storage_flag
from study.config import env
from study.errors import UsageError

DEFAULT_PORT = 8000


def add_parsers(verbs: Any) -> None:
    p = verbs.add_parser(
        "serve",
        help="a web view and JSON API over the store (and submissions, with a token)",
        description="Serve the store's experiments, their progress, trials and stored reports "
        "as web pages and JSON. Reads go through a read-only connection. With a token "
        "(--token-file or $DYNL2_SERVE_TOKEN) the server also accepts experiments (POST "
        "/api/experiments, `dynl2 submit`); without one it only reads and binds to loopback "
        "only.",
    )
    storage_flag(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    p.add_argument("--token-file", type=Path, help="a file holding the bearer token")
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="a Host name the server answers to, besides its address and localhost on its "
        "port (repeatable; e.g. the name a reverse proxy forwards); other Host headers get 400",
    )
    code_flag(p, "accept submissions whose code (a data loader, a model factory, a training "
              "loop) is in the module PREFIX or below it (repeatable); without it, submissions "
              "that name code are refused (403)")  # fmt: skip
    p.add_argument(
        "--data-root",
        type=_folder,
        metavar="FOLDER",
        help="accept submissions whose [data] path lies under FOLDER (a relative path is read "
        "from there); without it, submissions that name a data file are refused (403)",
    )
    p.set_defaults(handler=cmd_serve)

    p = verbs.add_parser(
        "submit",
        help="send an experiment's TOML to a dynl2 server, which creates it for the agents",
        description="POST the experiment file to SERVER/api/experiments with the bearer token "
        "(--token-file or $DYNL2_SERVE_TOKEN). The server validates it as `dynl2 run` does; "
        "agents (`dynl2 agent`, `dynl2 worker`) on any machine run it.",
    )
    p.add_argument("file", metavar="FILE", help="the experiment file (TOML)")
    p.add_argument("--server", required=True, help="the server's base URL (http://HOST:PORT)")
    p.add_argument("--token-file", type=Path, help="a file holding the bearer token")
    p.set_defaults(handler=cmd_submit)


def _folder(text: str) -> str:
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"expected an existing folder, got {text!r}")
    return os.path.realpath(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return int(text)


def read_token(path: Path | None) -> str | None:
    """The token of ``--token-file`` (one word; spaces and newlines around it dropped), else
    ``$DYNL2_SERVE_TOKEN``, else None."""
    if path is None:
        return env.serve_token()
    try:
        data = path.read_bytes()[:4097]
    except OSError as exc:
        raise UsageError(f"--token-file: cannot read {path}: {exc.strerror or exc}") from None
    token = data.decode("ascii", errors="replace").strip()
    if len(data) > 4096 or not env.is_token(token):
        raise UsageError(f"--token-file: {path} must hold {env.TOKEN_CHARACTERS}")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--host: cannot resolve {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"--port: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    token = read_token(args.token_file)
    if token is None and not is_loopback(args.host):
        raise UsageError(
            f"--host: {args.host} is not a loopback address; a server others can reach needs a "
            "token (--token-file or $DYNL2_SERVE_TOKEN), or bind 127.0.0.1"
        )
    from study.service.hosts import HOST_RULE, HostCheck, default_hosts, parse_host, shown

    for entry in args.allowed_host:
        if parse_host(entry) is None:
            raise UsageError(f"--allowed-host: expected {HOST_RULE}, got {shown(entry)!r}")
    import uvicorn

    from study.service.app import make_app

    app = make_app(args.storage, token=token, allow_code=args.allow_code, data_root=args.data_root)
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    checked = HostCheck(app, [*default_hosts(host, port), *args.allowed_host])
    address = f"[{host}]" if ":" in host else host
    mode = "accepting submissions with its token" if token else "read-only"
    print(f"dynl2 serve: http://{address}:{port}/ ({mode}); Ctrl-C stops it", flush=True)
    config = uvicorn.Config(checked, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from study.config.experiment import parse_experiment
    from study.config.reader import parse_config_text, read_config_text
    from study.service.submit import SubmitError, printable, submit

    token = read_token(args.token_file)
    if token is None:
        raise UsageError("submit: no token; give --token-file or set $DYNL2_SERVE_TOKEN")
    text = read_config_text(args.file)  # read once, within the config reader's limits
    parse_experiment(parse_config_text(text, args.file))  # refused here, as there
    parts = urllib.parse.urlsplit(args.server)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            f"--server: expected http://HOST:PORT or https://..., got {printable(args.server)!r}"
        )
    try:
        done = submit(args.server, text, token)
    except SubmitError as exc:  # a password in --server or in a Location is not shown
        print(f"dynl2 submit: error: {storage.masked_text(str(exc))}", file=sys.stderr)
        return exc.status
    verb = "created" if done.created else "resumed (already there)"
    print(f"experiment {done.name} {verb}: {done.url}")
    return 0
