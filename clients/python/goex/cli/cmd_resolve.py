"""goex commit / goex undo / goex undo-to: resolve pending actions."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from rich.text import Text

from goex._enums import ActionState, Verdict
from goex._models import Action
from goex.cli._app import App
from goex.v1 import actions_pb2


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    c = sub.add_parser(
        "commit",
        parents=[common],
        help="keep pending actions (all, or up to one)",
        description="Commit the current session's pending actions, oldest first: all of them, "
        "or those up to and including --up-to.",
    )
    c.add_argument("--up-to", metavar="ACTION", help="last action to commit")
    c.set_defaults(handler=cmd_commit)

    u = sub.add_parser(
        "undo",
        parents=[common],
        help="roll back a pending action (default: the newest)",
        description="Undo one pending action of the current session (the newest when ACTION is "
        "omitted). The daemon refuses while a later pending action on the same resource exists, "
        "unless --cascade also undoes those, newest first. Prints one line per undone action, "
        "and on stderr how goexd checked the undo (verified: ..., or NOT verified: ...).",
    )
    u.add_argument("action", nargs="?", metavar="ACTION")
    u.add_argument("--cascade", action="store_true", help="also undo later pending actions on the resource")
    u.set_defaults(handler=cmd_undo)

    t = sub.add_parser(
        "undo-to",
        parents=[common],
        help="roll back every pending action after ACTION",
        description="Undo every pending action after ACTION, newest first; ACTION itself stays. "
        "Prints what `goex undo` prints.",
    )
    t.add_argument("action", metavar="ACTION")
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


def undo_check_text(a: Action) -> Text | None:
    """How goexd checked an undone action ("  verified: ..." or "  NOT verified: ..."); None for other actions.

    On stderr, so that stdout keeps one line per action."""
    r = a.reversibility
    if a.state is not ActionState.UNDONE or r is None or not r.detail:
        return None
    if r.verdict is Verdict.PASSED:
        return Text(f"  verified: {r.detail}", style="dim")
    if r.verdict is Verdict.FAILED:
        return Text(f"  NOT verified: {r.detail}", style="bold red")
    return None


def cmd_commit(app: App, args: argparse.Namespace) -> int:
    committed = app.client().commit(app.session_id(), up_to=args.up_to)
    if app.json:
        app.emit(actions_pb2.CommitActionsResponse(committed=[a.proto for a in committed]))
    else:
        _report(app, "committed", committed, none="nothing to commit")
    return 0


def cmd_undo(app: App, args: argparse.Namespace) -> int:
    undone = app.client().undo(app.session_id(), args.action, cascade=args.cascade)
    if app.json:
        app.emit(actions_pb2.UndoActionResponse(undone=[a.proto for a in undone]))
    else:
        _report(app, "undone", undone, none="nothing undone")
    return 0


def cmd_undo_to(app: App, args: argparse.Namespace) -> int:
    undone = app.client().undo_to(args.action)
    if app.json:
        app.emit(actions_pb2.UndoToResponse(undone=[a.proto for a in undone]))
    else:
        _report(app, "undone", undone, none="nothing to undo after that action")
    return 0
