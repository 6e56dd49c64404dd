"""The CLI's last mapping of errors to one line: a database fault is named as one, a fault of
dynl2's own use of SQLAlchemy is not blamed on the database, and no message shows a password."""

from __future__ import annotations

import argparse

import pytest
import sqlalchemy.exc
import sqlalchemy.orm.exc

from study.cli import dispatch as cli
from study.cli import experiments as study_cmds
from study.errors import UsageError

SECRET = "pw-SECRET-9"


def fail_with(exc: BaseException):  # type: ignore[no-untyped-def]
    def handler(args: argparse.Namespace) -> int:
        raise exc

    return handler


CASES = [
    (sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection")),
     "failed: the database failed"),
    (sqlalchemy.orm.exc.DetachedInstanceError("Instance <TrialModel> is not bound to a Session"),
     "failed: internal error (DetachedInstanceError)"),
    (UsageError(f"cannot reach postgresql://u:{SECRET}@db.example/x"), "error: "),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "expected"), CASES, ids=lambda v: type(v).__name__)
def test_errors_become_one_line(monkeypatch, capsys, exc, expected):
    monkeypatch.setattr(study_cmds, "cmd_status", fail_with(exc))
    code = cli.main(["status"])
    err = capsys.readouterr().err
    assert code == (2 if isinstance(exc, UsageError) else 1)
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert SECRET not in err and "Traceback" not in err
