"""Action references (issue 19): what a client may give where an action id is asked for.

    act_1a2b3c4d5e6f7a8b   the full id
    act_1a2b / 1a2b        a unique prefix of one (at least MIN_HEX hex digits after "act_")
    3                      the session's action with that seq number (needs the session)
    last                   the session's newest action (needs the session)

Digits alone are always a seq number: a prefix made of digits only is written with its "act_".

Resolved here, in the daemon, so that every client gets them. An ambiguous prefix is INVALID_ARGUMENT
naming the candidates; a reference that matches nothing is NOT_FOUND; malformed input is INVALID_ARGUMENT
naming the field.
"""

from __future__ import annotations

import re
import uuid

from goexd.domain.errors import InvalidArgument, NotFound
from goexd.engine.journal import Journal

PREFIX = "act_"
ID_HEX = 16  # new_id
MIN_HEX = 4
SHOWN = 5  # candidates named for an ambiguous prefix
_HEX = re.compile(r"[0-9a-f]+")
_ID_CHARS = re.compile(r"[A-Za-z0-9_-]+")  # what an id of any kind is made of (server/convert.py require_id)
MAX_CHARS = 64


def resolve(journal: Journal, ref: str, fld: str, session_id: str = "") -> str:
    """The full id `ref` refers to, in `session_id` when given (see the module doc)."""
    text = ref.strip()
    if not text:
        raise InvalidArgument(fld, "is required")
    if text == "last" or text.isdecimal():
        return _in_session(journal, text, fld, session_id)
    hexpart = text.removeprefix(PREFIX)
    if not _HEX.fullmatch(hexpart) or len(hexpart) > ID_HEX:
        if len(text) > MAX_CHARS or not _ID_CHARS.fullmatch(text):
            raise InvalidArgument(
                fld, f"{text[:MAX_CHARS]!r} is not an action reference: give an id, a prefix, a seq number or 'last'"
            )
        raise NotFound("action", text)  # shaped like an id, and no action has it
    if len(hexpart) == ID_HEX:
        _owned(journal, PREFIX + hexpart, fld, session_id)
        return PREFIX + hexpart
    if len(hexpart) < MIN_HEX:
        raise InvalidArgument(fld, f"{text!r} is too short a prefix: give at least {MIN_HEX} hex digits of the id")
    start = PREFIX + hexpart
    sql = "SELECT id FROM actions WHERE id >= ? AND id < ?"
    args: list[object] = [start, start + "\x7f"]  # ids are ASCII: the range holds exactly those with the prefix
    if session_id:
        sql += " AND session_id = ?"
        args.append(session_id)
    found = [r["id"] for r in journal.read(sql + " ORDER BY id LIMIT ?", (*args, SHOWN + 1))]
    where = f" in session {session_id}" if session_id else ""
    if not found:
        raise NotFound("action", f"{text}{where}")
    if len(found) > 1:
        more = " and more" if len(found) > SHOWN else ""
        raise InvalidArgument(
            fld, f"{text!r} is ambiguous{where}: {', '.join(found[:SHOWN])}{more}; give more of the id"
        )
    return str(found[0])


def _in_session(journal: Journal, text: str, fld: str, session_id: str) -> str:
    if not session_id:
        raise InvalidArgument(
            fld, f"{text!r} counts in a session: give session_id too, or the action's id (act_{text}... for a prefix)"
        )
    if text == "last":
        rows = journal.read("SELECT id FROM actions WHERE session_id = ? ORDER BY seq DESC LIMIT 1", (session_id,))
        if not rows:
            raise NotFound("last action of session", session_id)
        return str(rows[0]["id"])
    if len(text) > 19:
        raise InvalidArgument(fld, f"seq number {text[:24]}... is out of range")
    rows = journal.read("SELECT id FROM actions WHERE session_id = ? AND seq = ?", (session_id, int(text)))
    if not rows:
        raise NotFound("action", f"number {text} of session {session_id}")
    return str(rows[0]["id"])


def _owned(journal: Journal, action_id: str, fld: str, session_id: str) -> None:
    """A full id given with a session must be that session's."""
    if not session_id:
        return
    rows = journal.read("SELECT session_id FROM actions WHERE id = ?", (action_id,))
    if rows and rows[0]["session_id"] != session_id:
        raise InvalidArgument(fld, f"action {action_id} belongs to another session")


def new_id(prefix: str) -> str:
    """A new session or action id: "<prefix>_" and ID_HEX hex digits."""
    return f"{prefix}_{uuid.uuid4().hex[:ID_HEX]}"
