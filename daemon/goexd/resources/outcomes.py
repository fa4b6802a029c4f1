"""Outcome markers: how the inverse strategy settles, from the database itself, what a crash left in doubt.

An action of the inverse strategy commits at once, in the database, before the journal records
it as EXECUTED; its undo commits the inverse before the journal records UNDONE. A crash in
between leaves the journal behind the database. So each of those transactions also writes a
marker row, `goex_outcomes(action_id, step)`, step "action" or "undo": the row is there exactly
when the transaction committed. At a restart (or when the connection is lost during a COMMIT)
the marker tells:

- an action the journal has as RUNNING: marker "action" -> the database kept all of it; it is
  EXECUTED (pending again, undoable by its inverse); no marker -> its transaction was rolled back.
- an undo the journal had started: marker "undo" -> the inverse committed; it is not run again
  (UNDONE); no marker -> the inverse did not commit, and runs (once).

Statements a transaction cannot hold (SQLite's VACUUM, PostgreSQL's CREATE INDEX CONCURRENTLY or
nextval(), ...) run one by one in autocommit: there the step also writes "<step>-begun" in a
commit of its own before its first statement, and "<step>" after its last. A "-begun" without its
end means some of the statements may have taken effect: when the fingerprint shows the state
before (or, for an undo, the pre-action state) that settles it; otherwise the outcome is
UNKNOWN and said so (the action INTERRUPTED with the reason; the undo refused), never guessed.

The markers of an action are dropped once the journal has recorded its end (committed, undone),
and at each session's opening those of actions the journal has settled (a crash between the two).
Markers of actions this journal does not know (another goexd on the same database) are left alone.

The table lives in the user's database: the SQLite file's main schema, or the PostgreSQL
schema first on the connection's search_path (current_schema()) when the session opens, created
there by goexd when missing. goex's describe and fingerprints leave it out (dbinspect/hidden.py);
the user's own catalog queries see it. A database where goexd cannot create it, or the role may
not SELECT, INSERT and DELETE on it, is refused for the inverse strategy at session open, naming
the statement an owner can run: without the markers a crash could leave the journal wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from goexd.dbinspect.hidden import OUTCOMES_TABLE
from goexd.domain.errors import FailedPrecondition
from goexd.domain.resource import Checkpoint, InDoubt, Resolution, RollbackReport

ACTION = "action"
UNDO = "undo"
MARKER_KEY = "marker"  # checkpoint key: the action's markers are kept under this id (absent: none are)
TABLE = OUTCOMES_TABLE
# For people who find the table: SQLite keeps this text in sqlite_master, PostgreSQL as its comment.
PURPOSE = (
    "goex: which steps of goexd's actions committed, to settle them after a crash; "
    "rows go once an action is resolved. Drop it only while no goexd session holds this database"
)


def begun(step: str) -> str:
    return f"{step}-begun"


@dataclass(frozen=True)
class Look:
    """What the database shows of one action: its markers, and its fingerprint digest now (read on demand)."""

    steps: Collection[str]
    digest: Callable[[], str]


def resolve_running(checkpoint: Checkpoint, look: Look) -> InDoubt:
    """An action the journal has as RUNNING: whether the database kept it (see the module's doc)."""
    if MARKER_KEY not in checkpoint:  # an action that only reads, or one run before markers existed
        return InDoubt(Resolution.ROLL_BACK)
    if ACTION in look.steps:
        return InDoubt(
            Resolution.EXECUTED,
            "the database had committed the action before goexd stopped (its outcome marker is there); "
            "it is pending again, undoable by its inverse (its result rows were lost)",
            {"post": look.digest()},
        )
    if begun(ACTION) not in look.steps:
        return InDoubt(Resolution.ROLL_BACK, "the database had not committed it (no outcome marker)")
    if look.digest() == checkpoint.get("pre"):
        return InDoubt(Resolution.ROLL_BACK, "none of its statements had changed the database")
    return InDoubt(
        Resolution.UNKNOWN,
        "goexd stopped while the action ran statements that run outside a transaction; some of them took "
        "effect, and which is unknown: check the data (its inverse, meant for the whole action, was not run)",
    )


def undone_already(checkpoint: Checkpoint, look: Look) -> RollbackReport | None:
    """Before running an inverse: the report when an earlier undo got it into the database already; None: run it.

    Raises FailedPrecondition when an earlier undo ran part of an inverse outside a transaction and
    the database matches neither side: running it again could apply its first statements twice."""
    if UNDO in look.steps:
        why = "the inverse had committed in an earlier undo that goexd did not get to record; it was not run again"
        return _compared(why, look.digest(), checkpoint)
    if begun(UNDO) not in look.steps:
        return None
    now = look.digest()
    if now == checkpoint["pre"]:
        return _compared("an earlier, interrupted undo had run the inverse; it was not run again", now, checkpoint)
    if now == checkpoint["post"]:
        return None  # none of its statements had changed anything: running it now runs it once
    raise FailedPrecondition(
        "an earlier undo was interrupted while the inverse ran statements that run outside a transaction; "
        "the database matches neither the action's result nor its pre-action state, so which of them took "
        "effect is unknown: check the data; the inverse is not run again"
    )


def _compared(why: str, now: str, checkpoint: Checkpoint) -> RollbackReport:
    if now == checkpoint["pre"]:
        return RollbackReport(verified=True, detail=f"{why}; the database matches its pre-action state")
    return RollbackReport(verified=False, detail=f"{why}; the database differs from its pre-action state")
