"""``dynl2 submit``'s client: one POST of an experiment file to a dynl2 server.

The bearer token goes to the origin it was given for and nowhere else: a redirect is not
followed (urllib would copy ``Authorization`` to wherever it points) but reported as an error
naming where it pointed. The server's answer is read within :data:`ANSWER_LIMIT` bytes, must be
the JSON object a dynl2 server sends, and whatever of it is shown is made printable first
(:func:`printable`), so an answer cannot write escape sequences to the user's terminal.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import IO

from study import errors
from study.errors import StudyError

ANSWER_LIMIT = 64 * 1024  # bytes of the server's answer read, at most
SHOWN_LIMIT = 200  # characters of anything the server or the user wrote, echoed in a line
TIMEOUT_S = 60

__all__ = ["ANSWER_LIMIT", "SubmitError", "Submitted", "printable", "submit"]


class SubmitError(StudyError):
    """The submission did not go through; ``status`` is the exit status the CLI gives (2 for
    what the server refused as the user's mistake, 1 for everything else)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Submitted:
    name: str  # the experiment's name, as the server gives it
    created: bool  # False: it was there already, with the same config
    url: str  # the experiment's page on the server (absolute)


def printable(text: str, limit: int = SHOWN_LIMIT) -> str:
    """``text`` as one printable line of at most ``limit`` characters
    (:func:`study.errors.printable`)."""
    return errors.printable(text, limit)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Every redirect ends as its own HTTPError (3xx): the token never follows one."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def submit(server: str, text: str, token: str) -> Submitted:
    """POST ``text`` (an experiment's TOML, already validated by the caller) to
    ``server``/api/experiments with the bearer token; the experiment as the server created or
    found it. Raises :class:`SubmitError` with one printable line."""
    url = server.rstrip("/") + "/api/experiments"
    request = urllib.request.Request(
        url,
        data=text.encode("utf-8"),
        method="POST",
        headers={"Content-Type": "application/toml", "Authorization": f"Bearer {token}"},
    )
    try:
        with _OPENER.open(request, timeout=TIMEOUT_S) as response:
            body = response.read(ANSWER_LIMIT + 1)
    except urllib.error.HTTPError as exc:
        with exc:
            raise _refused(server, exc) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = printable(str(getattr(exc, "reason", exc)))
        raise SubmitError(f"no answer from {printable(server)}: {reason}") from None
    answer = _json_object(body, server)
    name, url_path = answer.get("experiment"), answer.get("url")
    if not isinstance(name, str) or not isinstance(url_path, str):
        raise SubmitError(f"{printable(server)} answered without an experiment and its url")
    return Submitted(
        name=printable(name),
        created=answer.get("created") is True,
        url=printable(urllib.parse.urljoin(url, url_path), limit=2 * SHOWN_LIMIT),
    )


def _refused(server: str, exc: urllib.error.HTTPError) -> SubmitError:
    if 300 <= exc.code < 400:
        where = printable(exc.headers.get("Location") or "nowhere")
        return SubmitError(
            f"{printable(server)} answered with a redirect (HTTP {exc.code}) to {where}; the "
            "token is sent only to the server given, so give --server the address it should go "
            "to"
        )
    try:
        answer = _json_object(exc.read(ANSWER_LIMIT + 1), server)
        message = printable(str(answer["error"]), limit=2 * SHOWN_LIMIT)
    except (SubmitError, KeyError, OSError):
        message = printable(str(exc.reason))
    return SubmitError(f"{message} (HTTP {exc.code})", status=2 if exc.code < 500 else 1)


def _json_object(body: bytes, server: str) -> dict[str, object]:
    if len(body) > ANSWER_LIMIT:
        raise SubmitError(
            f"{printable(server)} answered with more than {ANSWER_LIMIT // 1024} KiB; a dynl2 "
            "server answers with one short JSON object"
        )
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past Python's stack
        answer = None
    if not isinstance(answer, dict):
        raise SubmitError(
            f"{printable(server)} answered with something other than a JSON object; is it a "
            "dynl2 server?"
        )
    return answer
