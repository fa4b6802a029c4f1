"""What stopping goexd interrupts, said before it stops (issue 19: "restart loses pending SQL silently").

Two kinds of actions do not outlive goexd: those running (cancelled at the end of the shutdown grace,
rolled back, INTERRUPTED), and those pending in a `transaction`-strategy database, whose one open
transaction goes with goexd's connection (marked INTERRUPTED at the next start). Every other pending
action (workspaces, the inverse and clone strategies, http) stays pending across a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from goexd.domain.models import Action, ActionState, Resource, Session

RUNNING = "running"
PENDING_SQL = "pending sql (transaction strategy)"
_WHY = {
    RUNNING: "cancelled and rolled back",
    PENDING_SQL: "its database transaction cannot outlive goexd: rolled back, marked interrupted at the next start",
}


@dataclass(frozen=True)
class Interrupted:
    kind: str
    action_ids: tuple[str, ...]
    why: str


def interrupted_by_stop(
    running: Iterable[str],
    pending: Sequence[Action],
    session_of: dict[str, Session | None],
    in_connection: Callable[[Resource], bool],
) -> list[Interrupted]:
    """What a stop now interrupts: the `running` action ids, and the `pending` (EXECUTED) actions on a resource
    whose pending work lives in goexd's connection (`in_connection`: the transaction strategy's databases;
    `session_of`: each pending action's session, for its resources)."""
    running_ids = tuple(sorted(running))
    in_transaction = []
    for a in pending:
        if a.state is not ActionState.EXECUTED or a.id in running_ids:
            continue
        session = session_of.get(a.session_id)
        resource = next((r for r in session.resources if r.name == a.resource), None) if session else None
        if resource is not None and in_connection(resource):
            in_transaction.append(a.id)
    out = []
    if running_ids:
        out.append(Interrupted(RUNNING, running_ids, _WHY[RUNNING]))
    if in_transaction:
        out.append(Interrupted(PENDING_SQL, tuple(in_transaction), _WHY[PENDING_SQL]))
    return out


def summary(found: Sequence[Interrupted]) -> str:
    """One line for the log and the Stop answer: '3 action(s) interrupted: 1 running (act_1: ...); ...'."""
    if not found:
        return "nothing is interrupted (no action running, none pending in a database transaction)"
    total = sum(len(i.action_ids) for i in found)
    parts = []
    for i in found:
        ids = ", ".join(i.action_ids[:5]) + (f" and {len(i.action_ids) - 5} more" if len(i.action_ids) > 5 else "")
        parts.append(f"{len(i.action_ids)} {i.kind} ({ids}): {i.why}")
    return f"{total} action(s) interrupted: " + "; ".join(parts)
