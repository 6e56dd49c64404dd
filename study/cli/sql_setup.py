"""``dynl2 sql-setup``: create the PostgreSQL role that ``dynl2 sql`` logs in as.

Prints every statement it runs (as a script psql would accept), so an administrator sees, or
with ``--print`` runs by hand, exactly what it grants. The work is :func:`storage.set_up_reader`.
"""

from __future__ import annotations

import argparse
from typing import Any

import storage
from study.cli.args import storage_flag


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "sql-setup",
        help="create the read-only PostgreSQL login that dynl2 sql queries as",
        description="Create (or reset) the PostgreSQL role dynl2_reader_<database>: a login "
        "that may SELECT from the store's tables and nothing else, in read-only sessions with "
        "time limits. Prints the SQL it runs. Run it once per store database, as a superuser "
        "or as the owner of the store's tables with CREATEROLE; running it again is safe.",
    )
    p.add_argument("--role", metavar="NAME", help="the role's name (default: dynl2_reader_DB)")
    p.add_argument(
        "--new-password",
        action="store_true",
        help="give an existing role a new generated password (a new role always gets one)",
    )
    p.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="print the SQL, run nothing",
    )
    storage_flag(p)
    p.set_defaults(handler=cmd_sql_setup)


def cmd_sql_setup(args: argparse.Namespace) -> int:
    from storage.pg_reader import reader_role_name  # SQLAlchemy: not for the parser

    setup = storage.set_up_reader(
        args.storage, role=args.role, new_password=args.new_password, execute=not args.print_only
    )
    role = setup.role
    print(f"-- dynl2 sql-setup: the read-only login {role} for database {setup.database}")
    print(f"-- run as {setup.admin}, in one transaction:")
    print("BEGIN;")
    for statement in setup.statements:
        print(f"{statement};")
    if setup.password_set:
        print(f"-- ALTER ROLE {role} PASSWORD '...';  (generated; it is in the reader URL below)")
    print("COMMIT;")
    if not setup.executed:
        print("-- printed only (--print): nothing was run.")
        return 0
    if role != reader_role_name(setup.database):  # dynl2 sql looks for the default name
        print(f"-- done: give dynl2 sql this URL in ${storage.READER_URL_ENV} to query as {role}:")
        print(setup.reader_url)
        return 0
    print(f"-- done: dynl2 sql now runs its queries logged in as {role}.")
    if setup.password_set:
        print(
            "-- Where the server asks that login for a password, give dynl2 sql this URL as "
            f"--reader-url or ${storage.READER_URL_ENV} (or put the password in ~/.pgpass):"
        )
        print(setup.reader_url)
    return 0
