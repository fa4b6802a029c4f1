"""Sessions: opening (or picking up again) a session over its resources, holding its managers in memory while
it is used, and letting go of it (closed, or idle past its lease: engine/leases.py).

Rules: a resource is held by at most one open or expired session (the journal's unique index); a session's
managers are opened on first use and closed when it is let go; a failed opening leaves nothing open and no row."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import replace

from goexd.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from goexd.domain.models import (
    ACTIVE_STATES,
    ActionState,
    LimitsRequest,
    Resource,
    ResourceKind,
    ResourceRequest,
    Session,
    SessionState,
)
from goexd.domain.resource import (
    ResourceManager,
    settling,
)
from goexd.domain.sandbox import Limits
from goexd.engine.action_refs import new_id
from goexd.engine.core import Core, Part
from goexd.engine.facts import check_limits
from goexd.engine.live import LiveSession, held_in_a_transaction, overlap
from goexd.policy.check import SessionPolicy
from goexd.policy.parse import PolicyError, build_session, parse
from goexd.policy.parse import check_size as check_policy_size
from goexd.resources.http.resource import check_http_host

log = logging.getLogger("goexd.engine")

_NOT_OURS = "not a token this server issued"


def _listed(resources: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{kind} {uri}" for kind, uri in resources)


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


class Sessions(Part):
    """The sessions goexd holds, and their managers while they are used."""

    def __init__(self, core: Core) -> None:
        super().__init__(core)
        self._live: dict[str, LiveSession] = {}
        self._live_lock = threading.Lock()
        self._creating = threading.Lock()  # get-or-create (CreateSession reuse) is one step

    def get_or_create(
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
            return self._get_or_create(requests, label, limits, policy_toml, reuse)

    def _get_or_create(
        self,
        requests: Sequence[ResourceRequest],
        label: str,
        limits: LimitsRequest | None,
        policy_toml: str,
        reuse: bool,
    ) -> tuple[Session, bool]:
        self.life.refuse_if_stopping()
        if not requests:
            raise InvalidArgument("resources", "at least one resource is required")
        check_policy_size(policy_toml, "policy_toml")
        policy = self.parse_policy(policy_toml)
        session_limits = check_limits(self.cfg.sandbox, "limits", limits or LimitsRequest()).over(self.default_limits)
        resources: list[Resource] = []
        names: set[str] = set()
        for i, req in enumerate(requests):
            resource = self.kinds.check(req, f"resources[{i}]")
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
            id=new_id("ses"),
            label=label,
            state=SessionState.OPEN,
            resources=tuple(resources),
            limits=session_limits,
            created_at=time.time(),
        )
        self.journal.insert_session(session, policy_toml)  # holds its resources: a second session waits no more
        try:
            self.live(session.id)  # opens the stores and takes the baseline snapshot
        except Exception:
            self.journal.discard_session(session.id)  # a session that never opened leaves no row
            raise
        return self.get(session.id), False

    def _reusable(
        self,
        resources: Sequence[Resource],
        requests: Sequence[ResourceRequest],
        policy_toml: str,
        limits: LimitsRequest | None,
        session_limits: Limits,
    ) -> Session | None:
        """The session holding exactly `resources` (kind and location; strategy, sandbox and image where asked),
        opened again if it had expired; None when no session holds any of them; FAILED_PRECONDITION when they are
        held otherwise."""
        holders = sorted({sid for sid, uri in self.journal.held_resources() for r in resources if overlap(r.uri, uri)})
        if not holders:
            return None
        if len(holders) > 1:
            raise FailedPrecondition(
                f"reuse: the resources asked for overlap several sessions ({', '.join(holders)}); no one session "
                "holds exactly them"
            )
        held = self.get(holders[0])
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
            held_box = (by_uri[r.uri].sandbox, by_uri[r.uri].image)
            if (req.sandbox or req.image) and held_box != (r.sandbox, r.image):
                raise FailedPrecondition(
                    f"reuse: resources[{i}].fs.sandbox: session {held.id} runs {r.uri}'s actions in "
                    f"{' '.join(filter(None, held_box))}, not {' '.join(filter(None, (r.sandbox, r.image)))}"
                )
        if policy_toml and policy_toml != self.journal.session_policy(held.id):
            raise FailedPrecondition(f"reuse: policy_toml differs from the policy session {held.id} was opened with")
        if limits is not None and limits != LimitsRequest() and session_limits != held.limits:
            raise FailedPrecondition(f"reuse: limits differ from those of session {held.id} ({held.limits})")
        self.live(held.id)  # opens an expired one again; renews its lease
        return self.get(held.id)

    def warnings(self, session: Session) -> list[str]:
        """What to know before acting in a session just opened: workspace entries its actions cannot write."""
        return [said for r in session.resources for said in self.kinds.warnings(r)]

    def parse_policy(self, text: str, fld: str = "policy_toml") -> SessionPolicy:
        """A session's policy beside the daemon's (it can only narrow it); INVALID_ARGUMENT naming the line of the
        first error."""
        try:
            return SessionPolicy(self.daemon_policy, build_session(parse(text)), text)
        except PolicyError as exc:
            raise InvalidArgument(fld, f"line {exc.line}: {exc.message}") from None

    def _refuse_overlaps(self, resources: Sequence[Resource]) -> None:
        for i, r in enumerate(resources):  # within the new session: one undo mechanism per file
            for other in resources[i + 1 :]:
                if overlap(r.uri, other.uri):
                    raise InvalidArgument(
                        "resources", f"resources {r.name!r} and {other.name!r} overlap ({r.uri}, {other.uri})"
                    )
        held = self.journal.held_resources()
        for r in resources:
            for session_id, uri in held:
                if overlap(r.uri, uri):
                    raise FailedPrecondition(f"resource {r.uri} overlaps {uri}, {self._held_by(session_id, uri)}")

    def _held_by(self, session_id: str, uri: str) -> str:
        """Who holds a resource and how to get at it, for a refusal."""
        holder = self.get(session_id)
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

    def get(self, session_id: str) -> Session:
        session = self.journal.get_session(session_id)
        if session is None:
            raise NotFound("session", session_id)
        return session

    def listed(self, include_closed: bool, page_size: int, page_token: str) -> tuple[list[Session], str]:
        limit = page_size or 100
        if limit > 1000:
            raise InvalidArgument("page_size", "must be at most 1000")
        sessions = self.journal.list_sessions(include_closed, _session_token(page_token), limit + 1)
        if len(sessions) > limit:
            last = sessions[limit - 1]
            return sessions[:limit], f"{last.created_at!r}/{last.id}"
        return sessions, ""

    def describe(self, session_id: str, samples: bool = False) -> list[tuple[str, str]]:
        live = self.live(session_id)
        with live.lock:  # a database manager's connection is not shared with a running action
            return [(name, m.describe(samples)) for name, m in live.managers.items()]

    def let_go(self, session_id: str, live: LiveSession) -> None:
        """Close the session's managers (its lock held): a closed or expired session holds nothing in memory."""
        live.lock.closed = True
        with self._live_lock:
            self._live.pop(session_id, None)
        self.leases.forget(session_id)
        for m in live.managers.values():
            m.close()

    def expire_idle(self) -> list[str]:
        """The lease sweep (engine/leases.py): let go of each open session idle past its lease. Returns their ids."""
        if self.life.stopping.is_set():
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

    def _expire_locked(self, session_id: str, live: LiveSession | None) -> bool:
        if self.leases.idle_s(session_id) < self.leases.lease_s:
            return False  # used meanwhile
        if self.journal.list_actions(session_id, ACTIVE_STATES):
            return False
        pending = self.journal.list_actions(session_id, [ActionState.EXECUTED])
        if any(held_in_a_transaction(self.journal, self.kinds, a) for a in pending):
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
            self.let_go(session_id, live)
        else:
            self.leases.forget(session_id)
        return True

    def live(self, session_id: str) -> LiveSession:
        """The session's managers, opened on first use (again after a restart or its lease expired)."""
        self.leases.touch(session_id)
        with self._live_lock:
            live = self._live.get(session_id)
            if live is not None:
                return live
            session = self.get(session_id)
            if session.state is SessionState.EXPIRED:
                log.info("session %s: opened again after its lease expired", session_id)
                self.journal.reopen_session(session_id)
                session = self.get(session_id)
            if session.state is not SessionState.OPEN:
                raise FailedPrecondition(f"session {session_id} is closed")
            policy = self.parse_policy(self.journal.session_policy(session_id))
            opened: dict[str, ResourceManager] = {}
            try:  # remote ones first: one that cannot be reached fails the opening before a local file is created
                for r in sorted(
                    session.resources, key=lambda r: r.kind not in (ResourceKind.HTTP, ResourceKind.POSTGRES)
                ):
                    opened[r.name] = self.kinds.open(r)
            except Exception:
                for m in opened.values():  # no store, watch or connection outlives a failed opening
                    m.close()
                raise
            managers = {r.name: opened[r.name] for r in session.resources}
            self._settle_resolved(managers)
            live = LiveSession(session, managers, policy)
            self._live[session_id] = live
            return live

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

    def close_all(self) -> None:
        """At shutdown: every live session's managers closed, each under its lock (nothing runs on them now)."""
        with self._live_lock:
            lives = list(self._live.values())
            self._live.clear()
        for live in lives:
            with live.lock:
                for m in live.managers.values():
                    m.close()
