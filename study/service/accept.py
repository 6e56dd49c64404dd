"""What a request to ``dynl2 serve`` must be to be answered, and a submission accepted:
:class:`BadRequest` (a status and one line), the bearer token, an experiment's TOML as the body
(its type and size), and the submission itself, which creates or resumes the experiment
exactly as ``dynl2 run`` would."""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request

from storage import ExperimentNotFound, Store
from study.config.experiment import inspected, parse_experiment
from study.config.own import code_problem, files_named, resolve_paths, roots_named
from study.config.reader import MAX_CONFIG_BYTES, parse_config_text
from study.run.runs import create_or_resume, resume_problem
from study.service.data import reading
from study.service.reads import Reads

__all__ = ["BadRequest", "authorize", "submit", "toml_body"]

log = logging.getLogger("dynl2.serve")

_TOO_LARGE = f"the body is over {MAX_CONFIG_BYTES} bytes; a config is smaller"
_TOML_TYPES = ("application/toml", "text/plain", "text/x-toml")


class BadRequest(Exception):
    """A request the server refuses: ``status`` and one line for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def authorize(request: Request, token: str | None) -> None:
    if token is None:
        raise BadRequest(
            403,
            "this server is read-only: it accepts experiments when started with a token "
            "(--token-file or DYNL2_SERVE_TOKEN)",
        )
    given = request.headers.get("authorization")
    if given is None:
        raise BadRequest(401, "a submission needs the header 'Authorization: Bearer TOKEN'")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        value.strip().encode(), token.encode()
    ):
        raise BadRequest(403, "the bearer token is not this server's")


async def toml_body(request: Request) -> str:
    """The request's body as text: an experiment's TOML, at most MAX_CONFIG_BYTES."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in _TOML_TYPES:
        raise BadRequest(
            415, f"content type {kind or 'none'!r}: send the TOML as {', '.join(_TOML_TYPES)}"
        )
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_CONFIG_BYTES):
        raise BadRequest(413, _TOO_LARGE)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CONFIG_BYTES:
            raise BadRequest(413, _TOO_LARGE)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, "the body is not UTF-8 text") from None


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([os.path.realpath(path), root]) == root


def submit(
    writer: Store,
    reads: Reads,
    text: str,
    *,
    allow_code: Sequence[str] = (),
    data_root: str | None = None,
) -> tuple[dict[str, Any], int]:
    """Create (or resume) the experiment in ``text`` as ``dynl2 run`` would: its answer and
    status (201 created, 200 resumed). A config that names code (a loader, a factory, a loop)
    is refused (403) unless its modules are under ``allow_code``, and imported from a folder
    outside ``data_root`` (else the working directory) never; a data file must lie under
    ``data_root`` (a relative path is read from there)."""
    document = parse_config_text(text, "the request body")
    problem = code_problem(document, allow_code)
    if problem is not None:
        raise BadRequest(403, f"this server refuses the experiment: {problem}")
    if files_named(document) and data_root is None:
        raise BadRequest(
            403, "this server reads no data files (data.path): start it with --data-root FOLDER"
        )
    root = os.path.realpath(data_root or os.getcwd())
    document = resolve_paths(document, root)
    for path in files_named(document):
        if not _inside(path, root):
            raise BadRequest(403, f"data.path {path!r} lies outside the server's --data-root")
    for key, folder in roots_named(document).items():  # the allowed modules, from here only
        if not _inside(folder, root):
            raise BadRequest(
                403,
                f"{key} {folder!r} lies outside the folder this server imports code from "
                "(--data-root, else its working directory)",
            )
    config = inspected(parse_experiment(document))
    with writer.lock(f"dynl2:submit:{config.name}"):
        with reading(config.name):  # a stored config it cannot read is the store's (503)
            try:
                writer.get_experiment(config.name)
                created = False
            except ExperimentNotFound:
                created = True
            problem = resume_problem(writer, config)
        if problem is not None:  # the name is taken by another config (or another's studies)
            raise BadRequest(409, problem)
        create_or_resume(writer, config)
    reads.forget()
    log.info("%s experiment %s", "created" if created else "resumed", config.name)
    return (
        {"experiment": config.name, "created": created, "url": f"/experiments/{config.name}"},
        201 if created else 200,
    )
