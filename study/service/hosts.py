"""The ``Host`` names ``dynl2 serve`` answers to, and the ASGI wrapper that refuses the rest.

Without the check, a web page on any site could read a loopback server through DNS rebinding:
its own name, re-pointed at 127.0.0.1, reaches the server with ``Host: evil.example``. So every
HTTP request must name one of the allowed hosts (case-insensitive); any other, none (HTTP/1.0),
an empty one, or an absolute-form target naming another host is answered 400 with one JSON
line. An allowed entry ``NAME:PORT`` matches that port only; ``NAME`` matches any port or none
(a reverse proxy in front that sends its own public name).
"""

from __future__ import annotations

import json
import socket
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from study.errors import printable

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HOST_RULE = "a host name or address, optionally with :PORT (1-65535)"
SHOWN = 100  # characters of a refused host echoed back

__all__ = ["HOST_RULE", "HostCheck", "default_hosts", "parse_host", "shown"]


def shown(text: str) -> str:
    """``text`` cut to :data:`SHOWN` characters, printable (:func:`errors.printable`): echoed
    back in a line."""
    return printable(text, SHOWN)


def parse_host(text: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a ``Host`` value or an ``--allowed-host`` entry (name lowercased,
    an IPv6 address in brackets); None when it is not one."""
    text = text.strip().lower()
    if not text or any(c in text for c in "/?#@ \\") or not text.isascii():
        return None
    try:
        parts = urllib.parse.urlsplit("//" + text)
        port = parts.port
    except ValueError:
        return None
    name = parts.hostname
    if not name or (port is not None and not 0 < port < 65536):
        return None
    return (f"[{name}]" if ":" in name else name), port


def default_hosts(bound: str, port: int) -> list[str]:
    """What a server bound to ``bound``:``port`` answers to unless told otherwise: the bound
    address and ``localhost`` on that port, the loopback addresses, and on a wildcard address
    (0.0.0.0, ::) the machine's own names."""
    address = f"[{bound}]" if ":" in bound else bound
    names = [address, "localhost", "127.0.0.1", "[::1]"]
    if bound in ("0.0.0.0", "::", ""):
        names += [socket.gethostname(), socket.getfqdn()]
    return [f"{name}:{port}" for name in dict.fromkeys(n.lower() for n in names if n)]


class HostCheck:
    """Wraps an ASGI app; HTTP requests whose host is not allowed never reach it."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed: set[tuple[str, int | None]] = set()
        for entry in allowed:
            parsed = parse_host(entry)
            if parsed is None:
                raise ValueError(f"not an allowed host: {entry!r}; expected {HOST_RULE}")
            self.allowed.add(parsed)

    def allows(self, host: str) -> bool:
        parsed = parse_host(host)
        if parsed is None:
            return False
        name, _ = parsed
        return parsed in self.allowed or (name, None) in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":  # the app serves no websockets; lifespan passes through
            refused = self._refusal(scope)
            if refused is not None:
                await _answer_400(send, refused)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> str | None:
        hosts = [v for k, v in scope.get("headers", ()) if k.lower() == b"host"]
        if len(hosts) != 1:
            return "a request must carry exactly one Host header naming this server"
        host = hosts[0].decode("latin-1")
        if not self.allows(host):
            return (
                f"Host {shown(host)!r} is not one this server answers to; its operator can allow "
                "it with dynl2 serve --allowed-host"
            )
        target = bytes(scope.get("raw_path") or b"").decode("latin-1")
        absolute = target.lower().startswith(("http://", "https://"))
        if absolute and not self.allows(urllib.parse.urlsplit(target).netloc):
            return "the request's target names another host than this server"
        return None


async def _answer_400(send: Send, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
