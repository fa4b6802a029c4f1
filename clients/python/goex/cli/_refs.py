"""ACTION on the command line: an id, a unique id prefix, or a seq number or `last` in the current session.

goexd resolves them (engine/action_refs.py) where the request names the session; these helpers pass that
session along only when the reference needs it, so a full id never costs the lookup of the current session.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from goex.cli._app import App

__all__ = ["ACTION_HELP", "action_id", "session_for"]

ACTION_HELP = "action: its id, a unique id prefix (4 hex digits at least), its seq number in the session, or `last`"

_SEQ_OR_LAST = re.compile(r"[0-9]+|last")


def session_for(app: App, ref: str) -> str | None:
    """The current session when `ref` is a seq number or `last` (which count in a session), else None."""
    return app.session_id() if _SEQ_OR_LAST.fullmatch(ref) else None


def action_id(app: App, ref: str) -> str:
    """The id `ref` names, for a request that takes no session (cancel, judge): a seq number or `last` is looked
    up in the current session first; anything else goes to goexd as it is."""
    session = session_for(app, ref)
    return ref if session is None else app.client().get_action(ref, session_id=session).id
