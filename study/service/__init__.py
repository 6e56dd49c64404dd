"""dynl2 for a team: the web service, and the processes that talk to a store or a service from
other machines.

- ``app`` — the Starlette application of ``dynl2 serve``: the pages, the JSON API, submits
- ``data`` — what the pages and the API show, read from the store
- ``reads`` — those reads, each answer kept a moment for every client that asks
- ``pages`` — the HTML of the pages
- ``accept`` — what a request must be: BadRequest, the bearer token, the TOML body; the submission
- ``hosts`` — the Host header check (``--allowed-host``)
- ``submit`` — the client of ``dynl2 submit``
- ``agent`` — ``dynl2 agent``: a worker that follows the store and takes what needs doing

May import :mod:`study.errors`, :mod:`study.config`, :mod:`study.search`, :mod:`study.run`,
:mod:`study.api` and the layers below :mod:`study`; never :mod:`study.cli`.
"""

# ``dynl2 agent --poll``'s default, here rather than in ``agent``, whose imports (SQLAlchemy,
# Optuna, pandas) the parser of every verb would otherwise wait for.
DEFAULT_POLL_S = 5.0
