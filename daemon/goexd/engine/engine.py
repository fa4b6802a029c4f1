"""The engine: what goexd does, behind one object the server calls (server/servicers.py converts and calls).

It wires the parts (engine/core.py lists them) and answers for them; the rules live with each part:
sessions.py (a resource held by one session; managers opened on use, closed when let go), runner.py (every
transition journaled before the side effect it announces; one action at a time per session), resolve.py
(commit all or nothing; undo ordering and its three-way refusals), trials.py (pairs tried where nothing
stays), recovery.py (what a crash left, resolved before requests are served). It names no concrete resource
manager for opening one: resources/registry.py does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from goexd.config import Config
from goexd.diskspace import StateSpace
from goexd.domain.errors import FailedPrecondition, InvalidArgument
from goexd.domain.models import (
    Action,
    ActionKind,
    ActionSpec,
    ActionState,
    CloseMode,
    LimitsRequest,
    ResourceRequest,
    Reversibility,
    Session,
)
from goexd.domain.resource import RollbackReport
from goexd.domain.sandbox import Limits, Sandbox, Sandboxes
from goexd.domain.snapshots import SetAside, SnapshotError
from goexd.egress.addresses import AddressRule
from goexd.engine import action_refs, diffs, stopping
from goexd.engine.channels import Event
from goexd.engine.core import Core, Lifecycle
from goexd.engine.egress import EgressRoutes
from goexd.engine.facts import check_limits
from goexd.engine.http_calls import HttpCalls
from goexd.engine.journal import Journal
from goexd.engine.leases import IdleLeases
from goexd.engine.prompts import Prompts, Review
from goexd.engine.recovery import Recovery
from goexd.engine.resolve import Resolver
from goexd.engine.runner import Runner
from goexd.engine.sessions import Sessions
from goexd.engine.steps import Steps
from goexd.engine.trials import Trials
from goexd.engine.verdict_memory import Judgement, PairHistory, VerdictMemory
from goexd.engine.watchers import Watchers
from goexd.planner.endpoint import host_of
from goexd.planner.functions import FunctionSet, FunctionSets
from goexd.planner.planner import Planner
from goexd.policy.check import SessionPolicy
from goexd.policy.defaults import daemon_layers
from goexd.policy.parse import build
from goexd.resources.host_paths import OwnPaths, daemon_paths
from goexd.resources.kinds import registry as resource_kinds
from goexd.resources.registry import Host
from goexd.snapshots.textdiff import DiffOptions
from goexd.vault.vault import Vault

log = logging.getLogger("goexd.engine")

_NOT_OURS = "not a token this server issued"
_MAX_SEQ = 2**63 - 1  # SQLite's INTEGER


def action_token(token: str) -> int:
    """ListActions' page token: the last seq of the previous page."""
    if not token:
        return 0
    if len(token) > 20 or not token.isascii() or not token.isdigit() or int(token) > _MAX_SEQ:
        raise InvalidArgument("page_token", _NOT_OURS)
    return int(token)


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
        planner: Planner | None = None,
        sandboxes: Sandboxes | None = None,
    ) -> None:
        """`fs_overlays`: where fs actions get their overlay dirs; None runs them over the workspace itself.
        `planner`: what plans prompt actions; by default the one [planner] configures. `sandboxes`: the backends a
        session may name for its workspace (None: `sandbox` only)."""
        self.cfg = cfg
        self.fs_overlays = fs_overlays
        self.own_paths = own_paths or daemon_paths(cfg)  # what no resource may reach: goexd's own files
        self.journal = journal
        self.sandbox = sandbox
        self.vault = vault
        self.egress = egress  # the proxy; None = actions asking for egress are refused
        # The state dir's reserve (diskspace.py): a journal write finding the disk full gives up the held-back part.
        self.space = StateSpace(cfg.state_dir, cfg.state_reserve_bytes)
        self.space.refill()
        journal.on_full = self.space.release
        self.addresses = AddressRule.from_config(cfg.egress.allowed_addresses)  # what goexd's own HTTP may reach
        self.leases = IdleLeases(cfg.session_idle_lease_s)
        self.verdicts = VerdictMemory(journal)  # pairs' verdicts and a person's judgements of them
        # Which manager serves a resource (resources/registry.py); raises SetupError for a broken rule file.
        kinds = resource_kinds(
            Host(cfg, self.own_paths, vault, sandbox, self.addresses, self.space, fs_overlays, sandboxes)
        )
        self.life = Lifecycle(journal, kinds)
        self.watchers = Watchers(self.life.cancel_unwatched)
        self.core = Core(
            cfg=cfg,
            journal=journal,
            vault=vault,
            sandbox=sandbox,
            space=self.space,
            kinds=kinds,
            # Raises SetupError for a bad policy file: the daemon does not start with confinement it cannot read.
            daemon_policy=build(daemon_layers(cfg.policy.file, cfg.egress.allowed_hosts)),
            default_limits=Limits(
                timeout_s=cfg.sandbox.timeout_s,
                memory_bytes=cfg.sandbox.memory_bytes,
                max_processes=cfg.sandbox.max_processes,
                output_bytes=cfg.sandbox.output_bytes,
            ),
            egress=egress,
            verdicts=self.verdicts,
            life=self.life,
            leases=self.leases,
            watchers=self.watchers,
        )
        self.channels = self.core.channels
        self.kinds = self.core.kinds
        self.daemon_policy = self.core.daemon_policy
        self.default_limits = self.core.default_limits
        self.steps = Steps(self.core)
        self.sessions = Sessions(self.core)
        self.calls = HttpCalls(self.core, self.steps)
        self.resolver = Resolver(self.core, self.sessions, self.steps, self.calls)
        self.runner = Runner(self.core, self.sessions, self.steps, self.calls)
        self.trials = Trials(self.core, self.sessions, self.steps)
        self.planner = planner or _planner(cfg, vault)
        self.prompts = Prompts(self.core, self.sessions, self.steps, self.runner, self.trials, self.planner)
        self.recovery = Recovery(self.core, self.sessions, self.steps, self.calls, self.resolver)

    # ================================================================ sessions (sessions.py, resolve.py)

    def create_session(
        self,
        requests: Sequence[ResourceRequest],
        label: str = "",
        limits: LimitsRequest | None = None,
        policy_toml: str = "",
    ) -> Session:
        return self.sessions.get_or_create(requests, label, limits, policy_toml, reuse=False)[0]

    def get_or_create_session(
        self,
        requests: Sequence[ResourceRequest],
        label: str = "",
        limits: LimitsRequest | None = None,
        policy_toml: str = "",
        reuse: bool = False,
    ) -> tuple[Session, bool]:
        return self.sessions.get_or_create(requests, label, limits, policy_toml, reuse)

    def session_warnings(self, session: Session) -> list[str]:
        return self.sessions.warnings(session)

    def parse_policy(self, text: str, fld: str = "policy_toml") -> SessionPolicy:
        return self.sessions.parse_policy(text, fld)

    def get_session(self, session_id: str) -> Session:
        return self.sessions.get(session_id)

    def list_sessions(self, include_closed: bool, page_size: int, page_token: str) -> tuple[list[Session], str]:
        return self.sessions.listed(include_closed, page_size, page_token)

    def describe_session(self, session_id: str, samples: bool = False) -> list[tuple[str, str]]:
        return self.sessions.describe(session_id, samples)

    def close_session(self, session_id: str, mode: CloseMode) -> tuple[Session, list[Action]]:
        return self.resolver.close(session_id, mode)

    def expire_idle_sessions(self) -> list[str]:
        return self.sessions.expire_idle()

    # ================================================================ actions (runner.py)

    def check_limits(self, fld: str, req: LimitsRequest) -> LimitsRequest:
        return check_limits(self.cfg.sandbox, fld, req)

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
        if spec.kind is ActionKind.PROMPT:  # planned first, then submitted as what it became (engine/prompts.py)
            if inverse is not None:
                raise InvalidArgument("inverse", "a prompt's inverse is planned with it: give none")
            return self.prompts.submit(session_id, spec, detach, approval, caller_gone, cancel_when_unwatched)
        return self.runner.submit(session_id, spec, inverse, detach, approval, caller_gone, cancel_when_unwatched)

    def put_function_set(self, toml: str, overwrite: bool) -> FunctionSet:
        return self.planner.function_sets.put(toml, overwrite)

    def list_function_sets(self) -> list[FunctionSet]:
        return self.planner.function_sets.listed()

    def delete_function_set(self, name: str) -> None:
        self.planner.function_sets.delete(name)

    def plan(self, session_id: str, spec: ActionSpec) -> Review:
        """A prompt's plan for review: nothing runs on the resource (its pair is tried where nothing stays)."""
        if spec.kind is not ActionKind.PROMPT:
            raise InvalidArgument("spec", "set prompt: only a prompt is planned")
        self.life.refuse_if_stopping()
        return self.prompts.review(session_id, spec)

    def cancel(self, action_id: str) -> Action:
        return self.runner.cancel(action_id)

    def get_action(self, action_id: str) -> Action:
        return self.steps.get(action_id)

    def action_ref(self, ref: str, fld: str, session_id: str = "") -> str:
        """The id an action reference names: an id, a unique prefix, or a seq number or 'last' of `session_id`."""
        if session_id:
            self.sessions.get(session_id)  # NOT_FOUND for an unknown session, before anything else
        return action_refs.resolve(self.journal, ref, fld, session_id)

    def list_actions(
        self, session_id: str, states: Sequence[ActionState], page_size: int, page_token: str
    ) -> tuple[list[Action], str]:
        self.sessions.get(session_id)
        limit = page_size or 100
        if limit > 1000:
            raise InvalidArgument("page_size", "must be at most 1000")
        actions = self.journal.list_actions(session_id, states, action_token(page_token), limit + 1)
        if len(actions) > limit:
            return actions[:limit], str(actions[limit - 1].seq)
        return actions, ""

    def watch(self, action_id: str, alive: threading.Event | None = None) -> Iterator[Event]:
        action = self.steps.get(action_id)
        channel = self.channels.get(action_id)
        if channel is None:  # long finished: its current state is all there is to tell
            yield Event(at=time.time(), state=action.state)
            return
        with self.watchers.watching(action_id):
            yield from channel.follow(alive)

    # ================================================================ commit / undo (resolve.py)

    def commit(self, session_id: str, up_to: str = "") -> list[Action]:
        return self.resolver.commit(session_id, up_to)

    def undo(self, session_id: str, action_id: str = "", cascade: bool = False, force: bool = False) -> list[Action]:
        return self.resolver.undo(session_id, action_id, cascade, force)

    def undo_to(self, action_id: str, force: bool = False) -> list[Action]:
        return self.resolver.undo_to(action_id, force)

    def list_set_asides(self, session_id: str) -> list[tuple[str, SetAside]]:
        return self.resolver.list_set_asides(session_id)

    def restore_set_aside(self, session_id: str, set_aside_id: str, force: bool = False) -> RollbackReport:
        return self.resolver.restore_set_aside(session_id, set_aside_id, force)

    # ================================================================ reversibility tests (trials.py)

    def test_reversibility(self, session_id: str, spec: ActionSpec, inverse: ActionSpec | None) -> Reversibility:
        return self.trials.test(session_id, spec, inverse)

    def judge_pair(self, action_id: str, judgement: Judgement, who: str, note: str) -> PairHistory:
        return self.trials.judge_pair(action_id, judgement, who, note)

    def pair_history(self, action_id: str) -> PairHistory:
        return self.trials.pair_history(action_id)

    # ================================================================ diffs

    def diff_action(self, action_id: str, options: DiffOptions) -> diffs.ActionDiff:
        """What an action changed (engine/diffs.py); read from the record and the snapshot store, so its
        session may be closed."""
        action = self.steps.get(action_id)
        redact = diffs.Redactors(self.redact, self.redact_text)
        return diffs.action_diff(action, self.sessions.get(action.session_id), self.cfg.snapshots_dir, redact, options)

    def diff_since_last(self, session_id: str, resource: str, options: DiffOptions) -> diffs.ActionDiff:
        """What changed in a workspace since the session's latest action on it left it: a person's edits."""
        live = self.sessions.live(session_id)
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
        return self.recovery.recover()

    def running_count(self) -> int:
        return len(self.life.cancels)

    def shutdown(self, grace_s: float) -> None:
        """Let running actions finish for `grace_s`, then cancel (and roll back) the rest."""
        self.life.stopping.set()
        deadline = time.monotonic() + grace_s
        while self.life.cancels and time.monotonic() < deadline:
            time.sleep(0.05)
        for ev in list(self.life.cancels.values()):
            ev.set()
        self.runner.workers.shutdown(wait=True)
        self.sessions.close_all()
        self.planner.close()

    def drain(self) -> None:
        """Refuse new sessions and actions from now on (commit, undo and reads go on), until goexd stops."""
        self.life.draining.set()

    @property
    def draining(self) -> bool:
        return self.life.draining.is_set()

    def interrupted_by_stop(self) -> list[stopping.Interrupted]:
        return self.life.interrupted_by_stop()

    def redact(self, data: bytes, truncated: bool = False) -> bytes:
        return self.vault.redactor(data, truncated=truncated)

    def redact_text(self, text: str) -> str:
        return self.vault.redactor.text(text)


def _planner(cfg: Config, vault: Vault) -> Planner:
    """The planner [planner] configures: its API key from the vault, for the endpoint's own host."""
    name = cfg.planner.api_key_secret

    def api_key(base_url: str) -> str:
        if not name:
            return ""
        scheme, host, port = host_of(base_url)
        return vault.resolve(name, scheme, host, port).primary.decode()

    dirs = [Path(d).expanduser() for d in cfg.planner.functions_dirs]
    sets = FunctionSets(dirs, cfg.state_dir / "functions")  # SetupError: goexd does not start with a broken set
    return Planner(cfg.planner, api_key, vault.redact_text, sets)  # the current redactor: it is replaced on each put
