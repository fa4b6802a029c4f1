"""What every ResourceManager (domain/resource.py) must do, stated once and run against every backend.

A backend plugs in by subclassing `ResourceManagerContract` in a `test_resource_*.py` file with its
`caps` (how it legitimately differs: a declared capability, asserted, never a skip) and a `backend`
fixture returning a `ResourceBackend`: how to open a manager on one real resource, one numbered
change with its inverse, an action that fails part-way, a read, a spec its precheck refuses, and
how to read the real resource by other means than the manager (the independent check).

The suite plays the engine's part (checkpoint, execute, then commit or rollback, the checkpoint
given to rollback being the checkpoint plus the outcome's `checkpoint_extra`), and states:

- exactness: checkpoint -> execute -> rollback gives back the pre-action state, by the manager's
  own fingerprint and by the independent reading; newest first over several actions; a failed
  action's rollback too; and the change really took effect before (or, held in a transaction,
  was invisible to others until committed);
- commit: the change is visible to others, survives close() and a new manager; where the commit
  releases what the checkpoint held, a rollback after it is refused and changes nothing;
- take_lost(): empty when nothing was lost; a backend that can discard pending work on its own
  names exactly those actions, once, and the resource is back at the state before them;
- describe(): says the strategy, and never carries the credential the manager was given, in any
  of its encoded forms;
- fingerprint(): stable across calls with no change, different after one, equal again after a
  rollback (or, where there is none, a FailedPrecondition);
- precheck refuses a bad spec with InvalidArgument naming the spec's field, changing nothing;
- journaling(spec) is a Journaling value, the one declared for a write and for a read;
- close() with an action pending leaves the resource consistent and lets a new manager open it.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

import pytest

from goexd.domain.errors import FailedPrecondition, GoexError, InvalidArgument
from goexd.domain.models import ActionSpec
from goexd.domain.resource import (
    Checkpoint,
    Journaling,
    Outcome,
    Resolution,
    ResourceManager,
    UndoesThreeWay,
    settling,
)
from goexd.domain.sandbox import Limits

LIMITS = Limits(timeout_s=30)


class InverseUse(enum.Enum):
    REFUSED = "refused"  # it undoes by itself: check_inverse refuses a client inverse
    NEEDED = "needed"  # a write without a client inverse is refused (it is what undo runs)
    OPTIONAL = "optional"  # taken when given (and tried by test()), or derived


@dataclass(frozen=True)
class Capabilities:
    """Where a backend legitimately differs from another; each is asserted as declared."""

    strategy_words: str  # describe() says this (how undo works here, for a planner)
    pending_visible: bool = True  # False: an executed action is invisible to others until committed (transaction)
    inverse: InverseUse = InverseUse.REFUSED  # what it makes of a client's inverse
    has_fingerprint: bool = True  # False: fingerprint() raises FailedPrecondition (a remote service)
    commit_releases: bool = False  # True: rollback after commit is refused (its savepoint or copy is gone)
    loses_pending: bool = False  # can discard pending actions on its own (take_lost names them)
    # A run cut short by a crash is taken back by rollback() at the next start (recovers_by_rollback); False: its
    # effects go with goexd (an open transaction) or may have been carried out by a service (never resent).
    taken_back_after_a_crash: bool = True
    write_journaling: Journaling = Journaling.EACH_STEP
    read_journaling: Journaling = Journaling.AFTER_RUN


Lose = Callable[[ResourceManager, "Driver"], None]


@dataclass
class ResourceBackend:
    """One backend on one real resource, as its plug-in builds it."""

    open: Callable[[], ResourceManager]  # a new manager on the resource (the suite closes each)
    change: Callable[[int], tuple[ActionSpec, ActionSpec | None]]  # write number n, and its inverse
    # A write that fails part-way (raises, exits non-zero, or is refused by the service), and its inverse.
    failing: tuple[ActionSpec, ActionSpec | None]
    read_action: ActionSpec  # an action that only reads
    bad: ActionSpec  # a spec precheck() refuses
    bad_field: str  # the field its InvalidArgument names
    state: Callable[[], object]  # the real resource, read without the manager
    credential: str | None = None  # what the manager authenticates with (never in describe())
    lose: Lose | None = None  # makes it discard pending work on its own
    opened: list[ResourceManager] = field(default_factory=list)

    def manager(self) -> ResourceManager:
        m = self.open()
        self.opened.append(m)
        return m


class Driver:
    """The engine's part: ids, checkpoint, execute, the checkpoint rollback/commit are given."""

    _ids = itertools.count(1)

    def __init__(self, manager: ResourceManager, backend: ResourceBackend, caps: Capabilities) -> None:
        self.m = manager
        self.backend = backend
        self.caps = caps
        self.cps: dict[str, Checkpoint] = {}

    def run(self, spec: ActionSpec, inverse: ActionSpec | None = None) -> tuple[str, Outcome | None]:
        """checkpoint + execute; an execute that raises (the engine's FAILED path) gives None."""
        aid = f"act_{next(self._ids):06d}"
        if self.caps.inverse is InverseUse.REFUSED:
            inverse = None
        self.m.precheck(spec)
        self.m.check_inverse(spec, inverse)
        cp = self.m.checkpoint(aid, inverse)
        self.cps[aid] = cp
        try:
            out = self.m.execute(spec, LIMITS, cp, None, None)
        except GoexError:
            return aid, None
        self.cps[aid] = {**cp, **out.checkpoint_extra}
        return aid, out

    def change(self, n: int) -> str:
        spec, inverse = self.backend.change(n)
        aid, out = self.run(spec, inverse)
        assert out is not None and _succeeded(out), f"change {n} did not succeed: {out}"
        return aid

    def rollback(self, aid: str) -> None:
        report = self.m.rollback(aid, self.cps[aid])
        assert report.verified, report.detail

    def commit(self, *aids: str) -> None:
        self.m.commit_check(aids)
        for aid in aids:
            self.m.commit(aid, self.cps[aid])


def _succeeded(out: Outcome) -> bool:
    if out.failure is not None:
        return False
    return out.exec is None or out.exec.exit_code == 0


def encoded_forms(secret: str) -> set[str]:
    """The forms a credential could leak in: raw, URL-quoted, form-quoted, base64 (alone and in a Basic pair)."""
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote_plus(secret), base64.b64encode(raw).decode()}
    forms |= {base64.urlsafe_b64encode(raw).decode().rstrip("="), raw.hex()}
    return {f for f in forms if len(f) >= 6}


class ResourceManagerContract:
    """Subclass with `caps` and a `backend` fixture (see the module's docstring)."""

    caps: Capabilities

    @pytest.fixture
    def driver(self, backend: ResourceBackend) -> Iterator[Driver]:
        d = Driver(backend.manager(), backend, self.caps)
        yield d
        for m in backend.opened:
            with contextlib.suppress(Exception):  # closed by the test already (close() is not promised idempotent)
                m.close()

    def _fingerprint(self, m: ResourceManager) -> str | None:
        if not self.caps.has_fingerprint:
            with pytest.raises(FailedPrecondition):
                m.fingerprint()
            return None
        return m.fingerprint()

    # ------------------------------------------------------------ exactness

    def test_rollback_restores_exactly(self, driver: Driver, backend: ResourceBackend) -> None:
        before, fp_before = backend.state(), self._fingerprint(driver.m)
        aid = driver.change(1)
        seen = backend.state()
        if self.caps.pending_visible:
            assert seen != before, "the change did not reach the resource"
        else:
            assert seen == before, "a pending action is visible to others before its commit"
        if fp_before is not None:
            assert driver.m.fingerprint() != fp_before, "the fingerprint did not see the change"
        driver.rollback(aid)
        assert backend.state() == before
        if fp_before is not None:
            assert driver.m.fingerprint() == fp_before

    def test_rollbacks_newest_first_restore_each_state(self, driver: Driver, backend: ResourceBackend) -> None:
        s0, f0 = backend.state(), self._fingerprint(driver.m)
        a = driver.change(1)
        s1, f1 = backend.state(), self._fingerprint(driver.m)
        b = driver.change(2)
        if f0 is not None:
            assert len({f0, f1, driver.m.fingerprint()}) == 3
        driver.rollback(b)
        assert (backend.state(), self._fingerprint(driver.m)) == (s1, f1)
        driver.rollback(a)
        assert (backend.state(), self._fingerprint(driver.m)) == (s0, f0)

    def test_a_failed_action_is_rolled_back_exactly(self, driver: Driver, backend: ResourceBackend) -> None:
        keep = driver.change(1)  # an earlier pending action survives the failure and its rollback
        s1, f1 = backend.state(), self._fingerprint(driver.m)
        aid, out = driver.run(*backend.failing)
        assert out is None or not _succeeded(out), f"the failing action succeeded: {out}"
        report = driver.m.rollback(aid, driver.cps[aid])
        assert report.verified, report.detail
        assert (backend.state(), self._fingerprint(driver.m)) == (s1, f1)
        assert driver.m.take_lost() == []
        driver.commit(keep)

    # ------------------------------------------------------------ commit

    def test_commit_is_permanent(self, driver: Driver, backend: ResourceBackend) -> None:
        before = backend.state()
        aid = driver.change(1)
        driver.commit(aid)
        after, fp = backend.state(), self._fingerprint(driver.m)
        assert after != before, "a committed change is not visible to others"
        if self.caps.commit_releases:
            with pytest.raises(GoexError):
                driver.m.rollback(aid, driver.cps[aid])
            assert (backend.state(), self._fingerprint(driver.m)) == (after, fp)
        driver.m.close()
        assert backend.state() == after, "close() took back a committed change"
        again = backend.manager()
        assert self._fingerprint(again) == fp
        assert again.take_lost() == []

    def test_commit_done_again_changes_nothing(self, driver: Driver, backend: ResourceBackend) -> None:
        """Recovery finishes a commit goexd stopped in by calling commit() again, on a new manager
        (recovery.py Recovery._finish_commit: "each manager's is idempotent")."""
        aid = driver.change(1)
        driver.commit(aid)
        after, fp = backend.state(), self._fingerprint(driver.m)
        driver.m.commit(aid, driver.cps[aid])
        driver.m.close()
        again = backend.manager()
        again.commit(aid, driver.cps[aid])
        assert (backend.state(), self._fingerprint(again)) == (after, fp)

    def test_a_rollback_done_again_by_a_new_manager_undoes_nothing_twice(
        self, driver: Driver, backend: ResourceBackend
    ) -> None:
        """Recovery finishes an undo goexd stopped in (journaled as started, maybe carried out) by calling
        rollback() again on a new manager (engine/recovery.py; forced where the undo is three-way). A transaction's
        pending work is gone with goexd instead (the action ends interrupted): declared by pending_visible."""
        before, fp = backend.state(), self._fingerprint(driver.m)
        aid = driver.change(1)
        driver.rollback(aid)
        driver.m.close()
        again = backend.manager()
        if not self.caps.pending_visible:
            assert backend.state() == before
            return
        retry = again.rollback_overwriting if isinstance(again, UndoesThreeWay) else again.rollback
        report = retry(aid, self.journaled(driver.cps[aid], fp))
        assert report.verified, report.detail
        assert (backend.state(), self._fingerprint(again)) == (before, fp)

    def test_a_run_cut_short_by_a_crash_is_taken_back_by_a_new_manager(
        self, driver: Driver, backend: ResourceBackend
    ) -> None:
        """goexd killed after an action ran and before EXECUTED was journaled: the journal holds it RUNNING with
        the checkpoint taken before it ran. Recovery (engine/recovery.py) asks a new manager whether that
        checkpoint takes it back, asks it to settle what may have committed (SettlesInDoubt), and rolls back to it
        or, kept whole, leaves it pending for its undo. Either way the state before must be reachable exactly. The
        manager reads its own checkpoint's keys; a strategy that names them differently fails here, not in a
        crash."""
        before, fp = backend.state(), self._fingerprint(driver.m)
        spec, inverse = backend.change(1)
        if self.caps.inverse is InverseUse.REFUSED:
            inverse = None
        aid = "act_cut_short"
        driver.m.precheck(spec)
        cp = driver.m.checkpoint(aid, inverse)  # journaled with the step to RUNNING
        out = driver.m.execute(spec, LIMITS, cp, None, None)
        assert _succeeded(out), out
        driver.m.close()  # goexd dies: nothing else of the run reaches the journal
        again = backend.manager()
        assert again.recovers_by_rollback(cp) is self.caps.taken_back_after_a_crash
        if not self.caps.taken_back_after_a_crash:
            return
        found = settling(again).resolve_in_doubt(aid, cp)
        assert found.resolution is not Resolution.UNKNOWN, found.detail
        kept = {**cp, **found.checkpoint_extra} if found.resolution is Resolution.EXECUTED else cp
        report = again.rollback(aid, self.journaled(kept, fp))
        assert report.verified, report.detail
        assert (backend.state(), self._fingerprint(again)) == (before, fp)

    def journaled(self, checkpoint: Checkpoint, fingerprint_before: str | None) -> Checkpoint:
        """The checkpoint as the journal holds it after the action, where that depends on timing (a backend
        overrides this to fix the timing its test needs)."""
        return checkpoint

    def test_close_with_an_action_pending_leaves_the_resource_usable(
        self, driver: Driver, backend: ResourceBackend
    ) -> None:
        before = backend.state()
        driver.change(1)
        pending = backend.state()
        driver.m.close()
        # A transaction's pending work goes with its connection; what others already saw stays.
        assert backend.state() == (pending if self.caps.pending_visible else before)
        again = Driver(backend.manager(), backend, self.caps)
        aid = again.change(2)  # nothing of the closed manager's is held (no lock, no open transaction)
        again.commit(aid)
        assert backend.state() not in (before, pending)

    # ------------------------------------------------------------ lost actions

    def test_take_lost(self, driver: Driver, backend: ResourceBackend) -> None:
        assert driver.m.take_lost() == []
        before, fp = backend.state(), self._fingerprint(driver.m)
        aid = driver.change(1)
        assert driver.m.take_lost() == []  # a normal action loses nothing
        if not self.caps.loses_pending:
            assert backend.lose is None, "a backend that can lose pending work declares loses_pending"
            driver.rollback(aid)
            assert driver.m.take_lost() == []
            return
        assert backend.lose is not None
        backend.lose(driver.m, driver)
        assert driver.m.take_lost() == [aid]
        assert driver.m.take_lost() == []  # told once
        assert backend.state() == before
        assert self._fingerprint(driver.m) == fp
        later = driver.change(2)  # the manager goes on after a loss
        driver.commit(later)
        assert backend.state() != before

    # ------------------------------------------------------------ describe, fingerprint, precheck, journaling

    def test_describe_names_the_strategy_and_carries_no_credential(
        self, driver: Driver, backend: ResourceBackend
    ) -> None:
        driver.change(1)
        texts = [driver.m.describe(), driver.m.describe(samples=True)]
        for text in texts:
            assert isinstance(text, str) and self.caps.strategy_words in text, text
        if backend.credential is not None:
            manager_texts = [*texts, driver.m.undo_note]
            for form in encoded_forms(backend.credential):
                for text in manager_texts:
                    assert form not in text, f"describe() carries the credential (as {form!r})"

    def test_fingerprint_is_stable_and_sees_a_change(self, driver: Driver, backend: ResourceBackend) -> None:
        first = self._fingerprint(driver.m)
        if first is None:
            return  # declared: no fingerprint (checked to raise FailedPrecondition)
        assert driver.m.fingerprint() == first
        assert driver.m.fingerprint() == first
        aid = driver.change(1)
        changed = driver.m.fingerprint()
        assert changed != first
        assert driver.m.fingerprint() == changed
        driver.rollback(aid)
        assert driver.m.fingerprint() == first

    def test_precheck_refuses_a_bad_spec_changing_nothing(self, driver: Driver, backend: ResourceBackend) -> None:
        before, fp = backend.state(), self._fingerprint(driver.m)
        with pytest.raises(InvalidArgument) as refused:
            driver.m.precheck(backend.bad)
        assert refused.value.field.startswith(backend.bad_field), refused.value
        good, _ = backend.change(1)
        driver.m.precheck(good)  # the good one passes
        assert (backend.state(), self._fingerprint(driver.m)) == (before, fp)

    def test_check_inverse_as_declared(self, driver: Driver, backend: ResourceBackend) -> None:
        write, inverse = backend.change(1)
        if self.caps.inverse is InverseUse.NEEDED:
            with pytest.raises(InvalidArgument) as refused:
                driver.m.check_inverse(write, None)
            assert refused.value.field == "inverse"
        else:
            driver.m.check_inverse(write, None)
        if inverse is None:  # the backend derives its inverses itself (http): none to give
            assert self.caps.inverse is not InverseUse.NEEDED
        elif self.caps.inverse is InverseUse.REFUSED:
            with pytest.raises(InvalidArgument) as refused:
                driver.m.check_inverse(write, inverse)
            assert refused.value.field == "inverse"
        else:
            driver.m.check_inverse(write, inverse)

    def test_journaling_is_declared(self, driver: Driver, backend: ResourceBackend) -> None:
        write, _ = backend.change(1)
        assert driver.m.journaling(write) is self.caps.write_journaling
        assert driver.m.journaling(backend.read_action) is self.caps.read_journaling
