"""What the engine's parts share (engine.py builds one Core and hands it to each part).

The parts: sessions.py (sessions and their managers), steps.py (journaling an action's transitions),
http_calls.py (egress routes and http gates), runner.py (submit and run), resolve.py (commit and undo),
trials.py (reversibility tests on request), recovery.py (what a crash left behind). Each takes the Core and
the parts it calls, nothing else.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from goexd.config import Config
from goexd.diskspace import StateSpace
from goexd.domain.errors import Unavailable
from goexd.domain.models import ActionState, Resource
from goexd.domain.sandbox import Limits, Sandbox
from goexd.domain.vault import SecretSource
from goexd.engine.channels import ChannelRegistry
from goexd.engine.egress import EgressRoutes
from goexd.engine.journal import Journal
from goexd.engine.leases import IdleLeases
from goexd.engine.stopping import Interrupted, interrupted_by_stop, summary
from goexd.engine.verdict_memory import VerdictMemory
from goexd.engine.watchers import Watchers
from goexd.policy.model import Policy
from goexd.resources.registry import Registry

log = logging.getLogger("goexd.engine")


@dataclass
class Lifecycle:
    """Whether goexd is stopping or draining, and the cancel event of each action running now."""

    journal: Journal
    kinds: Registry
    stopping: threading.Event = field(default_factory=threading.Event)
    draining: threading.Event = field(default_factory=threading.Event)  # refusing new work until goexd stops
    cancels: dict[str, threading.Event] = field(default_factory=dict)

    def refuse_if_stopping(self) -> None:
        if self.stopping.is_set():
            raise Unavailable("goexd is shutting down")
        if self.draining.is_set():
            left = summary(self.interrupted_by_stop())
            raise Unavailable(f"goexd is draining before it stops: no new sessions or actions; {left}")

    def interrupted_by_stop(self) -> list[Interrupted]:
        """What stopping now would interrupt (engine/stopping.py)."""
        pending = self.journal.actions_in_states([ActionState.EXECUTED])
        sessions = {sid: self.journal.get_session(sid) for sid in {a.session_id for a in pending}}

        def in_connection(resource: Resource) -> bool:
            return self.kinds.traits(resource).pending_in_connection

        return interrupted_by_stop(list(self.cancels), pending, sessions, in_connection)

    def cancel_unwatched(self, action_id: str) -> None:
        """Watchers' callback: a detached action submitted cancel_when_unwatched lost its last watcher."""
        event = self.cancels.get(action_id)
        if event is not None and not event.is_set():
            log.info("action %s: no client watches it any more (submitted cancel_when_unwatched): cancelled", action_id)
            event.set()


@dataclass
class Core:
    cfg: Config
    journal: Journal
    vault: SecretSource
    sandbox: Sandbox
    space: StateSpace  # the state dir's reserve (diskspace.py)
    kinds: Registry  # which manager serves a resource (resources/registry.py)
    daemon_policy: Policy
    default_limits: Limits
    egress: EgressRoutes | None  # the proxy; None = actions asking for egress are refused
    verdicts: VerdictMemory
    life: Lifecycle
    leases: IdleLeases
    watchers: Watchers  # who follows each action (a detached one may be cancelled when nobody does)
    channels: ChannelRegistry = field(default_factory=ChannelRegistry)


class Part:
    """A part of the engine: the Core's members as its own attributes, and redaction by the vault."""

    def __init__(self, core: Core) -> None:
        self.cfg = core.cfg
        self.journal = core.journal
        self.vault = core.vault
        self.sandbox = core.sandbox
        self.space = core.space
        self.kinds = core.kinds
        self.daemon_policy = core.daemon_policy
        self.default_limits = core.default_limits
        self.egress = core.egress
        self.verdicts = core.verdicts
        self.life = core.life
        self.channels = core.channels
        self.leases = core.leases
        self.watchers = core.watchers

    def redact(self, data: bytes, truncated: bool = False) -> bytes:
        return self.vault.redactor(data, truncated=truncated)

    def redact_text(self, text: str) -> str:
        return self.vault.redactor.text(text)
