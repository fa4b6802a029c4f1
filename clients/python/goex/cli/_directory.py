"""Which open session the current directory belongs to: the one whose workspace holds it.

Two projects open at once each get their own session by where the command runs, instead of one
global "current session" that sends `goex run` in the other project's directory to the wrong one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from goex._models import Session

__all__ = ["session_holding", "workspace_holding"]


def _real(path: str) -> str:
    return os.path.realpath(path)


def workspace_holding(session: Session, directory: str) -> str | None:
    """The workspace (fs resource path) of `session` that holds `directory`, the deepest; None if none."""
    here = _real(directory)
    found: str | None = None
    for resource in session.resources:
        if str(resource.kind) != "fs" or not resource.uri:
            continue
        root = _real(resource.uri)
        if os.path.commonpath([root, here]) == root and (found is None or len(root) > len(found)):
            found = root
    return found


def session_holding(sessions: Iterable[Session], directory: str) -> str | None:
    """The open session whose workspace holds `directory` (the deepest workspace when they nest); None if none."""
    best: tuple[int, str] | None = None
    for session in sessions:
        if str(session.state) not in ("open", "expired"):  # an expired one opens again when used
            continue
        root = workspace_holding(session, directory)
        if root is not None and (best is None or len(root) > best[0]):
            best = (len(root), session.id)
    return best[1] if best is not None else None
