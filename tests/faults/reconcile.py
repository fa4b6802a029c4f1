"""After a kill and a restart: does every resource hold what the journal now says? (No I/O here.)

Given the model as it was before the operation the kill interrupted (`Flight`, if any), the
person's edits made while goexd was down, and what is found after the restart (the journal's
actions, the workspace's files, what other connections see of each database, the versions the
set-asides keep), this checks the journal's answer for everything in doubt and returns the
model that now holds. The answer must be exactly the documented one:

- no action is left PROPOSED, PREPARING or RUNNING; none appeared but the interrupted submit's;
- the interrupted submit: EXECUTED with all of its effect, or INTERRUPTED (or never journaled)
  with none of it. On a workspace, INTERRUPTED after its result reached the workspace ("took
  back") means taken back three-way and forced: what the person changed there since the crash is
  set aside; otherwise the workspace is as the person left it;
- an interrupted undo (or undo-to): the journal says UNDONE for a prefix of its targets, newest
  first, and exactly those are undone; a workspace target undone is undone either before the
  crash (the person's later edits stay) or by recovery after them, three-way and forced (the
  undo was asked for and begun: what the person changed there meanwhile is set aside);
- an interrupted commit: the actions whose commit intent was journaled (a prefix) are COMMITTED,
  finished at restart (their resources may have let go of what an undo needs: a clone's copy),
  the transaction strategy's INTERRUPTED with the outcome unknown; the rest still pending;
- the transaction strategy: every pending action INTERRUPTED (the database rolled the open
  transaction back, its effects are gone); but when the kill came after a commit's intents were
  all journaled, the journal says the outcome is unknown, and then the database holds either all
  of that commit or none of it (and when one of them is COMMITTED, all of it);
- every other action as before; every database as the model says; the workspace as one of the
  above says, and every version goexd overwrote kept in a set-aside (nothing the person wrote lost).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tests.faults.daemon_life import Violation
from tests.faults.model import (
    BY_NAME,
    COMMITTED,
    DBS,
    EXECUTED,
    FS,
    INTERRUPTED,
    UNDONE,
    Act,
    Change,
    Content,
    DbState,
    Files,
    Timeline,
    UndoPlan,
    apply_file_ops,
    changes_between,
    three_way,
)
from tests.faults.plan import Commit, Edit, Op, Submit, Undo, UndoTo

ACTIVE = ("PROPOSED", "PREPARING", "RUNNING")
COMMIT_UNKNOWN = "whether the database committed it before that is unknown"


@dataclass(frozen=True)
class Entry:
    """An action as the journal has it (ListActions)."""

    id: str
    seq: int
    resource: str
    state: str
    error: str


@dataclass(frozen=True)
class Flight:
    """The operation a kill interrupted, with what the model said it would do."""

    op: Op
    undo: UndoPlan | None = None  # Undo, UndoTo
    commit_ids: tuple[str, ...] = ()  # Commit


@dataclass(frozen=True)
class Found:
    """What is there after the restart."""

    journal: Mapping[str, Entry]
    files: Files
    outside: Mapping[str, DbState]  # database resource -> what another connection sees
    kept: Mapping[str, Mapping[str, Content]]  # set-aside id -> path -> the version it keeps


@dataclass
class Candidate:
    why: str
    files: Files
    kept: list[tuple[str, Content]] = field(default_factory=list)


def reconcile(before: Timeline, flight: Flight | None, edits: Sequence[Edit], found: Found) -> Timeline:
    m = before.clone()
    journal = found.journal
    active = [f"{e.id} ({e.resource}) {e.state}" for e in journal.values() if e.state in ACTIVE]
    if active:
        raise Violation(f"left unresolved after the restart: {active}")
    missing = [i for i in m.acts if i not in journal]
    if missing:
        raise Violation(f"actions gone from the journal: {missing}")
    new = [e for e in journal.values() if e.id not in m.acts]
    submit = flight.op if flight is not None and isinstance(flight.op, Submit) else None
    if new and (submit is None or len(new) > 1 or new[0].resource != submit.resource):
        raise Violation(f"actions nobody submitted: {new} (interrupted: {flight})")

    reverted: dict[str, Change] = {}  # the interrupted workspace action's changes, taken back at restart
    if submit is not None and new:
        reverted = _interrupted_submit(m, submit, new[0])

    fs_undone: list[str] = []
    force = isinstance(flight.op, (Undo, UndoTo)) and flight.op.force if flight is not None else False
    if flight is not None and flight.undo is not None:
        fs_undone = _interrupted_undo(m, flight.undo, journal, force)

    commit_ids = flight.commit_ids if flight is not None and isinstance(flight.op, Commit) else ()
    all_reached = _interrupted_commit(m, commit_ids, journal)
    _transactions(m, commit_ids, all_reached, journal, found.outside)
    for r in DBS:
        if not r.held_in_transaction and found.outside[r.name] != m.dbs[r.name].live:
            raise Violation(
                f"database {r.name} ({r.tag}) holds {found.outside[r.name]}, the journal says {m.dbs[r.name].live}"
            )

    chosen = _workspace(m, fs_undone, force, reverted, edits, found)
    m.files = dict(found.files)
    m.set_aside += chosen.kept
    for t in fs_undone:
        m.acts[t].state = UNDONE
    check_set_asides(m.set_aside, found.kept)
    check_states(m, journal)
    return m


def _interrupted_submit(m: Timeline, submit: Submit, x: Entry) -> dict[str, Change]:
    info = BY_NAME[x.resource]
    act = Act(x.id, x.seq, x.resource, x.state)
    if x.state == EXECUTED and not info.held_in_transaction:
        m.run(act, submit.file_ops, submit.sql_ops)
        return {}
    if x.state != INTERRUPTED:
        raise Violation(f"the interrupted action {x.id} on {info.tag} ended {x.state}: {x.error}")
    m.acts[x.id] = act
    if info is FS and ("took back" in x.error or "set aside" in x.error):
        act.changes = m.fs_changes_of(submit.file_ops)
        return act.changes
    return {}


def _interrupted_undo(m: Timeline, plan: UndoPlan, journal: Mapping[str, Entry], force: bool) -> list[str]:
    """Apply the databases' part of what the journal says an interrupted undo did; its workspace targets."""
    reachable = plan.targets[: plan.at] if plan.refusal is not None else plan.targets
    fs_undone: list[str] = []
    prefix = True
    for t in plan.targets:
        if journal[t].state != UNDONE:
            prefix = False
            continue
        if not prefix or t not in reachable:
            states = {x: journal[x].state for x in plan.targets}
            raise Violation(f"an interrupted undo of {list(plan.targets)} (newest first) left {states}")
        if BY_NAME[m.acts[t].resource] is FS:
            fs_undone.append(t)
        else:
            m.undo(t, force)
    return fs_undone


def _interrupted_commit(m: Timeline, ids: Sequence[str], journal: Mapping[str, Entry]) -> bool:
    """Apply what the journal says of an interrupted commit; whether its intent was journaled for all of it.

    engine/resolve.py commit_locked journals the intent for each action, then has the resources commit, then journals
    COMMITTED; a restart finishes the commit of each action whose intent is journaled (engine/recovery.py),
    and says the outcome is unknown for the transaction strategy's. So the actions it reached are a prefix:
    COMMITTED, or (transaction strategy) INTERRUPTED with the outcome unknown; the rest still pending
    (transaction strategy: INTERRUPTED, rolled back)."""
    reached = [journal[i].state == COMMITTED or COMMIT_UNKNOWN in journal[i].error for i in ids]
    if reached != sorted(reached, reverse=True):
        raise Violation(
            f"an interrupted commit of {list(ids)} left {[(journal[x].state, journal[x].error) for x in ids]}"
        )
    for i, got in zip(ids, reached, strict=True):
        if BY_NAME[m.acts[i].resource].held_in_transaction:
            continue
        if got:
            m.commit([i])
    return all(reached)


def _transactions(
    m: Timeline,
    commit_ids: Sequence[str],
    all_reached: bool,
    journal: Mapping[str, Entry],
    outside: Mapping[str, DbState],
) -> None:
    """The transaction strategy after a restart (see the module's doc)."""
    for r in DBS:
        if not r.held_in_transaction:
            continue
        db = m.dbs[r.name]
        in_commit = [i for i in commit_ids if m.acts[i].resource == r.name]
        if any(journal[i].state == COMMITTED for i in in_commit):
            allowed, why = [db.live], "part of the commit is journaled COMMITTED"
        elif in_commit and all_reached:  # the resources commit only once every intent is journaled
            allowed, why = [db.committed, db.live], "the commit's outcome is unknown"
        else:
            allowed, why = [db.committed], "nothing of it was committed"
        got = outside[r.name]
        if got not in allowed:
            raise Violation(f"database {r.name} ({r.tag}) holds {got}; {why}, so it must hold one of {allowed}")
        db.committed = db.live = got
        for a in m.pending():
            if a.resource == r.name:
                a.state = COMMITTED if journal[a.id].state == COMMITTED else INTERRUPTED


def _workspace(
    m: Timeline, fs_undone: list[str], force: bool, reverted: dict[str, Change], edits: Sequence[Edit], found: Found
) -> Candidate:
    """The workspace must be one of the outcomes the journal allows; the one it is."""

    def edited(files: Files) -> Files:
        for e in edits:
            files = apply_file_ops(files, e.ops)
        return files

    def undone(files: Files, ids: Sequence[str], kept: list[tuple[str, Content]]) -> Files:
        for t in ids:
            done = three_way(files, m.acts[t].changes, force)
            files = done.files
            kept += list(done.set_aside.items())
        return files

    kept: list[tuple[str, Content]] = []
    why = "its undo done before the crash" if fs_undone else "the person's edits on what the journal says"
    first = Candidate(why, edited(undone(m.files, fs_undone, kept)), kept)
    if reverted:
        back = three_way(first.files, reverted, force=True)
        first = Candidate(
            "taken back at restart (forced: the person's versions set aside)",
            back.files,
            [*kept, *back.set_aside.items()],
        )
    candidates = [first]
    if fs_undone:  # the last one begun but not finished: recovery finishes it after the edits, forced
        kept2: list[tuple[str, Content]] = []
        files = edited(undone(m.files, fs_undone[:-1], kept2))
        last = three_way(files, m.acts[fs_undone[-1]].changes, force=True)
        kept2 += list(last.set_aside.items())
        candidates.append(Candidate("its undo finished by recovery, after the person's edits", last.files, kept2))
    for c in candidates:
        if c.files == found.files and not missing_set_asides(c.kept, found.kept):
            return c
    lines = [
        f"- {c.why}: differs {changes_between(c.files, found.files)}, missing set-asides "
        f"{missing_set_asides(c.kept, found.kept)}"
        for c in candidates
    ]
    raise Violation("the workspace is none of what the journal allows (expected -> found):\n" + "\n".join(lines))


def missing_set_asides(
    required: Sequence[tuple[str, Content]], kept: Mapping[str, Mapping[str, Content]]
) -> list[tuple[str, Content]]:
    """The required (path, version) pairs no set-aside holds (each set-aside path counts once)."""
    available = [(p, v) for versions in kept.values() for p, v in versions.items()]
    missing = []
    for need in required:
        if need in available:
            available.remove(need)
        else:
            missing.append(need)
    return missing


def check_set_asides(required: Sequence[tuple[str, Content]], kept: Mapping[str, Mapping[str, Content]]) -> None:
    missing = missing_set_asides(required, kept)
    if missing:
        raise Violation(f"overwritten versions kept nowhere (lost): {missing}; set-asides: {dict(kept)}")


def check_states(m: Timeline, journal: Mapping[str, Entry]) -> None:
    wrong = {i: (a.state, journal[i].state, journal[i].error) for i, a in m.acts.items() if journal[i].state != a.state}
    if wrong:
        raise Violation(f"journal states differ from the model's (model, journal, error): {wrong}")
