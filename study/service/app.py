"""``dynl2 serve``: a web view and a JSON API over one store (a Starlette app).

    app = make_app("postgresql+psycopg://...")        # or None: $DYNL2_STORAGE, else SQLite
    uvicorn.run(app, host="127.0.0.1", port=8000)     # what `dynl2 serve` does

Pages: ``/`` (the experiments), ``/experiments/NAME`` (progress per arm and replicate, kept
current by polling its JSON; the stored reports, the newest in a sandboxed frame),
``/experiments/NAME/trials`` (paged and sorted, with CSV and JSON downloads),
``/reports/ID`` (a stored report: the HTML as it was written). API: ``GET /api/experiments``,
``/api/experiments/NAME`` (what ``dynl2 status NAME`` shows), ``/api/experiments/NAME/trials``
(``format=json|csv``, ``offset``, ``limit``, ``sort``, ``order``, ``arm``),
``/api/experiments/NAME/reports``, ``/api/reports/ID``, ``/healthz``; and
``POST /api/experiments`` with an experiment's TOML as the body, which creates (or resumes)
it exactly as ``dynl2 run`` would (validated whole first; nothing written when it is refused),
for the agents (``dynl2 agent``, ``dynl2 worker``) to run.

Submitting needs the bearer token the server was given (``Authorization: Bearer TOKEN``; 401
without one, 403 with another); a server given no token is read-only (403).

Every read goes through a store opened read-only (:func:`storage.open` with ``read_only``):
the database itself refuses a write on the server's connections. A bad request gets a status
and one line naming the problem and what is allowed (JSON ``{"error": ...}`` under ``/api``, a
page elsewhere), never a traceback; an unexpected failure is logged and answered 500 with no
detail. A store that fails (unreachable, dropped, moved away, or holding a row it cannot read)
is answered 503 with its one line on every endpoint, and logged as that line; an experiment
whose stored config cannot be read is listed as unreadable, with the reason, among the others.
Pages carry a Content-Security-Policy that runs scripts from this server only; a stored report
is served sandboxed (its own inline plotly.js runs, with no access to the server's origin).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

import storage
from storage import (
    ExperimentConflict,
    ExperimentNotFound,
    InvalidRecord,
    ReportNotFound,
    StorageError,
    Store,
)
from study.config.arms import NAME, NAME_RULE
from study.config.reader import ExperimentConfigError
from study.errors import UsageError
from study.run.queries import frame_csv, frame_json, json_cells
from study.service.accept import BadRequest, authorize, submit, toml_body
from study.service.data import (
    MAX_PAGE,
    TrialsPage,
    quoted,
    report_entry,
)
from study.service.pages import LIVE_JS, render_page
from study.service.reads import Reads

__all__ = ["make_app"]

log = logging.getLogger("dynl2.serve")

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; frame-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'self'"
)
# A stored report: its own inline scripts and styles (plotly.js) run in a sandbox, an opaque
# origin that can neither read the API with the user's cookies nor navigate the page above it.
REPORT_CSP = (
    "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; frame-ancestors 'self'"
)
MAX_ID_DIGITS = 40  # a report id longer than this is not read as a number at all
_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_TRIALS_PARAMS = ("format", "offset", "limit", "sort", "order", "arm")
_FORMATS = ("json", "csv")
_REASONS = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    500: "Error",
    503: "Service Unavailable",
}


class _State:
    """The read-only store every read goes through, and (with a token) the writable one that
    submissions use, opened on the first."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token
        if token is not None:  # a store a team starts empty: create it, then read it
            storage.open(url, create=True).close()
        self.store = storage.open(url, read_only=True)
        self.reads = Reads(self.store)
        self._writer: Store | None = None
        self._lock = threading.Lock()

    def writer(self) -> Store:
        with self._lock:
            if self._writer is None:
                self._writer = storage.open(self.url, create=True)
            return self._writer

    def close(self) -> None:
        self.store.close()
        if self._writer is not None:
            self._writer.close()


def make_app(
    storage_url: str | None = None,
    *,
    token: str | None = None,
    allow_code: Sequence[str] = (),
    data_root: str | None = None,
) -> Starlette:
    """The app over the store at ``storage_url`` (resolved as ``--storage`` is), opened
    read-only now: a missing or unreachable store raises its :class:`storage.StorageError`
    here, before any request. With ``token``, ``POST /api/experiments`` accepts experiments
    from requests that carry it (and a missing store is created); without, the server only
    reads. A submission that names code is accepted only from the modules of ``allow_code``
    (module-name prefixes), and one that reads a data file only from under ``data_root``."""
    if token is not None and not token:
        raise UsageError("token: empty; a token is a non-empty string")
    url = storage.resolve_url(storage_url)
    state = _State(url, token)
    allow = tuple(allow_code)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.close()

    def store() -> Reads:
        return state.reads

    async def submitted(request: Request) -> Response:
        try:
            authorize(request, state.token)
            text = await toml_body(request)
            answer, status = await run_in_threadpool(
                lambda: submit(  # opens the writer once
                    state.writer(), state.reads, text, allow_code=allow, data_root=data_root
                )
            )
            return _json(answer, status)
        except Exception as exc:
            status, message = _failure(exc)
            return _json({"error": message}, status)

    routes = [
        Route("/", _page(store, _experiments_page)),
        Route("/experiments/{name}", _page(store, _experiment_page)),
        Route("/experiments/{name}/trials", _page(store, _trials_html)),
        Route("/reports/{report_id}", _page(store, _report_page)),
        Route("/static/live.js", _live_js),
        Route("/healthz", _api(store, _healthz)),
        Route("/api/experiments", _api(store, _api_experiments), methods=["GET"]),
        Route("/api/experiments", submitted, methods=["POST"]),
        Route("/api/experiments/{name}", _api(store, _api_experiment)),
        Route("/api/experiments/{name}/trials", _api(store, _api_trials)),
        Route("/api/experiments/{name}/reports", _api(store, _api_reports)),
        Route("/api/reports/{report_id}", _api(store, _api_report)),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},  # type: ignore[dict-item]
    )


# --------------------------------------------------------------------------- plumbing

Handler = Callable[[Reads, Request], Response]


def _failure(exc: Exception) -> tuple[int, str]:
    """The status and the line a handler's exception is answered with."""
    if isinstance(exc, BadRequest):
        return exc.status, str(exc)
    if isinstance(exc, ExperimentNotFound | ReportNotFound):
        return 404, storage.first_line(exc)
    if isinstance(exc, UsageError | ExperimentConfigError):
        return 400, str(exc)
    if isinstance(exc, InvalidRecord):  # a value the request gave that no row can hold
        return 400, storage.first_line(exc)
    if isinstance(exc, ExperimentConflict):
        return 409, storage.first_line(exc)
    if isinstance(exc, StorageError):
        # The request was fine; the store could not answer it (unreachable, dropped, moved
        # away, or holding a row it cannot read): the store's one line, logged as that.
        line = storage.first_line(exc)
        log.error("store error: %s", line)
        return 503, line
    if isinstance(exc, SQLAlchemyError):
        # A driver error storage did not translate is still the store failing, not a fault
        # of this server: one line, as the translated ones, never a traceback.
        line = f"the store failed: {storage.first_line(getattr(exc, 'orig', None) or exc)}"
        log.error("store error: %s", line)
        return 503, line
    log.exception("unexpected error")
    return 500, "internal error: the server could not answer; its log says why"


def _api(store: Callable[[], Reads], handler: Handler) -> Callable[[Request], Response]:
    """A sync endpoint (Starlette runs it in its thread pool) whose failures are JSON."""

    def endpoint(request: Request) -> Response:
        try:
            return handler(store(), request)
        except Exception as exc:
            status, message = _failure(exc)
            return _json({"error": message}, status)

    return endpoint


def _page(store: Callable[[], Reads], handler: Handler) -> Callable[[Request], Response]:
    """A sync page endpoint whose failures are an error page."""

    def endpoint(request: Request) -> Response:
        try:
            return handler(store(), request)
        except Exception as exc:
            status, message = _failure(exc)
            return _error_page(store().store, status, message)

    return endpoint


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=_HEADERS)


def _html(text: str, status: int = 200, csp: str = PAGE_CSP) -> HTMLResponse:
    return HTMLResponse(
        text, status_code=status, headers={**_HEADERS, "Content-Security-Policy": csp}
    )


def _error_page(store: Store, status: int, message: str) -> HTMLResponse:
    context = {
        "store": store.display_url,
        "status": status,
        "reason": _REASONS.get(status, ""),
        "message": message,
    }
    return _html(render_page("error", context), status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Routing's own refusals (no such path, a method not allowed), in the same shape."""
    path = _shown(request.url.path)
    message = {
        404: f"no such address: {path}",
        405: f"method {_shown(request.method)} not allowed on {path}",
    }.get(exc.status_code, str(exc.detail))
    if request.url.path.startswith("/api/") or request.url.path == "/healthz":
        return _json({"error": message}, exc.status_code)
    return _html(render_page("error", _plain_error(exc.status_code, message)), exc.status_code)


def _plain_error(status: int, message: str) -> dict[str, Any]:
    return {"store": "", "status": status, "reason": _REASONS.get(status, ""), "message": message}


def _shown(text: str) -> str:
    """A path from the request, clipped for a message (it may be thousands of characters)."""
    return text if len(text) <= 120 else f"{text[:120]}... ({len(text)} characters)"


def _name(request: Request) -> str:
    name = str(request.path_params["name"])
    if not NAME.fullmatch(name):
        raise BadRequest(400, f"experiment: an experiment name is {NAME_RULE}, got {quoted(name)}")
    return name


def _report_id(reads: Reads, request: Request) -> int:
    """The report id of the path: a whole number (of any size: one past what an id holds
    is no stored report's, as storage says); anything else is no address of this server."""
    text = str(request.path_params["report_id"])
    if not (text.isascii() and text.isdigit()):
        raise BadRequest(404, f"no such address: {_shown(request.url.path)}")
    digits = text.lstrip("0") or "0"
    if len(digits) > MAX_ID_DIGITS:  # not worth making a number of: no id is that long
        raise ReportNotFound(
            f"No report with id {digits[:20]}... ({len(digits)} digits) is stored in "
            f"{reads.store.display_url}"
        )
    return int(digits)


def _query(request: Request, allowed: tuple[str, ...]) -> Mapping[str, str]:
    """The query parameters, each at most once and each one of ``allowed``."""
    params = request.query_params
    for key in params:
        if key not in allowed:
            raise BadRequest(
                400,
                f"{_shown(key)}: unknown parameter; allowed: {', '.join(allowed) or 'none'}",
            )
        if len(params.getlist(key)) > 1:
            raise BadRequest(400, f"{key}: given more than once")
    return params


def _whole(
    params: Mapping[str, str], key: str, default: int | None, low: int, high: int
) -> int | None:
    text = params.get(key)
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text) or not low <= int(text) <= high:
        raise BadRequest(
            400, f"{key}: expected a whole number from {low} to {high}, got {quoted(text)}"
        )
    return int(text)


def _trials(reads: Reads, request: Request) -> tuple[str, str, TrialsPage]:
    params = _query(request, _TRIALS_PARAMS)
    fmt = params.get("format", "json")
    if fmt not in _FORMATS:
        raise BadRequest(400, f"format: expected one of {', '.join(_FORMATS)}, got {quoted(fmt)}")
    offset = _whole(params, "offset", 0, 0, 10**9)
    assert offset is not None
    # A JSON page holds 100 rows unless asked; a CSV download holds them all unless asked.
    limit = _whole(params, "limit", 100 if fmt == "json" else None, 1, MAX_PAGE)
    name = _name(request)
    page = reads.trials(
        name,
        arm=params.get("arm"),
        offset=offset,
        limit=limit,
        sort=params.get("sort"),
        order=params.get("order", "asc"),
    )
    return name, fmt, page


# ----------------------------------------------------------------------------- the API


def _healthz(reads: Reads, request: Request) -> Response:
    _query(request, ())
    # One read, never cached: the database answers now. The list without configs, so that
    # one experiment's damaged config does not make the whole server look down.
    reads.store.experiment_list()
    return _json({"status": "ok", "store": reads.store.display_url})


def _api_experiments(reads: Reads, request: Request) -> Response:
    _query(request, ())
    return _json({"store": reads.store.display_url, "experiments": reads.overview()})


def _api_experiment(reads: Reads, request: Request) -> Response:
    _query(request, ())
    return _json(reads.detail(_name(request)))


def _api_trials(reads: Reads, request: Request) -> Response:
    name, fmt, page = _trials(reads, request)
    headers = {**_HEADERS, "X-Total-Count": str(page.total)}
    if fmt == "csv":
        headers["Content-Disposition"] = f'attachment; filename="{name}-trials.csv"'
        return Response(frame_csv(page.frame), media_type="text/csv", headers=headers)
    body = (
        f'{{"experiment": {json.dumps(name)}, "total": {page.total}, "offset": {page.offset}, '
        f'"limit": {"null" if page.limit is None else page.limit}, '
        f'"rows": {frame_json(page.frame)}}}'
    )
    return Response(body, media_type="application/json", headers=headers)


def _api_reports(reads: Reads, request: Request) -> Response:
    _query(request, ())
    return _json({"reports": reads.detail(_name(request))["reports"]})


def _api_report(reads: Reads, request: Request) -> Response:
    _query(request, ())
    return _json(report_entry(reads.store, _report_id(reads, request)))


# --------------------------------------------------------------------------- submitting


# ------------------------------------------------------------------------------ pages


def _experiments_page(reads: Reads, request: Request) -> Response:
    _query(request, ())
    context = {"store": reads.store.display_url, "experiments": reads.overview()}
    return _html(render_page("experiments", context))


def _experiment_page(reads: Reads, request: Request) -> Response:
    _query(request, ())
    detail = reads.detail(_name(request))
    return _html(render_page("experiment", {"store": reads.store.display_url, "e": detail}))


def _trials_html(reads: Reads, request: Request) -> Response:
    params = dict(request.query_params)
    params.pop("format", None)
    name, _, page = _trials(reads, request)
    base = f"/experiments/{urllib.parse.quote(name)}/trials"
    api = f"/api/experiments/{urllib.parse.quote(name)}/trials"

    def link(path: str, **changes: object) -> str:
        merged = {**params, **{k: str(v) for k, v in changes.items() if v is not None}}
        for key in [k for k, v in changes.items() if v is None]:
            merged.pop(key, None)
        query = urllib.parse.urlencode(merged)
        return f"{path}?{query}" if query else path

    limit = page.limit or 100
    shown = json_cells(page.frame)
    columns = [str(c) for c in shown.columns]
    rows = [["" if _missing(v) else str(v) for v in row] for row in shown.itertuples(index=False)]
    context = {
        "store": reads.store.display_url,
        "name": name,
        "arm": params.get("arm"),
        "total": page.total,
        "first": min(page.offset + 1, page.total) if page.total else 0,
        "last": page.offset + len(rows),
        "columns": columns,
        "rows": rows,
        "sort": page.sort,
        "order": page.order,
        "sort_links": {
            c: link(
                base,
                sort=c,
                order="desc" if c == page.sort and page.order == "asc" else "asc",
                offset=None,
            )
            for c in columns
            if c != "params"
        }
        | {"params": link(base)},
        "links": {
            "prev": link(base, offset=max(page.offset - limit, 0) or None)
            if page.offset > 0
            else None,
            "next": link(base, offset=page.offset + limit)
            if page.offset + limit < page.total
            else None,
            "csv": link(api, format="csv", offset=None, limit=None),
            "json": link(api, format="json"),
        },
    }
    return _html(render_page("trials", context))


def _missing(value: object) -> bool:
    try:
        return bool(value is None or value != value)  # None, NaN, NaT
    except (TypeError, ValueError):
        return False


def _report_page(reads: Reads, request: Request) -> Response:
    _query(request, ())
    report = reads.store.report(_report_id(reads, request))
    return _html(report.html, csp=REPORT_CSP)


async def _live_js(request: Request) -> Response:
    return Response(
        LIVE_JS,
        media_type="text/javascript",
        headers={**_HEADERS, "Cache-Control": "no-cache"},
    )
