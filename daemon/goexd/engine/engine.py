"""The engine: sessions, the action state machine, undo/commit ordering and crash recovery.

Rules it enforces:
- every transition is committed to the journal before the side effect it announces;
- actions of one session run one at a time (the session lock), sessions run in parallel;
- a resource is held by at most one open session (the journal's unique index);
- a pending action is undone only when no later pending action on its resource exists,
  unless the caller asks to cascade; undo-to undoes newest first.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from goexd import faults
from goexd.config import Config
from goexd.diskspace import OutOfSpace, StateSpace, is_out_of_space, out_of_space
from goexd.domain import codec
from goexd.domain.egress import EgressRecordData
from goexd.domain.errors import (
    FailedPrecondition,
    GoexError,
    InternalError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)
from goexd.domain.models import (
    ACTIVE_STATES,
    TRANSITIONS,
    Action,
    ActionKind,
    ActionSpec,
    ActionState,
    CloseMode,
    LimitsRequest,
    Resource,
    ResourceKind,
    ResourceRequest,
    Reversibility,
    ReversibilityClass,
    Session,
    SessionState,
    Timings,
    UndoStrategy,
    Verdict,
)
from goexd.domain.names import display_paths
from goexd.domain.resource import (
    Checkpoint,
    InDoubt,
    Journaling,
    KeepsCopies,
    Resolution,
    ResourceManager,
    RollbackReport,
    SandboxNetwork,
    UndoesThreeWay,
    settling,
)
from goexd.domain.sandbox import ExecResult, Limits, ProxyEndpoint, Sandbox, Stream, Termination
from goexd.domain.snapshots import ChangeSet, SetAside, SnapshotError
from goexd.egress.addresses import AddressRule
from goexd.engine import action_refs, diffs, sql_policy, stopping
from goexd.engine import egress as egress_plan
from goexd.engine.channels import ChannelRegistry, Event
from goexd.engine.egress import EgressRoute, EgressRoutes
from goexd.engine.http_gate import CallJournal, ResourceGate, second_look, settled_calls, undo_call
from goexd.engine.journal import Journal
from goexd.engine.leases import IdleLeases
from goexd.engine.verdict_memory import Judgement, PairHistory, VerdictMemory, pair_key, remembered
from goexd.engine.watchers import Watchers
from goexd.policy.check import MAX_APPROVAL_CHARS, SessionPolicy
from goexd.policy.defaults import daemon_layers
from goexd.policy.model import ActionFacts, Decision, DecisionKind, HttpRequestFacts, LimitsFacts
from goexd.policy.parse import PolicyError, build, build_session, parse
from goexd.policy.parse import check_size as check_policy_size
from goexd.resources.fs.inverse import FsInverseResource
from goexd.resources.fs.trial import site_of, try_pair
from goexd.resources.fs.versioned import UNDONE_SINCE, FsVersionedResource
from goexd.resources.host_paths import OwnPaths, daemon_paths
from goexd.resources.http.resource import HttpResource, check_http_host
from goexd.resources.http.trial import test_http
from goexd.resources.kinds import registry as resource_kinds
from goexd.resources.registry import Host
from goexd.resources.sql_reads import READ_CHECKPOINT, ReadsAtOnce
from goexd.snapshots.textdiff import DiffOptions
from goexd.vault.vault import Vault

log = logging.getLogger("goexd.engine")

# Terminations after which the action is stopped midway: its partial effects are rolled back.
_ROLLBACK_ON = frozenset(
    {
        Termination.TIMEOUT,
        Termination.OOM,
        Termination.PIDS_LIMIT,
        Termination.CANCELLED,
        Termination.SPAWN_FAILED,
    }
)
_SANDBOXED_KINDS = frozenset({ActionKind.SHELL, ActionKind.PYTHON})
_DB_KINDS = frozenset({ResourceKind.SQLITE, ResourceKind.POSTGRES})
_NOT_BUILT = {
    ActionKind.PROMPT: "prompt actions need the LLM planner, which is not built yet",
}


_COMMIT_STARTED = "commit started"
_RESOLVED_AT_ONCE = "read-only: nothing to undo or accept; resolved at once"


def _overlap(a: str, b: str) -> bool:
    """Paths overlap when one contains the other; URLs (databases, services) only when equal."""
    if "://" in a or "://" in b:
        return a == b
    pa, pb = Path(a), Path(b)
    return pa == pb or pa in pb.parents or pb in pa.parents


def _listed(resources: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{kind} {uri}" for kind, uri in resources)


def _keeps_copies(resource: Resource) -> bool:
    """Whether an action on it snapshots or clones into the state dir (and so needs the reserve free first)."""
    return resource.kind is ResourceKind.FS or (resource.kind, resource.strategy) == (
        ResourceKind.SQLITE,
        UndoStrategy.CLONE,
    )


def _touched(action: Action) -> set[str]:
    """The resources an action changed: its own, and the http resources its code called."""
    return {action.resource} | {c.resource for i in settled_calls(action.egress) if (c := action.egress[i].call)}


def _with_calls(base: Reversibility, records: Sequence[EgressRecordData]) -> Reversibility:
    """A code action's class with its calls to http resources: the least reversible of them all."""
    calls = [(records[i], records[i].call) for i in settled_calls(records)]
    if not calls:
        return base
    classes = {c.reversibility for _, c in calls if c is not None}
    cls = base.reversibility_class
    for worse in (ReversibilityClass.BEST_EFFORT, ReversibilityClass.IRREVERSIBLE):
        if worse.value in classes:
            cls = worse
    listing = "; ".join(f"{r.method} {r.url}: {c.note}" for r, c in calls if c is not None)
    return Reversibility(cls, base.verdict, f"{base.detail}; and {len(calls)} call(s) to http resources: {listing}")


_NOT_OURS = "not a token this server issued"
_MAX_SEQ = 2**63 - 1  # SQLite's INTEGER


def _action_token(token: str) -> int:
    """ListActions' page token: the last seq of the previous page."""
    if not token:
        return 0
    if len(token) > 20 or not token.isascii() or not token.isdigit() or int(token) > _MAX_SEQ:
        raise InvalidArgument("page_token", _NOT_OURS)
    return int(token)


def _session_token(token: str) -> tuple[float, str]:
    """ListSessions' page token: "created_at/id" of the last session of the previous page."""
    if not token:
        return 0.0, ""
    created, _, ident = token.partition("/")
    try:
        at = float(created) if len(token) <= 128 else math.nan
    except ValueError:
        at = math.nan
    if not math.isfinite(at) or not ident or not ident.replace("_", "").isalnum():
        raise InvalidArgument("page_token", _NOT_OURS)
    return at, ident


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def _tag(manager: ResourceManager) -> str:
    """The resource's tag for fault points (faults.py): "<kind>-<strategy>"."""
    return f"{manager.resource.kind.value}-{manager.resource.strategy.value}"


@dataclass(frozen=True)
class _Step:
    """One transition to journal: the new state, the action's columns written with it, the audit note."""

    state: ActionState
    fields: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass
class _Run:
    """A submitted action on its way through _run: whether the journal has it yet, and how its steps are journaled."""

    action: Action
    journaling: Journaling
    journaled: bool
    note: str  # the note of its first journal row (an approval)
    detached: bool = False  # its client was answered already: a refusal on the way is only journaled
    approval: str = ""  # the approval it was submitted with, for the policy's second look at an http write


class _SessionClosed(FailedPrecondition):
    pass


class _SessionLock:
    """A session's lock. Once the session is closed (its managers with it), taking it fails: a call that
    got the session before the close and waited for the lock finds it closed, not closed managers."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.closed = False

    def __enter__(self) -> None:
        self._lock.acquire()
        if self.closed:
            self._lock.release()
            raise _SessionClosed("the session was closed meanwhile")

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
class _LiveSession:
    """What an open session holds in memory: its resource managers and its lock."""

    session: Session
    managers: dict[str, ResourceManager]
    policy: SessionPolicy
    lock: _SessionLock = field(default_factory=_SessionLock)


class Engine:
    def __init__(
        self,
        cfg: Config,
        journal: Journal,
        sandbox: Sandbox,
        vault: Vault,
        egress: EgressRoutes | None = None,
        own_paths: OwnPaths | None = None,
        fs_overlays: Path | None = None,
    ) -> None:
        """`fs_overlays`: where fs actions get their overlay dirs; None runs them over the workspace itself."""
        self.cfg = cfg
        self.fs_overlays = fs_overlays
        self.own_paths = own_paths or daemon_paths(cfg)  # what no resource may reach: goexd's own files
        self.journal = journal
        self.verdicts = VerdictMemory(journal)  # pairs' verdicts and a person's judgements of them
        # The state dir's reserve (diskspace.py): a journal write finding the disk full gives up the held-back part.
        self.space = StateSpace(cfg.state_dir, cfg.state_reserve_bytes)
        self.space.refill()
        journal.on_full = self.space.release
        self.sandbox = sandbox
        self.vault = vault
        self.egress = egress  # the proxy; None = actions asking for egress are refused
        self.channels = ChannelRegistry()
        self._live: dict[str, _LiveSession] = {}
        self._live_lock = threading.Lock()
        self._cancel: dict[str, threading.Event] = {}
        self.watchers = Watchers(self._cancel_unwatched)
        self.leases = IdleLeases(cfg.session_idle_lease_s)
        self._creating = threading.Lock()  # get-or-create (CreateSession reuse) is one step
        self._stopping = threading.Event()
        self._draining = threading.Event()  # refusing new sessions and actions until goexd stops (Stop, --drain)
        self._workers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="goexd-action")
        # Raises SetupError for a bad policy file: the daemon does not start with confinement it cannot read.
        self.daemon_policy = build(daemon_layers(cfg.policy.file, cfg.egress.allowed_hosts))
        self.addresses = AddressRule.from_config(cfg.egress.allowed_addresses)  # what goexd's own HTTP may reach
        # Which manager serves a resource (resources/registry.py); raises SetupError for a broken rule file.
        self.kinds = resource_kinds(Host(cfg, self.own_paths, vault, sandbox, self.addresses, self.space, fs_overlays))
        self.default_limits = Limits(
            timeout_s=cfg.sandbox.timeout_s,
            memory_bytes=cfg.sandbox.memory_bytes,
            max_processes=cfg.sandbox.max_processes,
            output_bytes=cfg.sandbox.output_bytes,
        )

    # ================================================================ sessions

    def create_session(
        self,
        requests: Sequence[ResourceRequest],
        label: str = "",
        limits: LimitsRequest | None = None,
        policy_toml: str = "",
    ) -> Session:
        return self.get_or_create_session(requests, label, limits, policy_toml, reuse=False)[0]

    def get_or_create_session(
        self,
        requests: Sequence[ResourceRequest],
        label: str = "",
        limits: LimitsRequest | None = None,
        policy_toml: str = "",
        reuse: bool = False,
    ) -> tuple[Session, bool]:
        """A new session, or with `reuse` the open (or expired) one over exactly these resources; and whether
        it was reused. Both in one step: two get-or-creates at once get the same session."""
        with self._creating:
            return self._get_or_create_session(requests, label, limits, policy_toml, reuse)

    def _get_or_create_session(
        self,
        requests: Sequence[ResourceRequest],
        label: str,
        limits: LimitsRequest | None,
        policy_toml: str,
        reuse: bool,
    ) -> tuple[Session, bool]:
        self._refuse_if_stopping()
        if not requests:
            raise InvalidArgument("resources", "at least one resource is required")
        check_policy_size(policy_toml, "policy_toml")
        policy = self.parse_policy(policy_toml)
        session_limits = self.check_limits("limits", limits or LimitsRequest()).over(self.default_limits)
        resources: list[Resource] = []
        names: set[str] = set()
        for i, req in enumerate(requests):
            resource = self._check_resource(req, f"resources[{i}]")
            if resource.name in names:
                raise InvalidArgument(f"resources[{i}].name", f"duplicate resource name {resource.name!r}")
            names.add(resource.name)
            resources.append(resource)
        if reuse and (found := self._reusable(resources, requests, policy_toml, limits, session_limits)) is not None:
            return found, True
        self._refuse_overlaps(resources)
        for r in resources:
            for allowed, whose in policy.http_hosts if r.kind is ResourceKind.HTTP else ():
                check_http_host(r, allowed, whose)
                if r.staging:  # goexd sends calls there too
                    check_http_host(replace(r, uri=r.staging), allowed, whose)
        session = Session(
            id=_new_id("ses"),
            label=label,
            state=SessionState.OPEN,
            resources=tuple(resources),
            limits=session_limits,
            created_at=time.time(),
        )
        self.journal.insert_session(session, policy_toml)  # holds its resources: a second session waits no more
        try:
            self._live_session(session.id)  # opens the stores and takes the baseline snapshot
        except Exception:
            self.journal.discard_session(session.id)  # a session that never opened leaves no row
            raise
        return self.get_session(session.id), False

    def _reusable(
        self,
        resources: Sequence[Resource],
        requests: Sequence[ResourceRequest],
        policy_toml: str,
        limits: LimitsRequest | None,
        session_limits: Limits,
    ) -> Session | None:
        """The session holding exactly `resources` (kind and location; strategy where asked), opened again if it
        had expired; None when no session holds any of them; FAILED_PRECONDITION when they are held otherwise."""
        holders = sorted({sid for sid, uri in self.journal.held_resources() for r in resources if _overlap(r.uri, uri)})
        if not holders:
            return None
        if len(holders) > 1:
            raise FailedPrecondition(
                f"reuse: the resources asked for overlap several sessions ({', '.join(holders)}); no one session "
                "holds exactly them"
            )
        held = self.get_session(holders[0])
        asked = sorted((r.kind.value, r.uri) for r in resources)
        has = sorted((r.kind.value, r.uri) for r in held.resources)
        if asked != has:
            raise FailedPrecondition(
                f"reuse: session {held.id} ({held.state.value}) holds {_listed(has)}, not exactly the resources asked "
                f"({_listed(asked)}); ask for those to reuse it, or resolve and close it first"
            )
        by_uri = {r.uri: r for r in held.resources}
        for i, (req, r) in enumerate(zip(requests, resources, strict=True)):
            if req.strategy is not None and by_uri[r.uri].strategy is not r.strategy:
                raise FailedPrecondition(
                    f"reuse: resources[{i}].strategy: session {held.id} undoes {r.uri} by the "
                    f"{by_uri[r.uri].strategy.value} strategy, not {r.strategy.value}"
                )
        if policy_toml and policy_toml != self.journal.session_policy(held.id):
            raise FailedPrecondition(f"reuse: policy_toml differs from the policy session {held.id} was opened with")
        if limits is not None and limits != LimitsRequest() and session_limits != held.limits:
            raise FailedPrecondition(f"reuse: limits differ from those of session {held.id} ({held.limits})")
        self._live_session(held.id)  # opens an expired one again; renews its lease
        return self.get_session(held.id)

    def session_warnings(self, session: Session) -> list[str]:
        """What to know before acting in a session just opened: workspace entries its actions cannot write."""
        return [said for r in session.resources for said in self.kinds.warnings(r)]

    def parse_policy(self, text: str, fld: str = "policy_toml") -> SessionPolicy:
        """A session's policy beside the daemon's (it can only narrow it); INVALID_ARGUMENT naming the line of the
        first error."""
        try:
            return SessionPolicy(self.daemon_policy, build_session(parse(text)), text)
        except PolicyError as exc:
            raise InvalidArgument(fld, f"line {exc.line}: {exc.message}") from None

    def _check_resource(self, req: ResourceRequest, fld: str) -> Resource:
        return self.kinds.check(req, fld)

    def _refuse_overlaps(self, resources: Sequence[Resource]) -> None:
        for i, r in enumerate(resources):  # within the new session: one undo mechanism per file
            for other in resources[i + 1 :]:
                if _overlap(r.uri, other.uri):
                    raise InvalidArgument(
                        "resources", f"resources {r.name!r} and {other.name!r} overlap ({r.uri}, {other.uri})"
                    )
        held = self.journal.held_resources()
        for r in resources:
            for session_id, uri in held:
                if _overlap(r.uri, uri):
                    raise FailedPrecondition(f"resource {r.uri} overlaps {uri}, {self._held_by(session_id, uri)}")

    def _held_by(self, session_id: str, uri: str) -> str:
        """Who holds a resource and how to get at it, for a refusal."""
        holder = self.get_session(session_id)
        pick_up = (
            f"to work in it, ask for its resources with reuse (`goex session open --reuse` with the same "
            f"resources, e.g. --fs {uri}) or use its id"
        )
        if holder.state is SessionState.EXPIRED:
            return (
                f"held by expired session {session_id} (idle past its lease; its {holder.pending_actions} pending "
                f"action(s) kept); {pick_up}, then commit, undo or close it"
            )
        return f"held by open session {session_id}; {pick_up}; or close that session first"

    def get_session(self, session_id: str) -> Session:
        session = self.journal.get_session(session_id)
        if session is None:
            raise NotFound("session", session_id)
        return session

    def list_sessions(self, include_closed: bool, page_size: int, page_token: str) -> tuple[list[Session], str]:
        limit = page_size or 100
        if limit > 1000:
            raise InvalidArgument("page_size", "must be at most 1000")
        sessions = self.journal.list_sessions(include_closed, _session_token(page_token), limit + 1)
        if len(sessions) > limit:
            last = sessions[limit - 1]
            return sessions[:limit], f"{last.created_at!r}/{last.id}"
        return sessions, ""

    def describe_session(self, session_id: str, samples: bool = False) -> list[tuple[str, str]]:
        live = self._live_session(session_id)
        with live.lock:  # a database manager's connection is not shared with a running action
            return [(name, m.describe(samples)) for name, m in live.managers.items()]

    def close_session(self, session_id: str, mode: CloseMode) -> tuple[Session, list[Action]]:
        session = self.get_session(session_id)
        if session.state is SessionState.CLOSED:
            raise FailedPrecondition(f"session {session_id} is already closed")
        live = self._live_session(session_id)
        with live.lock:
            queued = self.journal.list_actions(session_id, ACTIVE_STATES)
            if queued:  # a detached action waiting for the lock: it would run on closed managers
                raise FailedPrecondition(
                    f"session {session_id} has {len(queued)} action(s) queued or running; "
                    "wait for them or cancel them first"
                )
            pending = self.journal.list_actions(session_id, [ActionState.EXECUTED])
            resolved: list[Action] = []
            if pending and mode is CloseMode.REFUSE_IF_PENDING:
                raise FailedPrecondition(
                    f"session {session_id} has {len(pending)} pending action(s); "
                    "close it with mode commit_all or undo_all"
                )
            if mode is CloseMode.COMMIT_ALL:
                resolved = self._commit_locked(live, pending)
            elif mode is CloseMode.UNDO_ALL:
                self._refuse_irreversible(pending)
                resolved = [self._undo_one(live, a) for a in reversed(pending)]
            self.journal.close_session(session_id)
            self._let_go(session_id, live)
        return self.get_session(session_id), resolved

    def _let_go(self, session_id: str, live: _LiveSession) -> None:
        """Close the session's managers (its lock held): a closed or expired session holds nothing in memory."""
        live.lock.closed = True
        with self._live_lock:
            self._live.pop(session_id, None)
        self.leases.forget(session_id)
        for m in live.managers.values():
            m.close()

    def expire_idle_sessions(self) -> list[str]:
        """The lease sweep (engine/leases.py): let go of each open session idle past its lease. Returns their ids."""
        if self._stopping.is_set():
            return []
        done = []
        opened, token = [], (0.0, "")
        while page := self.journal.list_sessions(False, token, 500):
            opened += [s.id for s in page if s.state is SessionState.OPEN]
            token = (page[-1].created_at, page[-1].id)
        for session_id in self.leases.expired(opened):
            try:
                if self._expire(session_id):
                    done.append(session_id)
            except Exception:
                log.exception("session %s: letting it go after its lease failed; it stays open", session_id)
        return done

    def _expire(self, session_id: str) -> bool:
        with self._live_lock:
            live = self._live.get(session_id)
            if live is None:  # not opened since goexd started: kept from being opened while it is let go
                return self._expire_locked(session_id, None)
        if not live.lock.take_if_free():
            return False  # in use right now: not idle
        try:
            return self._expire_locked(session_id, live)
        finally:
            live.lock.release()

    def _expire_locked(self, session_id: str, live: _LiveSession | None) -> bool:
        if self.leases.idle_s(session_id) < self.leases.lease_s:
            return False  # used meanwhile
        if self.journal.list_actions(session_id, ACTIVE_STATES):
            return False
        pending = self.journal.list_actions(session_id, [ActionState.EXECUTED])
        if any(self._held_in_a_transaction(a) for a in pending):
            return False  # closing its connection would roll that work back (leases.py)
        if pending:
            self.journal.expire_session(session_id)
            log.warning(
                "session %s: idle past its lease (%s s): expired, its %d pending action(s) kept pending; it opens "
                "again when used, or with CreateSession reuse over its resources",
                session_id,
                self.leases.lease_s,
                len(pending),
            )
        else:
            self.journal.close_session(session_id)
            log.info("session %s: idle past its lease (%s s), nothing pending: closed", session_id, self.leases.lease_s)
        if live is not None:
            self._let_go(session_id, live)
        else:
            self.leases.forget(session_id)
        return True

    def _live_session(self, session_id: str) -> _LiveSession:
        """The session's managers, opened on first use (again after a restart or its lease expired)."""
        self.leases.touch(session_id)
        with self._live_lock:
            live = self._live.get(session_id)
            if live is not None:
                return live
            session = self.get_session(session_id)
            if session.state is SessionState.EXPIRED:
                log.info("session %s: opened again after its lease expired", session_id)
                self.journal.reopen_session(session_id)
                session = self.get_session(session_id)
            if session.state is not SessionState.OPEN:
                raise FailedPrecondition(f"session {session_id} is closed")
            policy = self.parse_policy(self.journal.session_policy(session_id))
            opened: dict[str, ResourceManager] = {}
            try:  # remote ones first: one that cannot be reached fails the opening before a local file is created
                for r in sorted(
                    session.resources, key=lambda r: r.kind not in (ResourceKind.HTTP, ResourceKind.POSTGRES)
                ):
                    opened[r.name] = self._open_manager(r)
            except Exception:
                for m in opened.values():  # no store, watch or connection outlives a failed opening
                    m.close()
                raise
            managers = {r.name: opened[r.name] for r in session.resources}
            self._settle_resolved(managers)
            live = _LiveSession(session, managers, policy)
            self._live[session_id] = live
            return live

    def _open_manager(self, resource: Resource) -> ResourceManager:
        return self.kinds.open(resource)

    # ================================================================ actions

    def check_limits(self, fld: str, req: LimitsRequest) -> LimitsRequest:
        s = self.cfg.sandbox
        for name, value, ceiling in (
            ("timeout", req.timeout_s, s.max_timeout_s),
            ("memory_bytes", req.memory_bytes, s.max_memory_bytes),
            ("max_processes", req.max_processes, s.max_max_processes),
            ("output_bytes", req.output_bytes, s.max_output_bytes),
        ):
            if value is not None and value < 0:
                raise InvalidArgument(f"{fld}.{name}", "must not be negative")
            if value is not None and value > ceiling:
                raise InvalidArgument(f"{fld}.{name}", f"{value} is above the daemon's ceiling {ceiling}")
        return req

    def submit(
        self,
        session_id: str,
        spec: ActionSpec,
        inverse: ActionSpec | None = None,
        detach: bool = False,
        approval: str = "",
        caller_gone: threading.Event | None = None,
        cancel_when_unwatched: bool = False,
    ) -> Action:
        """`caller_gone` (a blocking submit): set when its caller went away, which cancels the action.
        `cancel_when_unwatched` (detached): cancelled once no watch follows it (see Watchers)."""
        self._refuse_if_stopping()
        if spec.kind in _NOT_BUILT:
            raise Unimplemented(_NOT_BUILT[spec.kind])
        if len(approval) > MAX_APPROVAL_CHARS:
            raise InvalidArgument("approval", f"at most {MAX_APPROVAL_CHARS} characters")
        self.check_limits("spec.limits", spec.limits)
        if spec.egress is not None and self.egress is None:
            raise Unavailable("spec.egress: this goexd runs without its egress proxy")
        live = self._live_session(session_id)
        if spec.egress is not None:
            egress_plan.check(spec.egress, spec.kind, self.vault)
        resource = self._pick_resource(live.session, spec)
        manager = live.managers[resource.name]
        if spec.egress is not None:
            self._check_egress_resources(live.session, spec.egress.resources)
        # The policy first: a statement it refuses is refused as such, whatever else is wrong with it. But an
        # http request is checked before: its facts need a request that stays within the base URL.
        checked_first = spec.kind is ActionKind.HTTP
        if checked_first:
            manager.precheck(spec)
        decision = live.policy.check(self._facts(resource, manager, spec, inverse), approval)
        if decision.allowed:
            if not checked_first:
                manager.precheck(spec)
            manager.check_inverse(spec, inverse)
        action = Action(
            id=_new_id("act"),
            session_id=session_id,
            seq=0,
            spec=spec,
            inverse=inverse,
            state=ActionState.PROPOSED,
            resource=resource.name,
            created_at=time.time(),
            # Code that calls http resources carries its approval to each call the policy holds for one.
            # So does a workspace action of the inverse strategy, for a failed test ([fs] failed_inverse).
            approval=decision.approval
            or (
                approval.strip()
                if (spec.egress and spec.egress.resources) or isinstance(manager, FsInverseResource)
                else ""
            ),
        )
        if not decision.allowed:
            self._block(action, decision)
        if _keeps_copies(resource):  # refused before anything is recorded: the reserve is for rolling back
            self.space.require(f"an action on resource {resource.name!r}")
        run = _Run(
            action,
            manager.journaling(spec),
            False,
            f"approved: {decision.approval}" if decision.approval else "",
            detach,
            approval.strip(),
        )
        self.channels.create(action.id).state(ActionState.PROPOSED)
        self._cancel[action.id] = caller_gone if caller_gone is not None and not detach else threading.Event()
        # A detached action is journaled at once: its id is answered now, and must be found. An action whose
        # preparation leaves no trace is journaled together with its way to RUNNING (or its end): fewer commits.
        if detach or run.journaling is Journaling.EACH_STEP:
            try:
                run.action, run.journaled = self.journal.insert_action(action, note=run.note), True
            except Exception:
                self._cancel.pop(action.id, None)
                self.channels.close(action.id)
                raise
        if detach:
            proposed = run.action  # taken first: the worker moves run.action on as soon as it starts
            if cancel_when_unwatched:
                self.watchers.cancel_when_unwatched(action.id)
            self._workers.submit(self._run_guarded, live, run)
            return proposed
        return self._run(live, run)

    def _gates(self, live: _LiveSession, action: Action, timeout_s: float) -> list[ResourceGate]:
        """The http resources a code action named, opened to it through its egress route."""
        assert action.spec.egress is not None
        if not action.spec.egress.resources:
            return []
        calls = CallJournal(
            lambda records: self.journal.update(action.id, egress=codec.dumps(codec.egress_to_json(records)))
        )
        by_name = {r.name: r for r in live.session.resources}
        gates = []
        for name in action.spec.egress.resources:
            manager = live.managers[name]
            assert isinstance(manager, HttpResource)  # checked at submit
            gates.append(
                ResourceGate(
                    by_name[name], manager, live.policy, action.approval, timeout_s, calls.persist, self.redact_text
                )
            )
        return gates

    def _undo_calls(self, live: _LiveSession, action: Action, keep_going: bool) -> RollbackReport | None:
        """Send the inverses of the calls a code action made to http resources, newest first, each verified.

        Each undone call is journaled at once, so a retry after a failure does not send an inverse twice.
        `keep_going` (the action failed): a call that cannot be undone is reported and the rest still are;
        otherwise its error stops the undo, and the action stays pending.
        """
        records = list(action.egress)
        pending = [i for i in settled_calls(records) if (c := records[i].call) is not None and c.verdict == "untested"]
        if not pending:
            return None
        details: list[str] = []
        report = RollbackReport(True, "")
        for i in reversed(pending):
            record = records[i]
            assert record.call is not None
            what = f"{record.method} {record.url}"
            manager = live.managers.get(record.call.resource)
            if not isinstance(manager, HttpResource):
                report = report.with_calls(RollbackReport(False, ""))
                details.append(f"{what}: NOT undone: the session has no http resource {record.call.resource!r}")
                continue
            try:
                records[i], one = undo_call(manager, action.id, record)
            except GoexError as exc:
                if not keep_going:
                    raise
                report = report.with_calls(RollbackReport(False, ""))
                details.append(f"{what}: NOT undone: {exc}")
                continue
            self.journal.update(action.id, egress=codec.dumps(codec.egress_to_json(records)))
            report = report.with_calls(one)
            undone = records[i].call
            details.append(f"{what}: {undone.undo_detail if undone is not None else ''}")
        return replace(report, detail="; ".join(details))

    @staticmethod
    def _check_egress_resources(session: Session, names: Sequence[str]) -> None:
        http = {r.name for r in session.resources if r.kind is ResourceKind.HTTP}
        for i, name in enumerate(names):
            if name not in http:
                known = ", ".join(sorted(http)) or "none"
                raise InvalidArgument(
                    f"spec.egress.resources[{i}]",
                    f"the session has no http resource named {name!r} (its http resources: {known})",
                )

    def _facts(
        self,
        resource: Resource,
        manager: ResourceManager,
        spec: ActionSpec,
        inverse: ActionSpec | None,
        trial: bool = False,
    ) -> ActionFacts:
        """What the policy is told about an action before it runs (`trial`: in a reversibility test only)."""
        if spec.kind is ActionKind.HTTP and isinstance(manager, HttpResource) and spec.http is not None:
            req = spec.http  # checked by precheck() already: it stays within the base URL
            facts = HttpRequestFacts(
                method=req.method,
                url=manager.url(spec),
                path=req.path,
                headers=dict(req.headers),
                body=req.body,
                reversibility=manager.predicted_class(spec).value,
                client_inverse=inverse is not None,
            )
            return ActionFacts("http", resource.name, request=facts)
        if spec.kind is ActionKind.SQL and resource.kind in _DB_KINDS:  # the inverse's statements too
            return sql_policy.sql_facts(resource, spec, inverse, trial)
        asked = spec.limits
        return ActionFacts(
            spec.kind.value,
            resource.name,
            limits=LimitsFacts(asked.timeout_s, asked.memory_bytes, asked.max_processes),
            egress_hosts=spec.egress.hosts if spec.egress is not None else (),
            uses_egress=spec.egress is not None,
        )

    def _block(self, action: Action, decision: Decision) -> None:
        """Record a refused action as BLOCKED (it never runs), then refuse the request with the rule and reason."""
        why = f"{decision.reason} [policy rule {decision.rule}]"
        if decision.kind is DecisionKind.NEEDS_APPROVAL:
            why += '; submit it again with an explicit approval (goex: --approve "who: why") to run it'
        action = self.journal.insert_action(action)
        self._transition(action, ActionState.BLOCKED, error=self.redact_text(why), finished_at=time.time())
        message = f"{why} (recorded as blocked action {action.id})"
        if decision.retry_after_s is not None:
            raise ResourceExhausted(message)
        raise PermissionDenied(message)

    def _cancel_unwatched(self, action_id: str) -> None:
        event = self._cancel.get(action_id)
        if event is not None and not event.is_set():
            log.info("action %s: no client watches it any more (submitted cancel_when_unwatched): cancelled", action_id)
            event.set()

    def cancel(self, action_id: str) -> Action:
        action = self._get(action_id)
        event = self._cancel.get(action_id)
        if event is None or action.state not in ACTIVE_STATES:
            raise FailedPrecondition(f"action {action_id} is not running (it is {action.state.value})")
        event.set()
        return action

    def _pick_resource(self, session: Session, spec: ActionSpec) -> Resource:
        if spec.resource:
            for r in session.resources:
                if r.name == spec.resource:
                    return r
            raise InvalidArgument("spec.resource", f"session has no resource named {spec.resource!r}")
        wanted = (
            _DB_KINDS
            if spec.kind is ActionKind.SQL
            else frozenset({ResourceKind.HTTP})
            if spec.kind is ActionKind.HTTP
            else frozenset({ResourceKind.FS})
        )
        fitting = [r for r in session.resources if r.kind in wanted]
        if len(fitting) == 1:
            return fitting[0]
        if fitting:
            raise InvalidArgument("spec.resource", "the session has several resources of that kind; name one")
        raise InvalidArgument("spec.resource", f"no resource for {spec.kind.value} actions in this session")

    def _run_guarded(self, live: _LiveSession, run: _Run) -> None:
        try:
            self._run(live, run)
        except Exception:
            log.exception("detached action %s failed", run.action.id)

    def _run(self, live: _LiveSession, run: _Run) -> Action:
        cancel = self._cancel[run.action.id]
        try:
            with live.lock:
                return self._run_locked(live, run, cancel)
        except _SessionClosed:
            self._advance(run, _Step(ActionState.FAILED, {"error": "the session was closed before it started"}))
            return self._get(run.action.id)
        finally:
            self._cancel.pop(run.action.id, None)
            self.channels.close(run.action.id)
            self.watchers.forget(run.action.id)
            self.leases.touch(live.session.id)  # its lease counts from the end of its last action

    def _advance(self, run: _Run, *steps: _Step) -> None:
        """Journal `steps` in one commit, with the action itself when the journal has not got it yet.

        Watchers hear of the new states once they are durable.
        """
        state = run.action.state
        for step in steps:  # the whole way is checked before anything is written
            if step.state not in TRANSITIONS[state]:
                raise InternalError(f"illegal transition {state.value} -> {step.state.value} for {run.action.id}")
            state = step.state
        for attempt in (1, 2):
            try:
                self._journal_steps(run, steps)
                break
            except OutOfSpace:
                # A full disk: the journal gave up the space goexd holds back for this (diskspace.py); once more.
                if attempt == 2:
                    raise
        channel = self.channels.get(run.action.id)
        if channel is not None:
            for step in steps:
                channel.state(step.state)

    def _journal_steps(self, run: _Run, steps: Sequence[_Step]) -> None:
        if run.journaled:
            action = run.action
            with self.journal.batch():
                for step in steps:
                    self.journal.transition(action.id, action.state, step.state, step.note, **step.fields)
                    action = replace(action, state=step.state)
            run.action = action
        else:  # inserted as having come that way: fewer statements than step by step
            fields = {k: v for step in steps for k, v in step.fields.items()}
            trail = [(step.state, step.note) for step in steps]
            run.action, run.journaled = self.journal.insert_action(run.action, run.note, trail, **fields), True

    @staticmethod
    def _failed_inverse(live: _LiveSession, action: Action, tested: Reversibility) -> tuple[Reversibility | None, str]:
        """A workspace action whose inverse failed its test: its flagged record where the policy lets it run ([fs]
        failed_inverse; its undo then restores snapshots, never that inverse), else None and why it is refused."""
        decision = live.policy.failed_inverse(action.approval)
        if not decision.allowed:
            again = "; submit it again with an explicit approval to run it flagged"
            needs = decision.kind is DecisionKind.NEEDS_APPROVAL
            return None, f"; {decision.reason} [policy rule {decision.rule}]{again if needs else ''}"
        approved = f"; approved: {decision.approval}" if decision.approval else ""
        detail = (
            f"flagged: its inverse failed the reversibility test ({tested.detail}); it ran as the policy allows "
            f"([fs] failed_inverse{approved}); its undo restores the workspace's snapshots (three-way), not that "
            "inverse"
        )
        return Reversibility(ReversibilityClass.REVERSIBLE, Verdict.FAILED, detail), ""

    def _second_look(self, live: _LiveSession, run: _Run, manager: HttpResource, limits: Limits) -> str | None:
        """An http write's pre-image, taken before the call is announced (a read), and the policy asked again when
        what it answered leaves the call less reversible than first decided (http_gate.second_look). None: the
        action ended here (BLOCKED, and PERMISSION_DENIED to a client still waiting; FAILED when the pre-image
        could not be asked for); else the note for its RUNNING row (the approval the second look took)."""
        action = run.action
        try:
            looked = manager.look(action.id, action.spec, limits.timeout_s)
        except GoexError as exc:  # e.g. the vault refused the resource's credential: nothing was sent
            self._advance(run, _Step(ActionState.FAILED, {"error": self.redact_text(f"{exc}; nothing was sent")}))
            return None
        resource = next(r for r in live.session.resources if r.name == action.resource)
        facts = self._facts(resource, manager, action.spec, action.inverse)
        decision = second_look(live.policy, facts, action.approval or run.approval, looked)
        if decision.allowed and not (decision.approval and looked.weaker):
            return ""
        if decision.allowed:  # the approval it came with lets it through: kept with the action, as at submit
            run.action = replace(run.action, approval=decision.approval)
            if run.journaled:
                self.journal.update(action.id, approval=decision.approval)
            return f"approved: {decision.approval} ({decision.reason})"
        manager.forget(action.id)
        why = self.redact_text(f"{decision.reason} [policy rule {decision.rule}]; only the pre-image was read")
        if decision.kind is DecisionKind.NEEDS_APPROVAL:
            why += '; submit it again with an explicit approval (goex: --approve "who: why") to run it'
        found = Reversibility(looked.found, Verdict.UNTESTED, self.redact_text(looked.why))
        blocked = {
            "error": why,
            "reversibility": codec.dumps(codec.reversibility_to_json(found)),
            "finished_at": time.time(),
        }
        self._advance(run, _Step(ActionState.BLOCKED, blocked))
        if not run.detached:
            raise PermissionDenied(f"{why} (recorded as blocked action {action.id})")
        return None

    def _run_locked(self, live: _LiveSession, run: _Run, cancel: threading.Event) -> Action:
        action = run.action
        manager = live.managers[action.resource]
        started = time.monotonic()
        if self._stopping.is_set():
            self._advance(run, _Step(ActionState.INTERRUPTED, {"error": "goexd stopped before the action started"}))
            return self._get(action.id)
        if cancel.is_set():
            self._advance(run, _Step(ActionState.FAILED, {"error": "cancelled before it started; nothing ran"}))
            return self._get(action.id)
        limits = live.policy.limits(action.spec.limits, live.session.limits)
        # A database read resolved at once: no test and no checkpoint, there is nothing to undo (sql_reads.py).
        reads = run.journaling is Journaling.AFTER_RUN and isinstance(manager, ReadsAtOnce)
        try:
            tested = (
                None
                if reads
                else remembered(
                    self.verdicts,
                    manager.resource,
                    manager,
                    action.spec,
                    action.inverse,
                    f"the test before action {action.id}",
                    lambda: manager.test(action.spec, action.inverse, limits, cancel),
                )
            )
        except GoexError as exc:
            self._advance(run, _Step(ActionState.FAILED, {"error": self.redact_text(f"{exc}; nothing ran")}))
            return self._get(action.id)
        flagged: Reversibility | None = None
        refusal = ""
        if tested is not None and tested.verdict is Verdict.FAILED and isinstance(manager, FsInverseResource):
            flagged, refusal = self._failed_inverse(live, action, tested)
            tested = flagged or tested
        if tested is not None and tested.verdict is Verdict.FAILED and flagged is None:
            # Its undo is known not to work: it does not run (no side effect), and the test says why.
            blocked = {
                "error": self.redact_text(f"its inverse failed the reversibility test: {tested.detail}{refusal}"),
                "reversibility": codec.dumps(codec.reversibility_to_json(replace(tested, tested_at=time.time()))),
                "finished_at": time.time(),
            }
            self._advance(run, _Step(ActionState.BLOCKED, blocked))
            return self._get(action.id)
        looked = ""
        if isinstance(manager, HttpResource) and action.spec.kind is ActionKind.HTTP:
            second = self._second_look(live, run, manager, limits)
            if second is None:
                return self._get(action.id)
            looked = second
        if run.journaling is Journaling.EACH_STEP:
            self._advance(run, _Step(ActionState.PREPARING))
        try:
            checkpoint = (
                READ_CHECKPOINT
                if reads
                else manager.checkpoint(action.id, None if flagged is not None else action.inverse)
            )
        except Exception as exc:
            if is_out_of_space(exc):
                self.space.release()  # room to journal the failure
                if not isinstance(exc, GoexError):
                    exc = out_of_space(f"checkpointing resource {action.resource!r}", [self.cfg.state_dir])
            if isinstance(exc, GoexError):  # refused (e.g. what goexd cannot snapshot): said in the action's error
                log.warning("checkpoint of %s refused: %s", action.id, exc)
            else:
                log.exception("checkpoint of %s failed", action.id)
            failed = {
                "error": self.redact_text(f"could not checkpoint the resource: {exc}"),
                "finished_at": time.time(),
            }
            owed = [] if run.action.state is ActionState.PREPARING else [_Step(ActionState.PREPARING)]
            self._advance(run, *owed, _Step(ActionState.FAILED, failed))
            self._mark_lost(manager, f"the database connection was lost before action {action.id}: {exc}")
            return self._get(action.id)
        faults.point("checkpoint-made", _tag(manager))
        # The checkpoint is journaled with the transition that announces the run: one commit, before it runs;
        # the test's verdict too, for a restart that finds the action kept by a resource that commits at once.
        announced: dict[str, Any] = {"checkpoint": codec.dumps(checkpoint)}
        if tested is not None:  # a reused verdict keeps the time of its real test
            tested = replace(tested, tested_at=tested.tested_at or time.time())
            announced["reversibility"] = codec.dumps(codec.reversibility_to_json(tested))
        run_step = _Step(ActionState.RUNNING, announced, looked)
        prepared_already = run.action.state is ActionState.PREPARING
        to_running = [run_step] if prepared_already else [_Step(ActionState.PREPARING), run_step]
        if run.journaling is not Journaling.AFTER_RUN:
            self._advance(run, *to_running)
            to_running.clear()
            faults.point("run-journaled", _tag(manager))
        # else: it changes nothing, so there is nothing to announce before it runs; all of it is journaled at its end.

        def journaled_running() -> Action:
            """The action as RUNNING in the journal (an AFTER_RUN action that failed is journaled up to RUNNING)."""
            if to_running:
                self._advance(run, *to_running)
                to_running.clear()
            return replace(run.action, checkpoint=checkpoint)

        prepared = time.monotonic()
        channel = self.channels.get(action.id)
        # One stream redactor per stream: a value split across two chunks is still caught.
        redactors = {s: self.vault.redactor.stream() for s in Stream}

        def on_output(stream: Stream, data: bytes) -> None:
            if channel is not None:
                channel.output(stream, redactors[stream].feed(data))

        route: EgressRoute | None = None
        try:
            try:
                network = None
                if action.spec.egress is not None and self.egress is not None:
                    gates = self._gates(live, action, limits.timeout_s)
                    route = self.egress.open_route(egress_plan.grant(action.id, action.spec.egress, gates))
                    network = SandboxNetwork(
                        ProxyEndpoint(route.socket_path, self.egress.ca_path),
                        egress_plan.sandbox_env(action.spec.egress, self.vault),
                    )
                outcome = manager.execute(action.spec, limits, checkpoint, on_output, cancel, network)
                faults.point("run-returned", _tag(manager))
            finally:
                for stream, redactor in redactors.items():
                    if channel is not None and (rest := redactor.flush()):
                        channel.output(stream, rest)
                if route is not None:
                    route.close()
                    records = route.records()
                    journaled_running()
                    self.journal.update(action.id, egress=codec.dumps(codec.egress_to_json(records)))
        except GoexError as exc:
            if isinstance(exc, OutOfSpace):
                self.space.release()  # room to journal the failure and roll back
            return self._fail_and_rollback(live, journaled_running(), checkpoint, str(exc), None, None, started)
        except Exception as exc:
            if is_out_of_space(exc):
                self.space.release()
                why = str(out_of_space(f"running action {action.id}", [self.cfg.state_dir]))
                return self._fail_and_rollback(live, journaled_running(), checkpoint, why, None, None, started)
            log.exception("action %s crashed in its resource manager", action.id)
            return self._fail_and_rollback(
                live, journaled_running(), checkpoint, f"internal error while running: {exc}", None, None, started
            )
        ran = time.monotonic()
        checkpoint = {**checkpoint, **outcome.checkpoint_extra}
        result = outcome.exec
        if result is not None:
            result = replace(
                result,
                stdout=self.redact(result.stdout, truncated=result.stdout_truncated),
                stderr=self.redact(result.stderr, truncated=result.stderr_truncated),
            )
        if result is not None and result.termination in _ROLLBACK_ON:
            reason = result.detail or f"stopped: {result.termination.value}"
            return self._fail_and_rollback(
                live,
                journaled_running(),
                checkpoint,
                reason,
                result,
                outcome.changes,
                started,
                interrupted=self._stopping.is_set() and result.termination is Termination.CANCELLED,
            )
        # The response, and the inverse derived from it, are written with the transition to EXECUTED: one
        # commit instead of three (a refused call's response is written before its rollback).
        recorded: dict[str, Any] = {}
        if outcome.http is not None:
            recorded["http"] = codec.dumps(codec.http_result_to_json(outcome.http))
        if outcome.failure is not None:
            running = journaled_running()
            if recorded:
                self.journal.update(action.id, **recorded)
            return self._fail_and_rollback(live, running, checkpoint, outcome.failure, result, None, started)
        if outcome.inverse is not None:
            recorded["inverse"] = codec.dumps(codec.spec_to_json(outcome.inverse))
        if tested is not None and outcome.reversibility is not None:
            # The class the resource found once it ran (an http answer), with the verdict of the test before it.
            found = outcome.reversibility
            tested = replace(found, verdict=tested.verdict, detail=f"{found.detail}; tried first: {tested.detail}")
        reversibility = (
            replace(tested, tested_at=tested.tested_at or time.time())
            if tested is not None
            else outcome.reversibility
            or _with_calls(
                Reversibility(ReversibilityClass.REVERSIBLE, Verdict.UNTESTED, manager.undo_note),
                route.records() if route is not None else [],
            )
        )
        now = time.monotonic()
        executed = {
            "exec": codec.dumps(codec.exec_to_json(result)) if result else None,
            "changes": codec.dumps(codec.changes_to_json(outcome.changes)) if outcome.changes else None,
            "sql": codec.dumps(codec.sql_to_json(outcome.sql)) if outcome.sql else None,
            "checkpoint": codec.dumps(checkpoint),
            "reversibility": codec.dumps(codec.reversibility_to_json(reversibility)),
            "timings": codec.dumps(
                codec.timings_to_json(
                    Timings(
                        prepare_s=prepared - started,
                        run_s=result.duration_s if result else ran - prepared - outcome.capture_s,
                        capture_s=outcome.capture_s,
                        total_s=now - started,
                    )
                )
            ),
            "finished_at": time.time(),
            **recorded,
        }
        steps = [*to_running, _Step(ActionState.EXECUTED, executed)]
        if run.journaling is Journaling.AFTER_RUN:  # it changed nothing: no one need accept or undo it
            steps.append(_Step(ActionState.COMMITTED, {"resolved_at": time.time()}, _RESOLVED_AT_ONCE))
        self._advance(run, *steps)
        return self._get(action.id)

    def _fail_and_rollback(
        self,
        live: _LiveSession,
        action: Action,
        checkpoint: Checkpoint,
        reason: str,
        result: ExecResult | None,
        changes: ChangeSet | None,
        started: float,
        interrupted: bool = False,
    ) -> Action:
        manager = live.managers[action.resource]
        try:
            self.journal.update(action.id, note=f"rolling back: {reason}")
        except OutOfSpace as exc:  # only a note: the rollback must not wait for it (it may free the space)
            log.warning("action %s: %s", action.id, exc)
        detail = ""
        try:
            report = manager.rollback(action.id, checkpoint)
            detail = f"; rolled back ({report.detail})"
        except Exception as exc:
            if is_out_of_space(exc):
                self.space.release()
                log.warning("rollback of %s failed: %s", action.id, exc)
            else:
                log.exception("rollback of %s failed", action.id)
            detail = f"; ROLLBACK FAILED: {exc}"
        calls = self._undo_calls(live, self._get(action.id), keep_going=True)
        if calls is not None:
            detail += f"; its calls: {calls.detail}"
        final = ActionState.INTERRUPTED if interrupted else ActionState.FAILED
        self._transition(
            action,
            final,
            error=self.redact_text(reason + detail),
            exec=codec.dumps(codec.exec_to_json(result)) if result is not None else None,
            changes=codec.dumps(codec.changes_to_json(changes)) if changes is not None else None,
            timings=codec.dumps(codec.timings_to_json(Timings(total_s=time.monotonic() - started))),
            finished_at=time.time(),
        )
        self._mark_lost(manager, f"the database discarded its open transaction when action {action.id} failed")
        return self._get(action.id)

    def _mark_lost(self, manager: ResourceManager, why: str) -> None:
        """Say so when a backend threw away pending actions' effects on its own (no state is lost silently)."""
        for lost_id in manager.take_lost():
            lost = self._get(lost_id)
            if lost.state is ActionState.EXECUTED:
                self._transition(lost, ActionState.INTERRUPTED, error=why, resolved_at=time.time())

    def _transition(self, action: Action, new: ActionState, note: str = "", **fields: Any) -> None:
        """One step of an action the journal has (commit, undo, recovery, failures): see _advance."""
        self._advance(_Run(action, Journaling.EACH_STEP, True, ""), _Step(new, fields, note))

    def _get(self, action_id: str) -> Action:
        action = self.journal.get_action(action_id)
        if action is None:
            raise NotFound("action", action_id)
        return action

    def get_action(self, action_id: str) -> Action:
        return self._get(action_id)

    def action_ref(self, ref: str, fld: str, session_id: str = "") -> str:
        """The id an action reference names: an id, a unique prefix, or a seq number or 'last' of `session_id`."""
        if session_id:
            self.get_session(session_id)  # NOT_FOUND for an unknown session, before anything else
        return action_refs.resolve(self.journal, ref, fld, session_id)

    def list_actions(
        self, session_id: str, states: Sequence[ActionState], page_size: int, page_token: str
    ) -> tuple[list[Action], str]:
        self.get_session(session_id)
        limit = page_size or 100
        if limit > 1000:
            raise InvalidArgument("page_size", "must be at most 1000")
        actions = self.journal.list_actions(session_id, states, _action_token(page_token), limit + 1)
        if len(actions) > limit:
            return actions[:limit], str(actions[limit - 1].seq)
        return actions, ""

    def watch(self, action_id: str, alive: threading.Event | None = None) -> Iterator[Event]:
        action = self._get(action_id)
        channel = self.channels.get(action_id)
        if channel is None:  # long finished: its current state is all there is to tell
            yield Event(at=time.time(), state=action.state)
            return
        with self.watchers.watching(action_id):
            yield from channel.follow(alive)

    # ================================================================ commit / undo

    def commit(self, session_id: str, up_to: str = "") -> list[Action]:
        live = self._live_session(session_id)
        with live.lock:
            pending = self.journal.list_actions(session_id, [ActionState.EXECUTED])
            if up_to:
                anchor = self._get(up_to)
                if anchor.session_id != session_id:
                    raise InvalidArgument("up_to_action_id", f"action {up_to} belongs to another session")
                pending = [a for a in pending if a.seq <= anchor.seq]
            return self._commit_locked(live, pending)

    def _commit_locked(self, live: _LiveSession, pending: Sequence[Action]) -> list[Action]:
        if half := [a.id for a in pending if a.undo_started]:
            # Its undo wrote part of the way (the intent is journaled): committing would keep a half-undone action.
            raise FailedPrecondition(
                f"cannot commit: the undo of action {', '.join(half)} stopped part way; undo it again "
                "(or restart goexd, which finishes that undo)"
            )
        try:
            for name, manager in live.managers.items():  # all or nothing: check every resource first
                manager.commit_check([a.id for a in pending if a.resource == name])
            # The managers commit first (a database's COMMIT may still fail); only then is it journaled,
            # so the journal never says COMMITTED for what the database did not keep. The intent is
            # noted first, so a crash in between is reported as such at the next start.
            for a in pending:
                self.journal.update(a.id, note=_COMMIT_STARTED)
            for a in pending:
                faults.point("commit-journaled", _tag(live.managers[a.resource]))
                live.managers[a.resource].commit(a.id, a.checkpoint)
                faults.point("commit-returned", _tag(live.managers[a.resource]))
        except GoexError as exc:
            for a in pending:  # the intent is void: a restart must not finish this commit (see recover)
                self.journal.update(a.id, note=f"commit failed: {exc}")
            for manager in live.managers.values():
                self._mark_lost(manager, f"the database discarded its transaction while committing: {exc}")
            raise
        done = []
        for a in pending:
            self._transition(a, ActionState.COMMITTED, resolved_at=time.time())
            settling(live.managers[a.resource]).settle([a.id])
            done.append(self._get(a.id))
        return done

    def undo(self, session_id: str, action_id: str = "", cascade: bool = False, force: bool = False) -> list[Action]:
        live = self._live_session(session_id)
        with live.lock:
            pending = self.journal.list_actions(session_id, [ActionState.EXECUTED])
            if action_id:
                target = self._get(action_id)
                if target.session_id != session_id:
                    raise InvalidArgument("action_id", f"action {action_id} belongs to another session")
            elif pending:
                target = pending[-1]
            else:
                raise FailedPrecondition(f"session {session_id} has no pending action to undo")
            self._require_pending(target)
            # A later action on a workspace alone does not stand in the way: its three-way undo refuses
            # only where the later one changed the same paths (the conflict names them).
            touched = _touched(target) - self._three_way_resources(live)
            later = [a for a in pending if a.seq > target.seq and _touched(a) & touched]
            if cascade:
                later = [a for a in pending if a.seq > target.seq and _touched(a) & _touched(target)]
            if later and not cascade:
                ids = ", ".join(a.id for a in later)
                raise FailedPrecondition(
                    f"action {target.id} has later pending actions on resource {target.resource!r} ({ids}); "
                    "undo those first, or ask to cascade"
                )
            targets = [*reversed(later), target]
            self._refuse_irreversible(targets)
            self._check_inverses(live, targets)
            return [self._undo_one(live, a, force) for a in targets]

    def undo_to(self, action_id: str, force: bool = False) -> list[Action]:
        anchor = self._get(action_id)
        live = self._live_session(anchor.session_id)
        with live.lock:
            pending = self.journal.list_actions(anchor.session_id, [ActionState.EXECUTED], after_seq=anchor.seq)
            self._refuse_irreversible(pending)
            self._check_inverses(live, pending)
            return [self._undo_one(live, a, force) for a in reversed(pending)]

    def _later_on_paths(self, action: Action, paths: set[str]) -> list[str]:
        """Later pending actions on the same resource whose recorded changes include one of `paths`."""
        pending = self.journal.list_actions(action.session_id, [ActionState.EXECUTED], after_seq=action.seq)
        return [
            a.id
            for a in pending
            if a.resource == action.resource
            and a.changes is not None
            and any(c.path.rstrip("/") in paths for c in a.changes.changes)
        ]

    @staticmethod
    def _three_way_resources(live: _LiveSession) -> set[str]:
        return {name for name, m in live.managers.items() if isinstance(m, UndoesThreeWay)}

    def list_set_asides(self, session_id: str) -> list[tuple[str, SetAside]]:
        """(resource name, set-aside) of every workspace of the session, oldest first."""
        live = self._live_session(session_id)
        with live.lock:
            found = [
                (name, kept)
                for name, m in live.managers.items()
                if isinstance(m, UndoesThreeWay)
                for kept in m.set_asides()
            ]
        return sorted(found, key=lambda f: f[1].created)

    def restore_set_aside(self, session_id: str, set_aside_id: str, force: bool = False) -> RollbackReport:
        live = self._live_session(session_id)
        with live.lock:
            for manager in live.managers.values():
                if not isinstance(manager, UndoesThreeWay):
                    continue
                try:  # each workspace looks its own up by id (one ref), none lists them all
                    return manager.restore_set_aside(set_aside_id, force=force)
                except NotFound as e:
                    if (e.what, e.ident) != ("set-aside", set_aside_id):
                        raise
        raise NotFound("set-aside", set_aside_id)

    @staticmethod
    def _require_pending(action: Action) -> None:
        if action.state is ActionState.EXECUTED:
            return
        why = {
            ActionState.COMMITTED: "it is committed; committed actions cannot be undone",
            ActionState.UNDONE: "it is already undone",
            ActionState.FAILED: "it failed and was already rolled back",
            ActionState.BLOCKED: "it was blocked and never ran",
            ActionState.INTERRUPTED: "it was interrupted and already rolled back",
        }.get(action.state, f"it is still {action.state.value}")
        raise FailedPrecondition(f"cannot undo action {action.id}: {why}")

    def _undone_since(self, action: Action) -> dict[str, str]:
        """A workspace action's checkpoint for its undo, with the older actions on it undone since it ran
        (resources/fs/versioned.py UNDONE_SINCE): the undo replays theirs first (issue 14 F9)."""
        found = self.journal.list_actions(action.session_id, [ActionState.UNDONE], limit=1 << 30)
        undone = [a for a in diffs.undone_since(found, action) if a.checkpoint.get("post") and a.checkpoint.get("pre")]
        if not undone or "post" not in action.checkpoint:
            return action.checkpoint
        pairs = [[a.checkpoint["post"], a.checkpoint["pre"]] for a in undone]
        return {**action.checkpoint, UNDONE_SINCE: json.dumps(pairs)}

    @staticmethod
    def _refuse_irreversible(actions: Sequence[Action]) -> None:
        """Before undoing anything: one irreversible action in the batch refuses the whole undo."""
        for a in actions:
            known = a.reversibility
            if known is not None and known.reversibility_class is ReversibilityClass.IRREVERSIBLE:
                raise FailedPrecondition(
                    f"action {a.id} is irreversible ({known.detail}); it cannot be undone, only committed"
                )

    @staticmethod
    def _check_inverses(live: _LiveSession, actions: Sequence[Action]) -> None:
        """Before undoing anything: a client SQL inverse the policy now refuses refuses the whole undo."""
        for a in actions:
            sql_policy.check_undo(live.policy, a, live.managers[a.resource].resource.kind)

    def _undo_one(self, live: _LiveSession, action: Action, force: bool = False) -> Action:
        known = action.reversibility
        started = time.monotonic()
        manager = live.managers[action.resource]
        sql_policy.check_undo(live.policy, action, manager.resource.kind)  # before anything is journaled or run
        three_way = manager if isinstance(manager, UndoesThreeWay) else None
        if force and three_way is None:
            raise InvalidArgument("force", f"resource {action.resource!r} has nothing to overwrite: only workspaces do")
        replays = isinstance(manager, FsVersionedResource) and not isinstance(manager, FsInverseResource)
        checkpoint = self._undone_since(action) if replays else action.checkpoint
        if three_way is not None and not force and (conflicts := three_way.undo_conflicts(action.id, checkpoint)):
            # Before anything is undone (its http calls included): refused whole.
            later = self._later_on_paths(action, set(conflicts))
            by = f"by later pending actions {', '.join(later)} or by you" if later else "by you or a later action"
            raise FailedPrecondition(
                f"cannot undo action {action.id}: changed since it ran ({by}): "
                f"{display_paths(conflicts)}; undo the later actions first (cascade), or force the undo "
                "to set those versions aside"
            )
        # The intent is journaled first: a crash mid-restore is finished at the next start-up.
        self.journal.update(action.id, note="undo started", undo_started=1)
        faults.point("undo-journaled", _tag(manager))
        try:
            calls = self._undo_calls(live, action, keep_going=False)
            if force and three_way is not None:
                report = three_way.rollback_overwriting(action.id, checkpoint)
            else:
                report = manager.rollback(action.id, checkpoint)
            faults.point("undo-returned", _tag(manager))
        except Exception as exc:
            full = is_out_of_space(exc)
            if full:
                self.space.release()  # room for what follows
            if not (full or isinstance(exc, GoexError)):
                raise  # a bug: the intent stays, and the next start finishes the undo (three-way)
            if getattr(exc, "partial", False):  # OutOfSpace or StoppedPartWay
                # Part of it is written: the intent stays, so the next start finishes it if no retry does.
                self.journal.update(action.id, note=f"undo stopped part way: {exc}")
                raise
            # Refused or failed before anything was restored for good: the action stays pending, to retry.
            self.journal.update(action.id, note=f"undo failed: {exc}", undo_started=0)
            if not isinstance(exc, GoexError):
                raise out_of_space(f"undoing action {action.id}", [self.cfg.state_dir]) from exc
            raise
        if calls is not None:
            report = report.with_calls(calls)
        undo_s = time.monotonic() - started
        self._transition(
            action,
            ActionState.UNDONE,
            note=report.detail,
            resolved_at=time.time(),
            timings=codec.dumps(codec.timings_to_json(replace(action.timings, undo_s=undo_s))),
            reversibility=codec.dumps(
                codec.reversibility_to_json(
                    Reversibility(
                        known.reversibility_class if known is not None else ReversibilityClass.REVERSIBLE,
                        report.verdict,  # verified / not verified / unverified (nothing to compare against)
                        report.detail,
                        time.time(),
                    )
                )
            ),
        )
        settling(manager).settle([action.id])
        return self._get(action.id)

    def test_reversibility(self, session_id: str, spec: ActionSpec, inverse: ActionSpec | None) -> Reversibility:
        """Run the action and its inverse where nothing stays (a rolled-back transaction or a clone)."""
        live = self._live_session(session_id)
        resource = self._pick_resource(live.session, spec)
        manager = live.managers[resource.name]
        if not isinstance(manager, HttpResource):  # held to the policy as a submit is, before anything runs
            self.check_limits("spec.limits", spec.limits)
            facts = self._facts(resource, manager, spec, inverse, trial=True)
            sql_policy.refuse_test(live.policy.check(facts, count=False))
        manager.precheck(spec)
        if isinstance(manager, FsVersionedResource):  # whatever its strategy: tried on an overlay of the workspace
            limits = live.policy.limits(spec.limits, live.session.limits)
            with live.lock:
                site = site_of(manager)
                return self._remembered_test(
                    manager,
                    spec,
                    inverse,
                    lambda: try_pair(site, spec, inverse, limits, None, without_inverse="unknown").reversibility,
                )
        if isinstance(manager, HttpResource):  # never tried on the service itself; on its staging copy if named
            manager.check_inverse(spec, inverse)
            if manager.staging is not None:  # what the policy refuses outright is not sent to the staging copy either
                decision = live.policy.check(self._facts(resource, manager, spec, inverse), count=False)
                if decision.kind is DecisionKind.DENY:
                    raise PermissionDenied(f"{decision.reason} [policy rule {decision.rule}]; not tried on staging")
            limits = live.policy.limits(spec.limits, live.session.limits)

            def tried_on_staging() -> Reversibility:
                verdict = test_http(manager, spec, inverse, limits.timeout_s)
                return replace(verdict, detail=self.redact_text(verdict.detail))

            with live.lock:
                return self._remembered_test(manager, spec, inverse, tried_on_staging)
        if resource.strategy is not UndoStrategy.INVERSE:
            raise Unimplemented(
                f"reversibility tests are built for the inverse strategy; resource {resource.name!r} uses "
                f"{resource.strategy.value}, whose undo is verified on every undo"
            )
        limits = live.policy.limits(spec.limits, live.session.limits)
        with live.lock:
            return self._remembered_test(manager, spec, inverse, lambda: manager.test(spec, inverse, limits, None))

    def _remembered_test(
        self,
        manager: ResourceManager,
        spec: ActionSpec,
        inverse: ActionSpec | None,
        test: Callable[[], Reversibility | None],
    ) -> Reversibility:
        """TestReversibility's verdict: remembered for the pair on the same state, or tested now (verdict_memory.py)."""

        def fresh() -> Reversibility:
            tested = test()
            assert tested is not None  # the inverse strategy, a workspace and an http resource always answer
            return replace(tested, tested_at=time.time())

        found = remembered(self.verdicts, manager.resource, manager, spec, inverse, "TestReversibility", fresh)
        assert found is not None
        return found

    def judge_pair(self, action_id: str, judgement: Judgement, who: str, note: str) -> PairHistory:
        """A person's judgement of an action's (forward, inverse) pair, kept with the pair (verdict_memory.py)."""
        key = self._pair_key(action_id)
        self.verdicts.judge(key, judgement, who, note, action_id)
        return self.verdicts.history(key)

    def pair_history(self, action_id: str) -> PairHistory:
        """The verdicts and judgements kept for an action's pair (its session may be closed)."""
        return self.verdicts.history(self._pair_key(action_id))

    def _pair_key(self, action_id: str) -> str:
        action = self._get(action_id)
        if action.inverse is None:
            raise FailedPrecondition(f"action {action_id} has no inverse: its undo needs none, so there is no pair")
        found = [r for r in self.get_session(action.session_id).resources if r.name == action.resource]
        if not found:
            raise InternalError(f"action {action_id} names resource {action.resource!r}, not in its session")
        return pair_key(found[0], action.spec, action.inverse)

    # ================================================================ diffs

    def diff_action(self, action_id: str, options: DiffOptions) -> diffs.ActionDiff:
        """What an action changed (engine/diffs.py); read from the record and the snapshot store, so its
        session may be closed."""
        action = self._get(action_id)
        redact = diffs.Redactors(self.redact, self.redact_text)
        return diffs.action_diff(action, self.get_session(action.session_id), self.cfg.snapshots_dir, redact, options)

    def diff_since_last(self, session_id: str, resource: str, options: DiffOptions) -> diffs.ActionDiff:
        """What changed in a workspace since the session's latest action on it left it: a person's edits."""
        live = self._live_session(session_id)
        fs = diffs.fs_resource(live.session, resource, "since_last.resource")
        with live.lock:  # between actions: an action's changes are not a person's
            pending = self.journal.list_actions(session_id, [*diffs.IN_EFFECT, ActionState.UNDONE], limit=1 << 30)
            latest = diffs.latest_in_effect(pending, fs)
            try:
                now = live.managers[fs.name].fingerprint()  # an fs resource's: its workspace's snapshot id
            except SnapshotError as e:  # what goexd may not read and does not own (named)
                raise FailedPrecondition(f"cannot snapshot {fs.name!r} to compare it: {e}") from e
        redact = diffs.Redactors(self.redact, self.redact_text)
        undone = diffs.undone_since(pending, latest)  # goexd's writes since `latest`, not the person's
        return diffs.since_last_diff(latest, fs, now, self.cfg.snapshots_dir, redact, options, undone)

    # ================================================================ recovery / shutdown

    def recover(self) -> list[Action]:
        """Resolve what a crash left behind; runs before the server accepts requests. Then the lease sweep starts."""
        try:
            return self._recover()
        finally:
            if self.leases.on:
                self.leases.sweep_every(self._stopping, self.expire_idle_sessions)

    def _recover(self) -> list[Action]:
        if self.space.free() < self.space.reserve:
            self.space.release()  # what the held-back space is for: finishing and rolling back
        resolved: list[Action] = []
        for action in self.journal.actions_in_states(
            [ActionState.RUNNING, ActionState.PREPARING, ActionState.PROPOSED, ActionState.EXECUTED]
        ):
            if action.state is ActionState.EXECUTED and self._held_in_a_transaction(action):
                resolved.append(self._lost_at_restart(action))
                continue
            if action.state is ActionState.EXECUTED and self._last_note(action) == _COMMIT_STARTED:
                faults.point("recovery-action", self._tag_of(action))
                try:
                    resolved.append(self._finish_commit(action))
                except Exception:
                    log.exception("recovery: finishing the commit of %s failed; it stays executed", action.id)
                continue
            if action.state is ActionState.EXECUTED and not action.undo_started:
                continue
            faults.point("recovery-action", self._tag_of(action))
            try:
                resolved.append(self._recover_one(action))
            except GoexError as e:  # a refusal with its reason (e.g. a workspace it may not read): no traceback
                log.warning("recovery of action %s refused: %s; it stays %s", action.id, e, action.state.value)
            except Exception:
                log.exception("recovery of action %s failed; it stays %s", action.id, action.state.value)
        return resolved

    def _held_in_a_transaction(self, action: Action) -> bool:
        session = self.journal.get_session(action.session_id)
        kinds = {r.name: (r.kind, r.strategy) for r in session.resources} if session else {}
        return kinds.get(action.resource) in (
            (ResourceKind.SQLITE, UndoStrategy.TRANSACTION),
            (ResourceKind.POSTGRES, UndoStrategy.TRANSACTION),
        )

    def _last_note(self, action: Action) -> str:
        notes = [note for _, _, _, note in self.journal.transitions(action.id)]
        return notes[-1] if notes else ""

    def _finish_commit(self, action: Action) -> Action:
        """A commit goexd stopped in after journaling its intent: finished, never left pending, because its
        resource may have let go of what an undo needs (the clone strategy drops its copy) and it was asked for."""
        log.warning("recovery: finishing the interrupted commit of %s", action.id)
        manager = self._live_session(action.session_id).managers[action.resource]
        manager.commit(action.id, action.checkpoint)  # done again where it was done: each manager's is idempotent
        note = "recovery: finished the commit goexd stopped in"
        self._transition(action, ActionState.COMMITTED, note=note, resolved_at=time.time())
        settling(manager).settle([action.id])
        return self._get(action.id)

    def _lost_at_restart(self, action: Action) -> Action:
        log.warning("recovery: %s was pending in a database transaction that ended with goexd", action.id)
        if self._last_note(action) == _COMMIT_STARTED:
            error = (
                "goexd stopped while committing the session's database transaction; whether the database "
                "committed it before that is unknown: check the data"
            )
        else:
            error = (
                "goexd stopped while the action was pending in the session's open database transaction; "
                "the database rolled that transaction back, so its effects are gone"
            )
        self._transition(action, ActionState.INTERRUPTED, error=error, resolved_at=time.time())
        return self._get(action.id)

    def _recover_one(self, action: Action) -> Action:
        if action.state is ActionState.EXECUTED:
            log.warning("recovery: finishing the interrupted undo of %s", action.id)
            live = self._live_session(action.session_id)
            # Asked for and begun: a workspace's is finished forced, since a refusal would leave it half undone
            # while the journal says pending; what changed there since (the person's, while goexd was down) is
            # set aside, never dropped.
            return self._undo_one(live, action, force=isinstance(live.managers[action.resource], UndoesThreeWay))
        # A checkpoint that can take the action back: a snapshot or fingerprint ("pre"), an overlay run, a copy
        # ("clone": PostgreSQL's has no "pre" until the action ends, and its statements commit at once).
        if action.state is ActionState.RUNNING and any(action.checkpoint.get(k) for k in ("pre", "overlay", "clone")):
            log.warning("recovery: rolling back %s to its checkpoint", action.id)
            live = self._live_session(action.session_id)
            found = settling(live.managers[action.resource]).resolve_in_doubt(action.id, action.checkpoint)
            if found.resolution is not Resolution.ROLL_BACK:
                return self._settle_in_doubt(action, found)
            self.journal.update(action.id, note="recovery: rolling back to the checkpoint")
            report = live.managers[action.resource].rollback(action.id, action.checkpoint)
            calls = self._undo_calls(live, action, keep_going=True)
            detail = report.detail + (f"; its calls: {calls.detail}" if calls is not None else "")
            self._transition(
                action,
                ActionState.INTERRUPTED,
                error=f"goexd stopped while the action was running; rolled back to its checkpoint ({detail})",
                finished_at=time.time(),
            )
        elif action.state is ActionState.RUNNING and action.kind is ActionKind.HTTP:
            self._transition(
                action,
                ActionState.INTERRUPTED,
                error="goexd stopped during the call; the service may have carried it out (goexd never resends)",
                finished_at=time.time(),
            )
        else:
            dropped = self._drop_unjournaled_copy(action)
            self._transition(
                action,
                ActionState.INTERRUPTED,
                error=f"goexd stopped while the action was {action.state.value}; it had no side effect{dropped}",
                finished_at=time.time(),
            )
        return self._get(action.id)

    def _drop_unjournaled_copy(self, action: Action) -> str:
        """Before its run was journaled an action's checkpoint may have made a copy (the clone strategies'): gone
        with the action, or it would hold the space (a database on the server) with nothing to name it."""
        if action.state not in (ActionState.PROPOSED, ActionState.PREPARING):
            return ""
        manager = self._live_session(action.session_id).managers.get(action.resource)
        if not isinstance(manager, KeepsCopies):
            return ""
        dropped = manager.drop_unjournaled_copy(action.id)
        return f"; {dropped}" if dropped else ""

    def _settle_in_doubt(self, action: Action, found: InDoubt) -> Action:
        """A RUNNING action its resource says it kept whole (pending again) or cannot tell about (said so)."""
        if found.resolution is Resolution.UNKNOWN:
            log.warning("recovery: the outcome of %s is unknown: %s", action.id, found.detail)
            error = f"goexd stopped while the action was running; {found.detail}"
            self._transition(action, ActionState.INTERRUPTED, error=error, finished_at=time.time())
            return self._get(action.id)
        log.warning("recovery: %s had committed before goexd stopped; it is pending again", action.id)
        known = action.reversibility or Reversibility(ReversibilityClass.REVERSIBLE, Verdict.UNTESTED)
        self._transition(
            action,
            ActionState.EXECUTED,
            note=f"recovery: {found.detail}",
            checkpoint=codec.dumps({**action.checkpoint, **found.checkpoint_extra}),
            reversibility=codec.dumps(
                codec.reversibility_to_json(replace(known, detail=f"{known.detail}; recovery: {found.detail}"))
            ),
            finished_at=time.time(),
        )
        return self._get(action.id)

    def _settle_resolved(self, managers: dict[str, ResourceManager]) -> None:
        """Drop the outcome evidence a resource still holds of actions the journal has resolved (a crash
        came between the two); that of actions this journal does not know (another goexd's) stays."""
        for manager in managers.values():
            resolved = [
                a.id
                for a in map(self.journal.get_action, settling(manager).marked())
                if a is not None and a.state not in ACTIVE_STATES and a.state is not ActionState.EXECUTED
            ]
            if resolved:
                settling(manager).settle(resolved)

    def _tag_of(self, action: Action) -> str:
        """The fault-point tag of the action's resource, from the journal (recovery has no manager yet)."""
        session = self.journal.get_session(action.session_id)
        found = [r for r in session.resources if r.name == action.resource] if session is not None else []
        return f"{found[0].kind.value}-{found[0].strategy.value}" if found else "unknown-resource"

    def running_count(self) -> int:
        return len(self._cancel)

    def shutdown(self, grace_s: float) -> None:
        """Let running actions finish for `grace_s`, then cancel (and roll back) the rest."""
        self._stopping.set()
        deadline = time.monotonic() + grace_s
        while self._cancel and time.monotonic() < deadline:
            time.sleep(0.05)
        for ev in list(self._cancel.values()):
            ev.set()
        self._workers.shutdown(wait=True)
        with self._live_lock:
            lives = list(self._live.values())
            self._live.clear()
        for live in lives:
            with live.lock:
                for m in live.managers.values():
                    m.close()

    def _refuse_if_stopping(self) -> None:
        if self._stopping.is_set():
            raise Unavailable("goexd is shutting down")
        if self._draining.is_set():
            left = stopping.summary(self.interrupted_by_stop())
            raise Unavailable(f"goexd is draining before it stops: no new sessions or actions; {left}")

    def drain(self) -> None:
        """Refuse new sessions and actions from now on (commit, undo and reads go on), until goexd stops."""
        self._draining.set()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def interrupted_by_stop(self) -> list[stopping.Interrupted]:
        """What stopping now would interrupt (engine/stopping.py)."""
        pending = self.journal.actions_in_states([ActionState.EXECUTED])
        sessions = {sid: self.journal.get_session(sid) for sid in {a.session_id for a in pending}}
        return stopping.interrupted_by_stop(list(self._cancel), pending, sessions)

    def redact(self, data: bytes, truncated: bool = False) -> bytes:
        return self.vault.redactor(data, truncated=truncated)

    def redact_text(self, text: str) -> str:
        return self.vault.redactor.text(text)
