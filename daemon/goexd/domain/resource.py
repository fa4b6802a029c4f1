"""The ResourceManager seam: one per resource of an open session.

Lifecycle of one action on a resource:
    cp = checkpoint(action_id)          make the pre-action state recoverable
    out = execute(spec, limits, ...)    run it; never raises for the action's own failure
    commit(action_id, cp)               the user accepted it (may release what the checkpoint holds)
    rollback(action_id, cp)             restore the pre-action state exactly, and verify it
Resource managers know nothing of gRPC or of the journal; the engine orders the calls and
records each transition before the call that performs it.

A resource where an action commits at once (the inverse strategy) can be left with its outcome
in doubt by a crash between its COMMIT and the journal's record: such managers also implement
SettlesInDoubt, and recovery asks them (`settling(manager)` gives the default for the others).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from goexd.domain.errors import InvalidArgument
from goexd.domain.models import ActionSpec, HttpResult, Resource, Reversibility, SqlResult, Verdict
from goexd.domain.sandbox import ExecResult, Limits, ProxyEndpoint, Stream
from goexd.domain.snapshots import ChangeSet, SetAside

Checkpoint = dict[str, str]
# A checkpoint entry a database strategy may add: what the action changed, per table, in words (its diff).
CHANGED_KEY = "changed"
OutputCallback = Callable[[Stream, bytes], None]


class Journaling(enum.Enum):
    """What the journal must hold before an action runs, given what preparing and running it can leave behind."""

    # Preparing leaves traces (a snapshot, a copy, a savepoint): PREPARING, then RUNNING, each committed first.
    EACH_STEP = "each step"
    # Preparing happens in goexd's memory only: the way to RUNNING is one commit, made before the action runs.
    BEFORE_RUN = "before run"
    # The action changes nothing (a read-only call): its whole record is one commit once it has run, and it is
    # resolved at once (nothing to undo, nothing to accept). A crash while it runs leaves nothing to recover.
    AFTER_RUN = "after run"


class StepByStep:
    """For managers whose preparation leaves traces a crash recovery must find: every step is journaled."""

    def journaling(self, spec: ActionSpec) -> Journaling:
        return Journaling.EACH_STEP


@dataclass(frozen=True)
class Outcome:
    exec: ExecResult | None
    changes: ChangeSet | None
    checkpoint_extra: Checkpoint = field(default_factory=dict)
    capture_s: float = 0.0  # time spent recording the post-action state and the change set
    sql: SqlResult | None = None
    http: HttpResult | None = None
    failure: str | None = None  # the action failed (an http call refused or unanswered): why; rolled back
    reversibility: Reversibility | None = None  # known only after it ran (an http call's class)
    inverse: ActionSpec | None = None  # derived from the outcome (an http call's recorded response)


@dataclass(frozen=True)
class SandboxNetwork:
    """A sandboxed action's only way out: the egress proxy, plus env-injected secrets it opted into."""

    proxy: ProxyEndpoint
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RollbackReport:
    """How an undo was checked: verified (the result compared equal to what was expected), not verified (it was
    compared and differs), or unverified (`compared` False: there was nothing to compare it against)."""

    verified: bool
    detail: str
    compared: bool = True  # False: nothing to compare the result against; `verified` is then False too

    @property
    def verdict(self) -> Verdict:
        """passed (verified) / failed (not verified) / unknown (unverified)."""
        if self.verified:
            return Verdict.PASSED
        return Verdict.FAILED if self.compared else Verdict.UNKNOWN

    def with_calls(self, calls: RollbackReport) -> RollbackReport:
        """This undo and its http calls' together: not verified if either was, else unverified if either was."""
        failed = (self.compared and not self.verified) or (calls.compared and not calls.verified)
        return RollbackReport(
            self.verified and calls.verified,
            f"{self.detail}; its calls: {calls.detail}",
            compared=failed or (self.compared and calls.compared),
        )


class UndoesByItself(StepByStep):
    """For strategies whose undo needs no client inverse and no reversibility test before the action."""

    resource: Resource
    undoes_by: str  # e.g. "by restoring snapshots", for the refusal of a client inverse

    def check_inverse(self, spec: ActionSpec, inverse: ActionSpec | None) -> None:
        if inverse is not None:
            raise InvalidArgument(
                "inverse",
                f"{self.resource.name!r} undoes {self.undoes_by}; client inverses are for the inverse strategy",
            )

    def test(
        self, spec: ActionSpec, inverse: ActionSpec | None, limits: Limits, cancel: threading.Event | None
    ) -> Reversibility | None:
        return None


class Resolution(enum.Enum):
    """What became of an action found RUNNING at a restart, as the resource itself tells."""

    ROLL_BACK = "roll back"  # none of it stayed, or the checkpoint takes it back: roll back as usual
    EXECUTED = "executed"  # the resource committed all of it: it is pending again, undoable by its inverse
    UNKNOWN = "unknown"  # part of it may have taken effect, and nothing tells which: left as it is, and said


@dataclass(frozen=True)
class InDoubt:
    resolution: Resolution
    detail: str = ""  # why, for the journal
    checkpoint_extra: Checkpoint = field(default_factory=dict)  # EXECUTED: what its undo needs besides


class SettlesInDoubt:
    """Outcomes in doubt, settled from the resource itself (the default: the checkpoint decides).

    Overridden by managers whose actions commit at once; they keep evidence (marker rows) in
    the resource, written in the same transaction as what it proves, until the journal has
    recorded the end of the action (settle), and make their rollback() run an inverse at most once."""

    def resolve_in_doubt(self, action_id: str, checkpoint: Checkpoint) -> InDoubt:
        """An action the journal has as RUNNING (goexd stopped while it ran): did the resource keep it?"""
        return InDoubt(Resolution.ROLL_BACK)

    def marked(self) -> list[str]:
        """The actions the resource holds evidence for (to drop that of actions the journal has settled)."""
        return []

    def settle(self, action_ids: Sequence[str]) -> None:
        """The journal has recorded these actions' ends: drop their evidence (best effort: never raises)."""
        return None


_CHECKPOINT_DECIDES = SettlesInDoubt()


def settling(manager: object) -> SettlesInDoubt:
    """The manager's way of settling outcomes in doubt, or the default one."""
    return manager if isinstance(manager, SettlesInDoubt) else _CHECKPOINT_DECIDES


@runtime_checkable
class UndoesThreeWay(Protocol):
    """A manager whose undo takes back only the action's own changes, where they are still as it left
    them (a workspace: snapshots/threeway.py); what it overwrites when forced is set aside."""

    def undo_conflicts(self, action_id: str, checkpoint: Checkpoint) -> tuple[str, ...]:
        """The paths an undo would refuse for: changed since the action (nothing is written)."""

    def rollback_overwriting(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport:
        """rollback() that overwrites what changed since, setting it aside first."""

    def set_asides(self) -> list[SetAside]: ...

    def restore_set_aside(self, set_aside_id: str, *, force: bool = False) -> RollbackReport: ...


@runtime_checkable
class KeepsCopies(Protocol):
    """A manager whose checkpoint() makes a copy outside the journal (a database copy): a crash before the engine
    journaled that checkpoint leaves the copy, which only the action's id names. Recovery asks for it to go."""

    def drop_unjournaled_copy(self, action_id: str) -> str:
        """Drop the copy checkpoint() may have made for `action_id` (idempotent; nothing there is fine); returns
        what was dropped, for the action's record, or ""."""


# The checkpoint the engine hands execute() and rollback() for a read resolved at once (ResolvesReadsAtOnce).
READ_ONLY_KEY = "read_only"
READ_CHECKPOINT: Checkpoint = {READ_ONLY_KEY: "no checkpoint: it only reads"}


@runtime_checkable
class ResolvesReadsAtOnce(Protocol):
    """A manager that tells an action which only reads (journaling() answers AFTER_RUN for it): the engine then
    takes no test and no checkpoint, hands execute() READ_CHECKPOINT, and resolves the action COMMITTED at once,
    so an undo takes back the last change and never a read (resources/sql_reads.py)."""

    def reads_only(self, spec: ActionSpec) -> bool: ...


@runtime_checkable
class FallsBackToSnapshots(Protocol):
    """An inverse-strategy manager that snapshots too (a workspace's): an action whose inverse failed its test
    may still run, flagged, where the policy allows ([fs] failed_inverse; the engine asks it and carries the
    approval); its checkpoint is then taken without the inverse, and its undo restores snapshots."""

    def falls_back_to_snapshots(self) -> bool: ...


@runtime_checkable
class ReplaysUndone(Protocol):
    """A manager whose undo replays, first, older actions' undos done since the action ran (a workspace's
    versioned strategy, issue 14 F9): the engine knows which from the journal and hands their checkpoints,
    oldest first; the manager returns the checkpoint its rollback() takes."""

    def checkpoint_for_undo(self, checkpoint: Checkpoint, undone_since: Sequence[Checkpoint]) -> Checkpoint: ...


@runtime_checkable
class TriesPairsAside(Protocol):
    """A manager that tries an (action, inverse) pair on a copy of itself whatever its strategy (a workspace: an
    overlay of it), for TestReversibility; nothing stays."""

    def try_pair_aside(self, spec: ActionSpec, inverse: ActionSpec | None, limits: Limits) -> Reversibility: ...


@runtime_checkable
class FingerprintsForVerdicts(Protocol):
    """A manager with a cheap, exact fingerprint of what a pair on it touches, so a verdict can be remembered for
    the pair on that state (engine/verdict_memory.py)."""

    def verdict_fingerprint(self) -> tuple[str, str]:
        """(value, what it is in words); cheap: taken before every test."""

    def refined_verdict_fingerprint(self, cheap: str) -> str:
        """`cheap` with what costs more to read (a workspace's extended attributes), taken only when a verdict is
        kept or a kept one may be reused: `cheap` itself where nothing does, else `cheap` + "+" + the rest (a
        kept refined one is known by that prefix). Raises OSError when unreadable."""


class ResourceManager(Protocol):
    """One open resource (a workspace, a database, an HTTP service) driven through the action lifecycle by the engine.

    Words: an *action* is one unit of work the engine journals; its *checkpoint* is what this manager needs to take
    it back (a snapshot id, a fingerprint, a copy's name, a recorded pre-image), a JSON-able dict the engine
    journals with the transition that announces the run; *rollback* takes one action back, *commit* makes it
    permanent and lets go of what only its undo needed.

    Rules every backend keeps (tests/conformance/resource_suite.py states them, run against every backend):
    - checkpoint -> execute -> rollback restores the resource exactly, by the manager's own fingerprint and by an
      independent reading of the real resource; newest first over several actions; also after a failed execute;
    - commit is permanent and idempotent: done again (by this manager or a new one, as recovery does after a
      crash) it changes nothing; a rollback after commit is refused where commit let go of the checkpoint;
    - rollback done again (recovery finishing an undo goexd was killed in) takes nothing back twice and reports
      verified where the first did: it looks before it acts;
    - fingerprint() is stable while nothing changes and differs after any change;
    - describe() never carries a credential, in any encoding;
    - precheck() refuses a bad spec with InvalidArgument naming the field, before anything is recorded or run;
    - take_lost() names each action the backend discarded on its own exactly once;
    - nothing here knows of gRPC or the journal: the engine orders the calls and journals each transition first.
    """

    resource: Resource
    undo_note: str  # how undo works here, for the action's reversibility record

    def describe(self, samples: bool = False) -> str:
        """What a planner is told about the resource (no credentials); `samples`: a few rows/entries too."""

    def precheck(self, spec: ActionSpec) -> None:
        """Refuse, before anything is recorded, an action this resource cannot run (bad syntax, privileged)."""

    def commit_check(self, action_ids: Sequence[str]) -> None:
        """Refuse a commit of these pending actions that this resource cannot honour as asked."""

    def take_lost(self) -> list[str]:
        """Pending actions whose effects the backend discarded on its own since the last call."""

    def check_inverse(self, spec: ActionSpec, inverse: ActionSpec | None) -> None:
        """Refuse a client inverse where the strategy has no use for one, or a missing one where it needs it."""

    def test(
        self, spec: ActionSpec, inverse: ActionSpec | None, limits: Limits, cancel: threading.Event | None
    ) -> Reversibility | None:
        """Try action then inverse without leaving a trace; None when the strategy needs no test."""

    def journaling(self, spec: ActionSpec) -> Journaling:
        """How the engine journals this action's way to RUNNING (see Journaling)."""

    def checkpoint(self, action_id: str, inverse: ActionSpec | None = None) -> Checkpoint: ...

    def execute(
        self,
        spec: ActionSpec,
        limits: Limits,
        checkpoint: Checkpoint,
        on_output: OutputCallback | None,
        cancel: threading.Event | None,
        network: SandboxNetwork | None = None,
    ) -> Outcome: ...

    def commit(self, action_id: str, checkpoint: Checkpoint) -> None: ...

    def rollback(self, action_id: str, checkpoint: Checkpoint) -> RollbackReport: ...

    def recovers_by_rollback(self, checkpoint: Checkpoint) -> bool:
        """Whether an action goexd stopped while it ran (RUNNING in the journal, with the checkpoint journaled
        before it ran) is taken back by rollback(checkpoint) at the next start: True where its effects outlive
        goexd and the checkpoint can undo them (a snapshot, an overlay run, a copy, a fingerprint with outcome
        markers); False where they went with goexd (an open transaction) or cannot be taken back (a call a
        service may have carried out: never sent again). Each manager reads its own checkpoint's keys here: the
        engine never does."""

    def fingerprint(self) -> str: ...

    def close(self) -> None: ...
