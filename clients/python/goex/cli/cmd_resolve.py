"""goex commit / goex undo / goex undo-to: resolve pending actions."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from goex._enums import Verdict
from goex._exceptions import FailedPrecondition
from goex._models import Action
from goex.cli._app import App, CliError
from goex.cli._refs import ACTION_HELP, session_for
from goex.cli._render import undo_check_text
from goex.cli._text import Text
from goex.v1 import actions_pb2

EXIT_NOT_VERIFIED = 3  # undone, but goexd's check found the resource is not back as it was
EXIT_UNVERIFIED = 4  # undone, but goexd had nothing to compare the result against
UNDO_EXIT_HELP = """\
exit status:
  0   undone, and every undo verified (goex undo-to: also when nothing came after ACTION)
  3   undone, but at least one undo's check failed: the resource is NOT back as it was (NOT
      verified: on stderr says what differs; --json: its reversibility verdict is "failed")
  4   undone, but at least one undo could not be checked: goexd had nothing to compare the
      result against (unverified: on stderr says why; --json: verdict "unknown"); check the
      resource yourself (3 wins when both happen)
  1   goex error, nothing undone: daemon not running, nothing pending (goex undo), a later pending action
      in the way (without --cascade), paths changed since the action (without --force; the
      error names them), an irreversible action, an inverse that failed
"""
FORCE_HELP = (
    "on a workspace, also take back paths changed since the action (by you or a later action) instead "
    "of refusing; nothing is lost: the versions it overwrites are set aside, listed by `goex set-aside "
    "list` and brought back by `goex set-aside restore ID`"
)
THREE_WAY = (
    "A workspace undo is three-way: each path the action changed goes back only where it is still as "
    "the action left it, and files it did not touch are left alone; a path changed since refuses the "
    "undo (the error names it) unless --force."
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    c = sub.add_parser(
        "commit",
        parents=[common],
        help="keep pending actions (all, or up to one)",
        description="Commit the current session's pending actions, oldest first: all of them, "
        "or those up to and including --up-to.",
    )
    c.add_argument("--up-to", metavar="ACTION", help=f"last action to commit ({ACTION_HELP})")
    c.set_defaults(handler=cmd_commit)

    u = sub.add_parser(
        "undo",
        parents=[common],
        help="roll back a pending action (default: the newest)",
        description="Undo one pending action of the current session (the newest when ACTION is "
        "omitted). The daemon refuses while a later pending action on the same resource exists (on a "
        "workspace: one that changed some of the same paths), unless --cascade also undoes those, newest "
        f"first. {THREE_WAY} Prints one line per undone action, and on stderr how goexd checked the undo "
        "(verified: ..., NOT verified: ... or unverified: ...) and what it set aside.",
        epilog=UNDO_EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    u.add_argument("action", nargs="?", metavar="ACTION", help=ACTION_HELP)
    u.add_argument("--cascade", action="store_true", help="also undo later pending actions on the resource")
    u.add_argument("--force", action="store_true", help=FORCE_HELP)
    u.set_defaults(handler=cmd_undo)

    t = sub.add_parser(
        "undo-to",
        parents=[common],
        help="roll back every pending action after ACTION",
        description="Undo every pending action after ACTION, newest first; ACTION itself stays. "
        f"{THREE_WAY} Prints what `goex undo` prints.",
        epilog=UNDO_EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("action", metavar="ACTION", help=ACTION_HELP)
    t.add_argument("--force", action="store_true", help=FORCE_HELP)
    t.set_defaults(handler=cmd_undo_to)


def _report(app: App, verb: str, actions: Sequence[Action], *, none: str) -> None:
    if not actions:
        app.err.print(none, style="dim")
        return
    for a in actions:
        line = Text(f"{verb} {a.id} (seq {a.seq})")
        if a.spec is not None and a.spec.text:
            line.append(f"  {a.spec.text}", style="dim")
        app.out.print(line)
        check = undo_check_text(a)
        if check is not None:
            app.err.print(check)


def undo_exit_status(undone: Sequence[Action]) -> int:
    """3 when an undo's check failed, 4 when one had nothing to compare against: either way the action is undone,
    but a script must not take the state as restored."""
    verdicts = {a.reversibility.verdict for a in undone if a.reversibility is not None}
    if Verdict.FAILED in verdicts:
        return EXIT_NOT_VERIFIED
    return EXIT_UNVERIFIED if Verdict.UNKNOWN in verdicts else 0


def cmd_commit(app: App, args: argparse.Namespace) -> int:
    committed = app.client().commit(app.session_id(), up_to=args.up_to)  # goexd resolves it in the session
    if app.json:
        app.emit(actions_pb2.CommitActionsResponse(committed=[a.proto for a in committed]))
    else:
        _report(app, "committed", committed, none="nothing to commit")
    return 0


def _undo_hint(exc: FailedPrecondition, command: str) -> str | None:
    """The flags that get past goexd's refusal (its message names the paths and says cascade or force)."""
    if "force" in exc.message:  # "changed since it ran ...: PATHS; ... (cascade), or force the undo ..."
        cascade = "--cascade, or " if command == "undo" else ""
        return f"goex {command} {cascade}--force: what it overwrites is set aside, see `goex set-aside list`"
    if "cascade" in exc.message and command == "undo":  # "later pending actions ...; ... ask to cascade"
        return "goex undo --cascade"
    return None


@contextmanager
def _refusal_hint(app: App, command: str) -> Iterator[None]:
    try:
        yield
    except FailedPrecondition as exc:
        hint = _undo_hint(exc, command)
        if app.json or hint is None:
            raise
        raise CliError(f"{exc.message} ({hint})", code=exc.code_name) from None


def cmd_undo(app: App, args: argparse.Namespace) -> int:
    with _refusal_hint(app, "undo"):
        undone = app.client().undo(app.session_id(), args.action, cascade=args.cascade, force=args.force)
    if app.json:
        app.emit(actions_pb2.UndoActionResponse(undone=[a.proto for a in undone]))
    else:
        _report(app, "undone", undone, none="nothing undone")
    return undo_exit_status(undone)


def cmd_undo_to(app: App, args: argparse.Namespace) -> int:
    with _refusal_hint(app, "undo-to"):
        session = session_for(app, args.action)
        undone = app.client().undo_to(args.action, force=args.force, session_id=session)
    if app.json:
        app.emit(actions_pb2.UndoToResponse(undone=[a.proto for a in undone]))
    else:
        _report(app, "undone", undone, none="nothing to undo after that action")
    return undo_exit_status(undone)
