"""goex judge ACTION right|wrong: a person's judgement of an action's undo, kept with its (action, inverse) pair."""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from goex._pairs import JUDGEMENTS
from goex.cli._app import App
from goex.cli._refs import ACTION_HELP, action_id
from goex.v1 import actions_pb2

_ABOUT = """\
Mark the undo of ACTION (its action and inverse, as a pair) right or wrong, after the fact.
goexd keeps the judgement with the pair (its resource and both specs, normalised), and applies
it whenever the same pair comes up again, in any session:

  wrong   the pair fails, even where its reversibility test passes: the action is refused
          (blocked with who judged it and why), or flagged where the policy lets a failed
          inverse run ([fs] failed_inverse)
  right   shown beside the pair's test; it never skips the test, which still decides

The latest judgement holds. `goex show ACTION` lists the pair's tests and judgements.
--json prints the JudgePair response: {history: {verdicts: [...], judgements: [...]}}."""


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "judge",
        parents=[common],
        help="mark an action's undo (its action and inverse) right or wrong",
        description=_ABOUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", metavar="ACTION", help=f"{ACTION_HELP} (one with an inverse)")
    p.add_argument("judgement", choices=JUDGEMENTS, help="right or wrong")
    p.add_argument("--note", default="", metavar="TEXT", help="why (kept and shown with the judgement)")
    p.add_argument("--who", default=None, metavar="NAME", help="who judges (default: your login name)")
    p.set_defaults(handler=cmd_judge)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container without a passwd entry)
        return ""


def cmd_judge(app: App, args: argparse.Namespace) -> int:
    who = args.who if args.who is not None else _login_name()
    judged = action_id(app, args.action)
    history = app.client().judge_pair(judged, args.judgement, who=who, note=args.note)
    if app.json:
        app.emit(actions_pb2.JudgePairResponse(history=history.proto))
        return 0
    then = (
        "refused next time it comes up (or flagged where the policy allows a failed inverse)"
        if args.judgement == "wrong"
        else "still tested next time; shown beside its test"
    )
    app.out.print(f"marked the pair of {judged} {args.judgement}: {then}", markup=False, highlight=False)
    return 0
