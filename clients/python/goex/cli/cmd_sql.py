"""goex sql SQL: run SQL against a database resource of the current session."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from goex._models import Action
from goex._specs import ActionBody, Limits, Sql
from goex.cli._app import App, UsageError
from goex.cli._render import exit_status, sql_affected_text
from goex.cli._units import parse_duration
from goex.cli.cmd_log import print_sql_rows
from goex.cli.cmd_run import add_approve_flag, print_summary, submit_action
from goex.v1 import actions_pb2

_DESCRIPTION = """\
Run SQL (one statement or a script) in goexd on the session's database. The action
stays pending until `goex commit`; `goex undo` rolls it back, the way the session's
--db-strategy says. SQL '-' reads it from stdin; SQL starting with '-' goes after `--`.
"""

EXIT_HELP = """\
exit status:
  0       the SQL ran (its changes are pending); with --detach: the action was accepted
  125     the action did not complete: blocked by policy, failed (time limit, cancelled,
          lost connection) or interrupted; its changes were rolled back
  1       goex error (daemon not running, unknown session, a statement goexd refuses:
          syntax error, privileged statement, ...); 2: usage error
  130     interrupted (Ctrl-C): on a terminal goex cancels the action, which is rolled
          back; otherwise (--json, or output to a pipe) it may still finish in goexd

A query prints its rows as a table (the first rows only when goexd capped them, then
"... N more rows"); any other statement prints "N rows affected". A summary follows:
the action's id, state and time. --quiet leaves only the rows or the count.
"""


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "sql",
        parents=[common],
        help="run SQL on a database of the current session",
        description=_DESCRIPTION,
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sql", metavar="SQL", help="the statement or script; '-' reads it from stdin")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        dest="params",
        metavar="P",
        help="value bound to the statement's placeholders in order (? in SQLite), as text; "
        "only with a single statement (repeatable)",
    )
    p.add_argument(
        "--inverse",
        metavar="SQL",
        help="SQL that undoes this one (it gets no --param values); with the inverse strategy goexd "
        "tests it first, then uses it to undo",
    )
    p.add_argument("-m", "--description", metavar="TEXT", help="free text for the timeline")
    add_approve_flag(p)
    p.add_argument("--resource", metavar="NAME", help="target database (default: the session's only one)")
    p.add_argument("--timeout", metavar="DURATION", help="time limit: seconds, or 500ms / 2m / 1h")
    p.add_argument("--detach", action="store_true", help="print the action id once accepted and return")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the rows or the affected-row count")
    p.set_defaults(handler=cmd_sql)


def sql_from_args(args: argparse.Namespace) -> tuple[Sql, Sql | None]:
    """The action and its inverse (None without --inverse); SQL '-' is read from stdin."""
    text: str = sys.stdin.read() if args.sql == "-" else args.sql
    if not text.strip():
        raise UsageError("no SQL given")
    inverse: str | None = args.inverse
    if inverse is not None and not inverse.strip():
        raise UsageError("--inverse needs SQL")
    return Sql(text, args.params), Sql(inverse) if inverse is not None else None


def limits_from_sql_args(args: argparse.Namespace) -> Limits | None:
    if not args.timeout:
        return None
    try:
        return Limits(timeout=parse_duration(args.timeout))
    except ValueError as exc:
        raise UsageError(f"--timeout: {exc}") from None


def cmd_sql(app: App, args: argparse.Namespace) -> int:
    body, inverse = sql_from_args(args)
    return submit_from_args(app, args, body, inverse, lambda action: _print(app, args, action))


def _print(app: App, args: argparse.Namespace, action: Action) -> None:
    print_sql_result(app, action)
    if not args.quiet:
        print_summary(app, action)


def submit_from_args(
    app: App, args: argparse.Namespace, body: ActionBody, inverse: ActionBody | None, show: Callable[[Action], None]
) -> int:
    """`goex sql` / `goex http`: submit `body` with the flags they share, `show` the result; the exit status.

    With --detach only the id is printed; with --json the SubmitAction response, not `show`.
    """
    outcome = submit_action(
        app,
        body,
        detach=args.detach,
        resource=args.resource,
        inverse=inverse,
        limits=limits_from_sql_args(args),
        description=args.description,
        approval=args.approve or "",
    )
    if outcome is None:
        return 0
    action, _ = outcome
    if app.json:
        app.emit(actions_pb2.SubmitActionResponse(action=action.proto))
    else:
        show(action)
    return exit_status(action)


def print_sql_result(app: App, action: Action) -> None:
    """A query's rows as a table, else "N rows affected"; nothing when there is no result (blocked, failed)."""
    if action.sql is None:
        return
    if not print_sql_rows(app, action.sql):
        app.out.print(sql_affected_text(action.sql))
