"""The seeded plan of a kill suite run: the next operation, and where goexd is killed.

Everything random comes from one random.Random(seed), drawn in a fixed order, so a seed gives the
same operations and the same kill plans again (where a kill lands in time, for the kills sent
from outside, depends on the machine's speed).

Operations (over the session of model.RESOURCES):
- Submit: a shell action writing, appending to or deleting files of the workspace, or a SQL
  action of 1-2 operations on one database (with its exact inverse on the inverse strategy);
- Undo (a pending action by id, or the newest when ""; cascade; force on a workspace action),
  UndoTo (an earlier action), Commit (all, or up to a pending action);
- Edit: the person's own change to the workspace, made directly, outside goexd.

A kill plan, one per goexd start:
- Armed: a fault point POINT[:TAG]@N (goexd/faults.py) with a random N (one more for a point the
  start itself reaches: REACHED_AT_START); the operations then lean towards the ones that reach it;
- External: SIGKILL from outside at a random delay while operations run;
- RecoveryArmed: `recovery-action@N`, which fires only inside recovery at the start (often @1 when
  the last kill left something in doubt); any start may also get an outside SIGKILL at a random
  moment (`startup_kill`).
Whichever kill has not come by the end of the burst is sent from outside then ("fallback").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tests.faults.model import (
    BY_NAME,
    DBS,
    FS,
    KEYS,
    RESOURCES,
    FileOp,
    ResourceInfo,
    SqlOp,
    Timeline,
)

PATHS = ("a.txt", "b.txt", "c.txt", "sub/c.txt", "sub/d.txt")  # sub/ always exists (sub/.keep)
INITIAL_FILES = {"a.txt": b"a0\n", "b.txt": b"b0\n", "sub/.keep": b"", "sub/c.txt": b"c0\n"}
MAX_OPS = 14  # in one burst, before a kill that has not come is sent from outside

# Fault points an operation reaches, by kind of operation (faults.POINTS).
SUBMIT_POINTS = ("checkpoint-made", "run-journaled", "run-returned")
FS_POINTS = ("fs-apply-intent", "fs-applied", "fs-overlay-mounted")
# Points every start reaches once before it serves (the overlay probe's run, which a root goexd mounts itself):
# an Armed N counts the actions' hits after it.
REACHED_AT_START = ("fs-overlay-mounted",)
INVERSE_ACTION_POINTS = ("action-before-commit", "action-after-commit")
UNDO_POINTS = ("undo-journaled", "undo-returned")
INVERSE_UNDO_POINTS = ("undo-before-commit", "undo-after-commit")
COMMIT_POINTS = ("commit-journaled", "commit-returned")


@dataclass(frozen=True)
class Submit:
    resource: str
    file_ops: tuple[FileOp, ...] = ()
    sql_ops: tuple[SqlOp, ...] = ()


@dataclass(frozen=True)
class Undo:
    target: str  # "" = the newest pending action
    cascade: bool = False
    force: bool = False


@dataclass(frozen=True)
class UndoTo:
    anchor: str
    force: bool = False


@dataclass(frozen=True)
class Commit:
    up_to: str = ""


@dataclass(frozen=True)
class Edit:
    ops: tuple[FileOp, ...]


Op = Submit | Undo | UndoTo | Commit | Edit


@dataclass(frozen=True)
class Armed:
    point: str
    tag: str | None
    nth: int

    @property
    def spec(self) -> str:
        return f"{self.point}{':' + self.tag if self.tag else ''}@{self.nth}"


@dataclass(frozen=True)
class External:
    delay_s: float


@dataclass(frozen=True)
class RecoveryArmed:
    nth: int

    @property
    def spec(self) -> str:
        return f"recovery-action@{self.nth}"


KillPlan = Armed | External | RecoveryArmed


def _points_for(info: ResourceInfo) -> list[str]:
    points = [*SUBMIT_POINTS, *UNDO_POINTS, *COMMIT_POINTS]
    if info is FS:
        points += FS_POINTS
    if info.strategy == "inverse":
        points += [*INVERSE_ACTION_POINTS, *INVERSE_UNDO_POINTS]
    return points


class Planner:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._token = 0

    def token(self, prefix: str) -> str:
        self._token += 1
        return f"{prefix}{self._token}"

    # -- kills

    def kill_plan(self, in_doubt: bool = False) -> KillPlan:
        """`in_doubt`: the start will have something to recover (the last kill interrupted an operation, or
        the last start): then it is often killed at the first action recovery resolves."""
        if in_doubt and self.rng.random() < 0.35:
            return RecoveryArmed(1)
        r = self.rng.random()
        if r < 0.5:
            info = self.rng.choice(RESOURCES)
            point = self.rng.choice(_points_for(info))
            tagged = self.rng.random() < 0.75
            nth = self.rng.choice((1, 1, 2, 3)) + (1 if point in REACHED_AT_START else 0)
            return Armed(point, info.tag if tagged else None, nth)
        if r < 0.6:
            return RecoveryArmed(self.rng.randint(1, 3))
        return External(round(self.rng.uniform(0.05, 2.5), 3))

    def startup_kill(self, last_start_s: float) -> float | None:
        """A delay after which an outside SIGKILL hits a start (about when recovery runs), or None."""
        if self.rng.random() < 0.2:
            return round(last_start_s * self.rng.uniform(0.55, 1.0), 3)
        return None

    def edits_after_crash(self, model: Timeline) -> Edit | None:
        return self.edit(model) if self.rng.random() < 0.35 else None

    # -- operations

    def next_op(self, model: Timeline, aim: Armed | None) -> Op:
        if aim is not None and self.rng.random() < 0.7:
            op = self._towards(model, aim)
            if op is not None:
                return op
        r = self.rng.random()
        if r < 0.22:
            return self.submit(model, FS)
        if r < 0.55:
            return self.submit(model, self.rng.choice(DBS))
        if r < 0.72:
            return self.undo(model)
        if r < 0.78:
            return self.undo_to(model)
        if r < 0.88:
            return self.commit(model)
        return self.edit(model)

    def _towards(self, model: Timeline, aim: Armed) -> Op | None:
        """An operation that reaches the armed point (or gets closer: something to undo or commit)."""
        tag = aim.tag or self.rng.choice(_tags_with(aim.point))
        info = next(r for r in RESOURCES if r.tag == tag)
        pending = [a for a in model.pending() if a.resource == info.name]
        if aim.point in (*SUBMIT_POINTS, *FS_POINTS, *INVERSE_ACTION_POINTS):
            return self.submit(model, info)
        if not pending:
            return self.submit(model, info)
        if aim.point in COMMIT_POINTS:
            return Commit()
        target = self.rng.choice(pending)
        return Undo(target.id, cascade=True, force=info is FS and self.rng.random() < 0.5)

    def submit(self, model: Timeline, info: ResourceInfo) -> Submit:
        if info is FS:
            n = self.rng.randint(1, 3)
            file_ops = [self._file_op(model.files, self.token("s"), allow_delete=i > 0) for i in range(n)]
            return Submit(info.name, file_ops=tuple(file_ops))
        state = model.dbs[info.name].live.as_dict()
        ops: list[SqlOp] = []
        for _ in range(self.rng.randint(1, 2)):
            op = self._sql_op(state)
            ops.append(op)
            if op.kind == "ins":
                state[op.key] = op.value
            elif op.kind == "upd":
                state[op.key] += op.value
            elif op.kind == "del":
                del state[op.key]
        return Submit(info.name, sql_ops=tuple(ops))

    def _file_op(self, files: dict[str, bytes], text: str, allow_delete: bool) -> FileOp:
        path = self.rng.choice(PATHS)
        kind = self.rng.choice(("write", "append", "delete") if allow_delete else ("write", "append"))
        if kind == "delete" and path not in files:
            kind = "write"
        return FileOp(kind, path, text)

    def _sql_op(self, state: dict[str, int]) -> SqlOp:
        absent = [k for k in KEYS if k not in state]
        present = sorted(state)
        kinds = ["cnt"] + (["ins"] if absent else []) + (["upd", "del"] if present else [])
        kind = self.rng.choice(kinds)
        if kind == "ins":
            return SqlOp("ins", self.rng.choice(absent), self.rng.randint(1, 99))
        if kind == "upd":
            return SqlOp("upd", self.rng.choice(present), self.rng.randint(1, 9))
        if kind == "del":
            key = self.rng.choice(present)
            return SqlOp("del", key, state[key])
        return SqlOp("cnt", value=self.rng.randint(1, 9))

    def undo(self, model: Timeline) -> Undo:
        pending = model.pending()
        if not pending or self.rng.random() < 0.25:
            return Undo("")
        target = self.rng.choice(pending)
        fs = BY_NAME[target.resource] is FS
        return Undo(target.id, cascade=self.rng.random() < 0.5, force=fs and self.rng.random() < 0.4)

    def undo_to(self, model: Timeline) -> Op:
        acts = list(model.acts.values())
        if not acts:
            return self.edit(model)
        # Mostly a recent anchor: undoing the whole timeline every time leaves little to commit.
        anchor = acts[max(0, len(acts) - 1 - int(self.rng.expovariate(0.5)))]
        later = [a for a in model.pending() if a.seq > anchor.seq]
        all_fs = bool(later) and all(BY_NAME[a.resource] is FS for a in later)
        return UndoTo(anchor.id, force=all_fs and self.rng.random() < 0.4)

    def commit(self, model: Timeline) -> Commit:
        pending = model.pending()
        if pending and self.rng.random() < 0.3:
            return Commit(self.rng.choice(pending).id)
        return Commit()

    def edit(self, model: Timeline) -> Edit:
        n = self.rng.randint(1, 2)
        ops = []
        files = dict(model.files)
        for _ in range(n):
            op = self._file_op(files, self.token("p"), allow_delete=True)
            ops.append(op)
            files = {**files}
            if op.kind == "delete":
                files.pop(op.path, None)
            else:
                files[op.path] = b"x"  # only presence matters for the next choice
        return Edit(tuple(ops))


def _tags_with(point: str) -> list[str]:
    return [r.tag for r in RESOURCES if point in _points_for(r)]
