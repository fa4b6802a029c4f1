"""What an open session holds in memory: its resource managers, its policy and its lock."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from goexd.domain.errors import FailedPrecondition
from goexd.domain.models import Action, Session
from goexd.domain.resource import ResourceManager
from goexd.engine.journal import Journal
from goexd.policy.check import SessionPolicy
from goexd.resources.registry import Registry


class SessionClosed(FailedPrecondition):
    pass


class SessionLock:
    """A session's lock. Once the session is closed (its managers with it), taking it fails: a call that
    got the session before the close and waited for the lock finds it closed, not closed managers."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.closed = False

    def __enter__(self) -> None:
        self._lock.acquire()
        if self.closed:
            self._lock.release()
            raise SessionClosed("the session was closed meanwhile")

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def take_if_free(self) -> bool:
        """Take it now or not at all (the lease sweep skips a session in use); False once closed."""
        if not self._lock.acquire(blocking=False):
            return False
        if self.closed:
            self._lock.release()
            return False
        return True

    def release(self) -> None:
        self._lock.release()


@dataclass
class LiveSession:
    session: Session
    managers: dict[str, ResourceManager]
    policy: SessionPolicy
    lock: SessionLock = field(default_factory=SessionLock)


def overlap(a: str, b: str) -> bool:
    """Paths overlap when one contains the other; URLs (databases, services) only when equal."""
    if "://" in a or "://" in b:
        return a == b
    pa, pb = Path(a), Path(b)
    return pa == pb or pa in pb.parents or pb in pa.parents


def held_in_a_transaction(journal: Journal, kinds: Registry, action: Action) -> bool:
    """Whether a pending action lives in goexd's open connection to its resource (gone if that connection is)."""
    session = journal.get_session(action.session_id)
    found = next((r for r in session.resources if r.name == action.resource), None) if session else None
    return found is not None and kinds.traits(found).pending_in_connection
