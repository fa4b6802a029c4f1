"""One seeded run of the kill suite: goexd over a session of a workspace, three SQLite and three
PostgreSQL databases (model.RESOURCES), driven by plan.Planner, killed `kills` times, restarted and
checked after each kill (reconcile.py); every answer it gives while it lives is checked too.

While goexd lives, after each operation: its answer (states, the undone and committed actions
in order, a workspace action's change set, the refusals the engine's rules give) is the model's,
the journal's states are the model's, and the workspace is the model's. After each restart:
reconcile() (every resource against the journal, nothing the person wrote lost), no sandbox
process of the killed goexd left (by the mark goexd gives them, tests/faults/leftovers.py), one
egress run dir at most, no overlay dir or overlay mount left (in any mount namespace), nothing
mounted on the workspace, the clone strategy's copies only for pending actions
(one a kill left while it was being made is counted: postgres_clone.py documents it).
"""

from __future__ import annotations

import collections
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.faults import leftovers
from tests.faults.daemon_life import Death, Killer, Life, Violation
from tests.faults.model import BY_NAME, DBS, EXECUTED, FS, RESOURCES, Act, Timeline, inverse_script, script
from tests.faults.plan import (
    INITIAL_FILES,
    MAX_OPS,
    Armed,
    Commit,
    Edit,
    External,
    KillPlan,
    Op,
    Planner,
    RecoveryArmed,
    Submit,
    Undo,
    UndoTo,
)
from tests.faults.reconcile import Entry, Flight, Found, reconcile
from tests.faults.world import World
from tests.services.postgres import PgCluster

STATE_NAMES = {v: k.removeprefix("ACTION_STATE_") for k, v in pb.ActionState.items()}
TRACE_LINES = 60  # of the run's trace in a failure's message
ECHO = os.environ.get("GOEX_FAULT_TRACE") == "1"  # print the trace as it goes (with pytest -s)
RESULTS: list[tuple[int, Stats, bool]] = []  # (seed, its stats, passed) for the summary (conftest.py)


@dataclass
class Stats:
    kills: int = 0  # every SIGKILL: at a fault point or from outside, during operations or a start
    at_points: int = 0
    from_outside: int = 0  # at a random delay during a burst of operations
    fallback: int = 0  # from outside at the end of a burst the planned kill did not stop
    start_outside: int = 0  # from outside at a random moment of a start
    restarts: int = 0
    in_start: int = 0  # kills before goexd served again (recovery-action, a point recovery reached, outside)
    in_recovery: int = 0  # of those, the ones that came after recovery had begun resolving an action
    ops: int = 0
    in_doubt: int = 0  # kills that interrupted an operation
    points: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: float = 0.0

    def add(self, other: Stats) -> None:
        for name in (
            *("kills", "at_points", "from_outside", "fallback", "start_outside"),
            *("restarts", "in_start", "in_recovery", "ops", "in_doubt"),
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.points.update(other.points)
        self.seconds += other.seconds

    def line(self) -> str:
        return (
            f"{self.kills} kills ({self.at_points} at fault points, {self.from_outside} from outside during "
            f"operations, {self.fallback} from outside at the end of a burst, {self.start_outside} from outside "
            f"during a start; {self.in_start} during a start, {self.in_recovery} of them inside recovery), "
            f"{self.restarts} restarts, {self.ops} operations ({self.in_doubt} interrupted), {self.seconds:.0f} s"
        )


class Run:
    def __init__(self, seed: int, kills: int, root: Path, cluster: PgCluster) -> None:
        self.seed = seed
        self.kills = kills
        self.planner = Planner(seed)
        self.world = World(root / "world", cluster, {})
        self.life = Life(root / "daemon")
        self.model = Timeline(files=dict(INITIAL_FILES))
        self.session = ""
        self.stats = Stats()
        self.trace: list[str] = []
        self.passed = False

    # ---------------------------------------------------------------- the run

    def run(self) -> Stats:
        t0 = time.monotonic()
        self.world.create(INITIAL_FILES)
        try:
            plan = self.planner.kill_plan()
            self._note(f"start armed {_spec(plan)}")
            if self.life.start(_spec(plan), None) is not None:
                raise Violation("goexd died in its first start")
            self.world.put_secret(self.life.d)
            specs = [self.world.resource_spec(r) for r in RESOURCES]
            req = sepb.CreateSessionRequest(resources=specs, label=f"kill suite seed {self.seed}")
            self.session = self.life.d.sessions.CreateSession(req, timeout=120).session.id
            while self.stats.kills < self.kills:
                flight = self._burst(plan)
                edits = self._edits_while_down()
                plan = self._restart(in_doubt=flight is not None)
                self._check(flight, edits)
            self._note("stop")
            self.life.stop()
            self.passed = True
        except Violation as exc:
            raise Violation(f"seed {self.seed}: {exc}\n--- trace (last {TRACE_LINES}):\n{self._trace()}") from None
        finally:
            self.life.d.kill()
            self.stats.seconds = time.monotonic() - t0
        self.world.drop()
        return self.stats

    def _burst(self, plan: KillPlan) -> Flight | None:
        """Operations until goexd dies; the one it died in (None: between two)."""
        aim = plan if isinstance(plan, Armed) else None
        delay = plan.delay_s if isinstance(plan, External) else None
        if isinstance(plan, RecoveryArmed):  # it did not fire (or recovery had nothing to do): from outside
            delay = round(self.planner.rng.uniform(0.05, 2.5), 3)
        killer = Killer(self.life, delay) if delay is not None else None
        flight: Flight | None = None
        fallback = False
        try:
            for _ in range(MAX_OPS):
                op = self.planner.next_op(self.model, aim)
                self.stats.ops += 1
                flight = self._perform(op)
                if flight is not None or not self.life.alive():
                    break
                self._compare_states()
            else:
                self._note("fallback kill: the burst ended")
                fallback = True
                self.life.kill_now()
        except grpc.RpcError as exc:  # the check after an operation met goexd dying
            if not self.life.dead_after_error():
                raise Violation(f"a call failed while goexd lived: {exc.code()} {exc.details()}") from None
        finally:
            if killer is not None:
                killer.cancel()
        death = self.life.death()
        self._count(death, in_start=False, fallback=fallback)
        if flight is not None:
            self.stats.in_doubt += 1
        return flight

    def _edits_while_down(self) -> list[Edit]:
        edit = self.planner.edits_after_crash(self.model)
        if edit is None:
            return []
        self._note(f"person while goexd is down: {_ops(edit)}")
        self.world.edit(edit)
        return [edit]

    def _restart(self, in_doubt: bool) -> KillPlan:
        """Start goexd again until it serves (each start may be killed in recovery); the plan it is armed with."""
        while True:
            plan = self.planner.kill_plan(in_doubt)
            startup_kill = self.planner.startup_kill(self.life.last_start_s)
            self._note(f"restart armed {_spec(plan)}" + (f", killed at {startup_kill:.2f} s" if startup_kill else ""))
            self.stats.restarts += 1
            death = self.life.start(_spec(plan), startup_kill)
            if death is None:
                return plan
            self._count(death, in_start=True)
            in_doubt = in_doubt or death.in_recovery or death.point is not None

    def _count(self, death: Death, in_start: bool, fallback: bool = False) -> None:
        self.stats.kills += 1
        if death.point is not None:
            self.stats.at_points += 1
            self.stats.points[death.point] += 1
        elif fallback:
            self.stats.fallback += 1
        elif in_start:
            self.stats.start_outside += 1
        else:
            self.stats.from_outside += 1
        if in_start:  # a fault point fires at a start only inside recovery (nothing else runs actions then)
            self.stats.in_start += 1
            self.stats.in_recovery += int(death.in_recovery or death.point is not None)
        self._note(f"KILLED {'in start' if in_start else ''} at {death.point or 'a random moment (outside)'}")

    # ---------------------------------------------------------------- operations

    def _perform(self, op: Op) -> Flight | None:
        """Run one operation and check its answer; the Flight when goexd died during it."""
        self._note(f"op {_describe(op)}")
        if isinstance(op, Edit):
            self.world.edit(op)
            self.model.files = _edited(self.model.files, op)
            return None
        if isinstance(op, Submit):
            return self._submit(op)
        if isinstance(op, (Undo, UndoTo)):
            return self._undo(op)
        return self._commit(op)

    def _died(self, exc: grpc.RpcError, flight: Flight) -> Flight:
        if not self.life.dead_after_error():
            raise Violation(f"{_describe(flight.op)} failed while goexd lived: {exc.code()} {exc.details()}")
        self._note("  (goexd died during it)")
        return flight

    def _submit(self, op: Submit) -> Flight | None:
        info = BY_NAME[op.resource]
        if info is FS:
            argv = ["sh", "-c", "set -e; " + "; ".join(f.shell() for f in op.file_ops)]
            spec = pb.ActionSpec(resource=op.resource, shell=pb.ShellAction(argv=argv))
        else:
            spec = pb.ActionSpec(resource=op.resource, sql=pb.SqlAction(sql=script(op.sql_ops)))
        req = apb.SubmitActionRequest(session_id=self.session, spec=spec)
        if info.strategy == "inverse":
            req.inverse.CopyFrom(pb.ActionSpec(resource=op.resource, sql=pb.SqlAction(sql=inverse_script(op.sql_ops))))
        expected = self.model.fs_changes_of(op.file_ops) if info is FS else {}
        try:
            a = self.life.d.actions.SubmitAction(req, timeout=300).action
        except grpc.RpcError as exc:
            return self._died(exc, Flight(op))
        state = STATE_NAMES[a.state]
        self._note(f"  -> {a.id} {state} {a.error[:200]}")
        if state != EXECUTED:
            raise Violation(f"{a.id} on {info.tag} ended {state}, not EXECUTED: {a.error}")
        if info is FS:
            if a.exec.exit_code != 0:
                raise Violation(f"{a.id} exited {a.exec.exit_code}: {a.exec.stderr!r}")
            changed = {c.path for c in a.changes.changes if not c.path.endswith("/")}
            if changed != set(expected):
                raise Violation(f"{a.id}'s change set {sorted(changed)} is not what it changed: {sorted(expected)}")
        self.model.run(Act(a.id, a.seq, op.resource, EXECUTED), op.file_ops, op.sql_ops)
        self._compare_files()
        return None

    def _undo(self, op: Undo | UndoTo) -> Flight | None:
        actions = self.life.d.actions
        if isinstance(op, Undo):
            plan = self.model.undo_plan(op.target, op.cascade, op.force)
            req = apb.UndoActionRequest(
                session_id=self.session, action_id=op.target, cascade=op.cascade, force=op.force
            )
        else:
            plan = self.model.undo_to_plan(op.anchor, op.force)
            to = apb.UndoToRequest(action_id=op.anchor, force=op.force)
        try:
            if isinstance(op, Undo):
                undone = list(actions.UndoAction(req, timeout=300).undone)
            else:
                undone = list(actions.UndoTo(to, timeout=300).undone)
        except grpc.RpcError as exc:
            if not self.life.alive() or exc.code() == grpc.StatusCode.UNAVAILABLE:
                return self._died(exc, Flight(op, undo=plan))
            if plan.refusal is None or exc.code().name != plan.refusal.code:
                raise Violation(
                    f"{_describe(op)} answered {exc.code().name} {exc.details()}; expected {plan}"
                ) from None
            self._note(f"  -> refused as expected ({plan.refusal.why}): {(exc.details() or '')[:200]}")
            for t in plan.targets[: plan.at]:
                self.model.undo(t, op.force)
            self._compare_files()
            return None
        got = [u.id for u in undone]
        self._note(f"  -> undone {got}")
        if plan.refusal is not None or got != list(plan.targets):
            raise Violation(f"{_describe(op)} undid {got}; expected {plan}")
        bad = [(u.id, STATE_NAMES[u.state]) for u in undone if u.state != pb.ACTION_STATE_UNDONE]
        if bad:
            raise Violation(f"undo answered {bad}")
        for t in plan.targets:
            self.model.undo(t, op.force)
        self._compare_files()
        return None

    def _commit(self, op: Commit) -> Flight | None:
        ids, refusal = self.model.commit_plan(op.up_to)
        req = apb.CommitActionsRequest(session_id=self.session, up_to_action_id=op.up_to)
        try:
            committed = list(self.life.d.actions.CommitActions(req, timeout=300).committed)
        except grpc.RpcError as exc:
            if not self.life.alive() or exc.code() == grpc.StatusCode.UNAVAILABLE:
                return self._died(exc, Flight(op, commit_ids=ids))
            if refusal is None or exc.code().name != refusal.code:
                raise Violation(
                    f"commit answered {exc.code().name} {exc.details()}; expected {ids} {refusal}"
                ) from None
            self._note(f"  -> refused as expected ({refusal.why})")
            return None
        got = [c.id for c in committed]
        self._note(f"  -> committed {got}")
        if refusal is not None or got != list(ids):
            raise Violation(f"commit committed {got}; expected {list(ids)} {refusal}")
        self.model.commit(ids)
        return None

    # ---------------------------------------------------------------- checks

    def _journal(self) -> dict[str, Entry]:
        req = apb.ListActionsRequest(session_id=self.session, page_size=1000)
        actions = self.life.d.actions.ListActions(req, timeout=60).actions
        return {a.id: Entry(a.id, a.seq, a.resource, STATE_NAMES[a.state], a.error) for a in actions}

    def _compare_states(self) -> None:
        journal = self._journal()
        wrong = {
            i: (s, journal[i].state if i in journal else None)
            for i, s in self.model.states().items()
            if i not in journal or journal[i].state != s
        }
        extra = [i for i in journal if i not in self.model.acts]
        if wrong or extra:
            raise Violation(f"journal differs from the model (model, journal): {wrong}; unknown actions {extra}")

    def _compare_files(self) -> None:
        found = self.world.files()
        if found != self.model.files:
            raise Violation(f"workspace differs from the model: model {self.model.files}, disk {found}")

    def _check(self, flight: Flight | None, edits: list[Edit]) -> None:
        d = self.life.d
        journal = self._journal()
        kept_ids = [
            k.id
            for k in d.actions.ListSetAsides(apb.ListSetAsidesRequest(session_id=self.session), timeout=120).set_asides
        ]
        found = Found(
            journal=journal,
            files=self.world.files(),
            outside={r.name: self.world.db_state(r) for r in DBS},
            kept=self.world.set_aside_versions(d.state_dir, kept_ids),
        )
        self.world.wait_pg_idle()
        self.model = reconcile(self.model, flight, edits, found)
        self._note(f"checked: {len(journal)} actions, {len(self.model.pending())} pending, {len(kept_ids)} set-asides")
        owner = leftovers.owner_of(d.state_dir)
        left = leftovers.settle(owner)
        if left:
            raise Violation(f"sandbox processes left by a killed goexd: {left}")
        runs = leftovers.egress_dirs(owner)
        if len(runs) > 1:
            raise Violation(f"egress run dirs left behind: {runs}")
        mounted = leftovers.overlay_mounts(d.state_dir)
        if mounted:
            raise Violation(f"overlay mounts left by a killed goexd: {mounted}")
        if leftovers.mounted_on(self.world.workspace):
            raise Violation(f"something is mounted on the workspace {self.world.workspace}")
        overlays = d.state_dir / "overlays"
        if overlays.exists() and any(overlays.iterdir()):
            raise Violation(f"overlay dirs left behind: {sorted(p.name for p in overlays.iterdir())}")
        self._check_copies(journal)

    def _check_copies(self, journal: dict[str, Entry]) -> None:
        """The clone strategy's copies (SQLite files, PostgreSQL databases) belong to pending actions only; one a
        kill left while it was being made (before its checkpoint was journaled) is dropped by recovery."""
        for action_id, what in self.world.copies(self.life.d.state_dir):
            entry = journal.get(action_id)
            if entry is None or (entry.state == EXECUTED and "copy" in what):
                continue  # another test's, or its action's checkpoint
            raise Violation(f"{what} left behind by {action_id}, {entry.state}: {entry.error}")

    # ---------------------------------------------------------------- trace

    def _note(self, line: str) -> None:
        self.trace.append(line)
        if ECHO:
            print(f"[seed {self.seed}] {line}", flush=True)

    def _trace(self) -> str:
        return "\n".join(self.trace[-TRACE_LINES:])


def _spec(plan: KillPlan) -> str | None:
    return plan.spec if isinstance(plan, (Armed, RecoveryArmed)) else None


def _edited(files: dict[str, bytes], edit: Edit) -> dict[str, bytes]:
    from tests.faults.model import apply_file_ops

    return apply_file_ops(files, edit.ops)


def _ops(edit: Edit) -> str:
    return ", ".join(f"{o.kind} {o.path}" for o in edit.ops)


def _describe(op: Op) -> str:
    if isinstance(op, Submit):
        body = "; ".join(f.shell() for f in op.file_ops) if op.file_ops else script(op.sql_ops)
        return f"submit {op.resource}: {body}"
    if isinstance(op, Undo):
        return f"undo {op.target or '(newest)'}{' cascade' if op.cascade else ''}{' force' if op.force else ''}"
    if isinstance(op, UndoTo):
        return f"undo-to {op.anchor}{' force' if op.force else ''}"
    if isinstance(op, Commit):
        return f"commit {op.up_to or '(all)'}"
    return f"edit {_ops(op)}"
