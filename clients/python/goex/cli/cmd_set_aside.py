"""goex set-aside list / restore: what goexd overwrote of your work and kept, and bringing it back."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from goex._exceptions import FailedPrecondition, NotFound
from goex._set_asides import SetAside
from goex.cli._app import App, CliError
from goex.cli._text import Text
from goex.cli._units import format_duration
from goex.v1 import actions_pb2

EXIT_UNVERIFIED = 3  # restored, but goexd could not confirm every path is back as it was kept
_PATHS_SHOWN = 3  # paths listed per row; the rest as "+N more"

_ABOUT = """\
A set-aside is a version of your work that goexd overwrote and kept: when `goex undo --force`
(or `goex undo-to --force`) took back an action over files changed since it ran, and when an
action changed a file you were editing while it ran (its warnings name the set-aside). Each one
stays until you restore it or the snapshot retention (gc.retention_hours) expires it; a
workspace keeps its set-asides across sessions, so a later session over it lists them too."""

RESTORE_EXIT_HELP = """\
exit status:
  0   restored, and goexd verified every path is back as it was kept
  3   restored, but NOT verified (on stderr): check the paths yourself
  1   refused or failed, nothing restored: unknown ID, a path changed since it was set
      aside (without --force; the error names the paths), daemon not running
"""


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "set-aside",
        parents=[common],
        help="versions of your files goexd overwrote and kept (list, restore)",
        description=_ABOUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    ls = verbs.add_parser(
        "list",
        parents=[common],
        help="the current session's set-asides, oldest first",
        description="The set-asides of the current session's workspaces, oldest first: one row each with "
        "its ID, age, workspace resource, the action whose undo or run overwrote it ('-' when a forced "
        f"restore did), its first {_PATHS_SHOWN} paths (names shown escaped) and why. --json prints the "
        "ListSetAsides response: {set_asides: [{id, resource, action_id, created_at (RFC 3339, UTC), "
        "reason, paths (display form), paths_bytes (the exact names, base64)}]}; [] when there are none.",
    )
    ls.set_defaults(handler=cmd_list)

    restore = verbs.add_parser(
        "restore",
        parents=[common],
        help="bring a set-aside back into the workspace",
        description="Put the versions set-aside ID kept back into the workspace, then forget it. Like an "
        "undo it is three-way: each path goes back where it is still as goexd left it; if one changed "
        "since, nothing is restored and the error names it, unless --force. Prints what goexd did; --json "
        "prints the RestoreSetAside response ({verified, detail}).",
        epilog=RESTORE_EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    restore.add_argument("id", metavar="ID", help="set-aside id (see `goex set-aside list`)")
    restore.add_argument(
        "--force",
        action="store_true",
        help="also overwrite paths changed since; nothing is lost: those versions are set aside in turn",
    )
    restore.set_defaults(handler=cmd_restore)


def cmd_list(app: App, args: argparse.Namespace) -> int:
    session_id = app.session_id()
    with _hinted(app, session_id, None):
        found = app.client().set_asides(session_id)
    if app.json:
        app.emit(actions_pb2.ListSetAsidesResponse(set_asides=[s.proto for s in found]))
        return 0
    if not found:
        app.err.print("no set-asides", style="dim")
        return 0
    now = datetime.now(UTC)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("ID", "AGE", "RESOURCE", "ACTION", "PATHS", "REASON"):
        table.add_column(col, no_wrap=col != "REASON")
    for s in found:
        age = (now - s.created_at).total_seconds() if s.created_at is not None else None
        table.add_row(
            Text(s.id),
            format_duration(max(age, 0.0) if age is not None else None),
            Text(s.resource),
            Text(s.action_id or "-"),
            Text(paths_cell(s)),
            Text(s.reason),
        )
    app.print_table(table)
    return 0


def paths_cell(s: SetAside) -> str:
    """The first few display paths, then how many more."""
    shown = ", ".join(s.paths[:_PATHS_SHOWN])
    more = len(s.paths) - _PATHS_SHOWN
    return f"{shown} +{more} more" if more > 0 else shown


def hint(exc: NotFound | FailedPrecondition, session_id: str, set_aside_id: str | None) -> str | None:
    """What to do next, for goexd's refusals (its message names the id, the session or the paths)."""
    if isinstance(exc, NotFound):  # the set-aside (not the session: "session '...' not found")
        return f"`goex set-aside list` shows session {session_id}'s" if exc.message.startswith("set-aside ") else None
    if exc.message.endswith(" is closed"):
        return "set-asides stay with the workspace: a session opened over it lists them"
    if set_aside_id is not None and "force" in exc.message:  # paths changed since ("... force it to ...")
        return f"`goex set-aside restore {set_aside_id} --force` sets those versions aside in turn"
    return None


@contextmanager
def _hinted(app: App, session_id: str, set_aside_id: str | None) -> Iterator[None]:
    """goexd's refusal with what to do next appended (--json: goexd's message as it is)."""
    try:
        yield
    except (NotFound, FailedPrecondition) as exc:
        then = hint(exc, session_id, set_aside_id)
        if app.json or then is None:
            raise
        raise CliError(f"{exc.message} ({then})", code=exc.code_name) from None


def cmd_restore(app: App, args: argparse.Namespace) -> int:
    session_id = app.session_id()
    with _hinted(app, session_id, args.id):
        restored = app.client().restore_set_aside(session_id, args.id, force=args.force)
    if app.json:
        app.emit(restored.proto)
    else:
        app.out.print(Text(f"restored {args.id}: {restored.detail}"))
    if restored.verified:
        return 0
    if not app.json:
        app.err.print(Text("  NOT verified: goexd could not confirm every path is back as kept", style="bold red"))
    return EXIT_UNVERIFIED
