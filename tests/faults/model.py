"""What the seeded kill suite (test_seeded_kills.py) expects of goexd: a model of one session's
resources and of the engine's rules, with no I/O.

- A workspace is a dict path -> bytes (regular files only; the suite never makes or removes a
  directory). An action's effect is its file operations applied to the workspace as it is when
  it runs; its change set is every path whose content differs; its undo is the three-way rule of
  snapshots/threeway.py, path by path: back to the pre-action content where the path is still as
  the action left it, a conflict where it is not (refused, or forced: the version there is set aside).
- A database is a table kv(k, v) and a counter n. An action is a few SQL operations, each with an
  exact inverse. Undo takes the database back to its state before the action; the engine only
  undoes the newest pending action of a database (cascade), so a stack per database says it all.
  With the transaction strategy, other connections see only what was committed (`committed`).
- `Timeline` is the session: the actions and their states, and what UndoAction, UndoTo and
  CommitActions do to them, refusals included (engine.py: undo, undo_to, _undo_one, commit).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

Content = bytes | None  # None: the path does not exist
Files = dict[str, bytes]
Change = tuple[Content, Content]  # (before the action, after it)

EXECUTED, COMMITTED, UNDONE, INTERRUPTED, FAILED = "EXECUTED", "COMMITTED", "UNDONE", "INTERRUPTED", "FAILED"


# ---------------------------------------------------------------- resources of the session


@dataclass(frozen=True)
class ResourceInfo:
    name: str
    kind: str  # fs, sqlite, postgres
    strategy: str  # versioned, transaction, inverse, clone

    @property
    def tag(self) -> str:
        """Its fault points' tag (goexd/faults.py)."""
        return f"{self.kind}-{self.strategy}"

    @property
    def is_db(self) -> bool:
        return self.kind != "fs"

    @property
    def held_in_transaction(self) -> bool:
        return self.strategy == "transaction"


FS = ResourceInfo("fs", "fs", "versioned")
RESOURCES: tuple[ResourceInfo, ...] = (
    FS,
    ResourceInfo("lt", "sqlite", "transaction"),
    ResourceInfo("li", "sqlite", "inverse"),
    ResourceInfo("lc", "sqlite", "clone"),
    ResourceInfo("pt", "postgres", "transaction"),
    ResourceInfo("pi", "postgres", "inverse"),
    ResourceInfo("pc", "postgres", "clone"),
)
BY_NAME = {r.name: r for r in RESOURCES}
DBS = tuple(r for r in RESOURCES if r.is_db)


# ---------------------------------------------------------------- files


@dataclass(frozen=True)
class FileOp:
    kind: str  # write, append, delete
    path: str
    text: str = ""  # a token unique in the run, so that no two versions of a file are alike

    def shell(self) -> str:
        if self.kind == "delete":
            return f"rm -f {self.path}"
        return f"printf '{self.text}\\n' {'>' if self.kind == 'write' else '>>'} {self.path}"


def apply_file_ops(files: Mapping[str, bytes], ops: Iterable[FileOp]) -> Files:
    out = dict(files)
    for op in ops:
        if op.kind == "delete":
            out.pop(op.path, None)
        elif op.kind == "write":
            out[op.path] = op.text.encode() + b"\n"
        else:
            out[op.path] = out.get(op.path, b"") + op.text.encode() + b"\n"
    return out


def changes_between(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> dict[str, Change]:
    return {p: (before.get(p), after.get(p)) for p in sorted(set(before) | set(after)) if before.get(p) != after.get(p)}


def put(files: Files, path: str, content: Content) -> None:
    if content is None:
        files.pop(path, None)
    else:
        files[path] = content


@dataclass(frozen=True)
class Revert:
    files: Files
    conflicts: tuple[str, ...]
    set_aside: dict[str, Content]  # path -> the version a forced revert overwrote


def three_way(files: Mapping[str, bytes], changes: Mapping[str, Change], force: bool) -> Revert:
    """Take each changed path back to its `before` where it is still `after` (snapshots/threeway.py)."""
    out = dict(files)
    conflicts: list[str] = []
    kept: dict[str, Content] = {}
    for path, (before, after) in changes.items():
        now = files.get(path)
        if now == after:
            put(out, path, before)
        elif now != before:
            conflicts.append(path)
            if force:
                kept[path] = now
                put(out, path, before)
    if conflicts and not force:
        return Revert(dict(files), tuple(conflicts), {})
    return Revert(out, tuple(conflicts), kept)


# ---------------------------------------------------------------- databases


@dataclass(frozen=True)
class DbState:
    rows: tuple[tuple[str, int], ...]  # kv, sorted by key
    n: int  # the counter

    def as_dict(self) -> dict[str, int]:
        return dict(self.rows)


INITIAL_DB = DbState((("k0", 10), ("k1", 20), ("k2", 30)), 0)
KEYS = tuple(f"k{i}" for i in range(8))


@dataclass(frozen=True)
class SqlOp:
    kind: str  # ins, upd, del, cnt
    key: str = ""
    value: int = 0  # ins: the value; upd, cnt: the delta; del: the value deleted (for the inverse)

    def sql(self) -> str:
        return {
            "ins": f"INSERT INTO kv (k, v) VALUES ('{self.key}', {self.value})",
            "upd": f"UPDATE kv SET v = v + {self.value} WHERE k = '{self.key}'",
            "del": f"DELETE FROM kv WHERE k = '{self.key}'",
            "cnt": f"UPDATE counter SET n = n + {self.value} WHERE id = 1",
        }[self.kind]

    def inverse_sql(self) -> str:
        return {
            "ins": f"DELETE FROM kv WHERE k = '{self.key}'",
            "upd": f"UPDATE kv SET v = v - {self.value} WHERE k = '{self.key}'",
            "del": f"INSERT INTO kv (k, v) VALUES ('{self.key}', {self.value})",
            "cnt": f"UPDATE counter SET n = n - {self.value} WHERE id = 1",
        }[self.kind]


def script(ops: Sequence[SqlOp]) -> str:
    return "; ".join(op.sql() for op in ops)


def inverse_script(ops: Sequence[SqlOp]) -> str:
    return "; ".join(op.inverse_sql() for op in reversed(ops))


def apply_sql(state: DbState, ops: Iterable[SqlOp]) -> DbState:
    rows, n = state.as_dict(), state.n
    for op in ops:
        if op.kind == "ins":
            assert op.key not in rows, op
            rows[op.key] = op.value
        elif op.kind == "upd":
            rows[op.key] += op.value
        elif op.kind == "del":
            assert rows.pop(op.key) == op.value, op
        else:
            n += op.value
    return DbState(tuple(sorted(rows.items())), n)


@dataclass
class DbModel:
    live: DbState = INITIAL_DB  # as goexd's connection sees it (pending actions included)
    committed: DbState = INITIAL_DB  # as any other connection sees it (transaction strategy)


# ---------------------------------------------------------------- the session


@dataclass
class Act:
    id: str
    seq: int
    resource: str
    state: str
    changes: dict[str, Change] = field(default_factory=dict)  # fs: what it changed
    db_before: DbState | None = None  # a database: its state before the action (what undo gives back)
    db_after: DbState | None = None


@dataclass(frozen=True)
class Refusal:
    code: str  # the gRPC status name
    why: str


@dataclass(frozen=True)
class UndoPlan:
    """What an undo call does: `targets` newest first; a refusal before the first (`at` 0) or at one."""

    targets: tuple[str, ...]
    refusal: Refusal | None = None
    at: int = 0  # the refusal comes when undoing targets[at]; those before it are undone


@dataclass
class Timeline:
    files: Files
    acts: dict[str, Act] = field(default_factory=dict)  # in seq order
    dbs: dict[str, DbModel] = field(default_factory=lambda: {r.name: DbModel() for r in DBS})
    # Versions goexd overwrote that must be in a set-aside: (path, content).
    set_aside: list[tuple[str, Content]] = field(default_factory=list)

    def clone(self) -> Timeline:
        return copy.deepcopy(self)

    def pending(self) -> list[Act]:
        return [a for a in self.acts.values() if a.state == EXECUTED]

    # -- actions

    def run(self, act: Act, file_ops: Sequence[FileOp], sql_ops: Sequence[SqlOp]) -> None:
        """`act` executed: its effect on its resource."""
        info = BY_NAME[act.resource]
        if info.is_db:
            db = self.dbs[act.resource]
            act.db_before, act.db_after = db.live, apply_sql(db.live, sql_ops)
            db.live = act.db_after
        else:
            after = apply_file_ops(self.files, file_ops)
            act.changes = changes_between(self.files, after)
            self.files = after
        self.acts[act.id] = act

    def fs_changes_of(self, file_ops: Sequence[FileOp]) -> dict[str, Change]:
        return changes_between(self.files, apply_file_ops(self.files, file_ops))

    # -- undo

    def undo_plan(self, action_id: str, cascade: bool, force: bool) -> UndoPlan:
        """engine.undo: which actions an UndoAction call undoes, and where it is refused."""
        pending = self.pending()
        if action_id:
            target = self.acts[action_id]
        elif pending:
            target = pending[-1]
        else:
            return UndoPlan((), Refusal("FAILED_PRECONDITION", "no pending action"))
        if target.state != EXECUTED:
            return UndoPlan((), Refusal("FAILED_PRECONDITION", f"{target.id} is {target.state}"))
        same = [a for a in pending if a.seq > target.seq and a.resource == target.resource]
        if same and not cascade and BY_NAME[target.resource].is_db:
            return UndoPlan((), Refusal("FAILED_PRECONDITION", "later pending actions on the database"))
        later = same if cascade else []
        return self._undo_sequence([*reversed(later), target], force)

    def undo_to_plan(self, anchor: str, force: bool) -> UndoPlan:
        seq = self.acts[anchor].seq
        return self._undo_sequence(list(reversed([a for a in self.pending() if a.seq > seq])), force)

    def _undo_sequence(self, targets: list[Act], force: bool) -> UndoPlan:
        """_undo_one for each, newest first, on a copy: where the first refusal comes."""
        trial = self.clone()
        ids = tuple(a.id for a in targets)
        for i, a in enumerate(targets):
            if force and BY_NAME[a.resource].is_db:
                return UndoPlan(ids, Refusal("INVALID_ARGUMENT", "force on a database"), i)
            if not BY_NAME[a.resource].is_db and not force and three_way(trial.files, a.changes, False).conflicts:
                return UndoPlan(ids, Refusal("FAILED_PRECONDITION", f"conflicts undoing {a.id}"), i)
            trial.undo(a.id, force)
        return UndoPlan(ids)

    def undo(self, action_id: str, force: bool) -> None:
        """One action undone (the plan said it could be)."""
        act = self.acts[action_id]
        info = BY_NAME[act.resource]
        if info.is_db:
            db = self.dbs[act.resource]
            assert db.live == act.db_after, (act, db.live)  # only the newest pending action is undone
            assert act.db_before is not None
            db.live = act.db_before
        else:
            done = three_way(self.files, act.changes, force)
            assert force or not done.conflicts
            self.files = done.files
            self.set_aside += list(done.set_aside.items())
            # A later pending action's undo is planned with this undo replayed on its before and after
            # (resolve.py Resolver._undone_since, snapshots/replay.py): both hold this action's paths at their `before`,
            # so those paths are no longer that action's to take back (a forced undo already did).
            for later in self.pending():
                if later.resource == act.resource and later.seq > act.seq:
                    later.changes = {p: c for p, c in later.changes.items() if p not in act.changes}
        act.state = UNDONE

    # -- commit

    def commit_plan(self, up_to: str) -> tuple[tuple[str, ...], Refusal | None]:
        """engine.commit: the pending actions up to `up_to` (all when ""), or the commit_check refusal."""
        pending = self.pending()
        if up_to:
            seq = self.acts[up_to].seq
            chosen = [a for a in pending if a.seq <= seq]
        else:
            chosen = pending
        ids = tuple(a.id for a in chosen)
        for r in DBS:
            if r.held_in_transaction and any(a.resource == r.name and a.id not in ids for a in pending):
                return ids, Refusal("FAILED_PRECONDITION", f"{r.name} commits whole")
        return ids, None

    def commit(self, ids: Iterable[str]) -> None:
        for i in ids:
            act = self.acts[i]
            act.state = COMMITTED
            info = BY_NAME[act.resource]
            if info.held_in_transaction:
                db = self.dbs[act.resource]
                db.committed = db.live

    # -- a restart

    def lose_transactions(self) -> None:
        """goexd died: the open transactions went with it; their pending actions are INTERRUPTED."""
        for a in self.pending():
            if BY_NAME[a.resource].held_in_transaction:
                a.state = INTERRUPTED
        for r in DBS:
            if r.held_in_transaction:
                db = self.dbs[r.name]
                db.live = db.committed

    def outside_view(self, name: str) -> DbState:
        """What another connection sees of a database."""
        db = self.dbs[name]
        return db.committed if BY_NAME[name].held_in_transaction else db.live

    def states(self) -> dict[str, str]:
        return {a.id: a.state for a in self.acts.values()}


def with_state(act: Act, state: str) -> Act:
    return replace(act, state=state)
