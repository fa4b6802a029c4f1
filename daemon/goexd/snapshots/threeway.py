"""The three-way rule: take the workspace from `expected` to `target` only where it is still `expected`.

An undo takes back exactly one action: for each path the action changed (expected = the
state it left, target = the state before it), the path goes back if nobody changed it
since; a path somebody changed since is a *conflict*. Paths the action did not touch are
never written. The same rule applies an overlay run's result, finishes an interrupted undo
at restart, and brings back what an undo set aside.

Planning is pure (this module); git_store.revert() carries the plan out.
"""

from __future__ import annotations

from dataclasses import dataclass

from goexd.snapshots.layout import is_under, parent_of
from goexd.snapshots.treediff import DIR, Change, Entry


@dataclass(frozen=True)
class RevertPlan:
    apply: dict[str, Change]  # path -> (entry now, entry wanted): what to write
    conflicts: tuple[str, ...]  # changed since `expected` (with `force`: overwritten, the caller sets them aside)
    kept_dirs: tuple[str, ...]  # directories the revert would remove, left because they hold what was added since
    already: tuple[str, ...]  # already as wanted


def plan_revert(wanted: dict[str, Change], since: dict[str, Change], *, force: bool) -> RevertPlan:
    """`wanted`: path -> (expected entry, target entry), what the revert does where the workspace is
    still `expected`; `since`: path -> (expected entry, current entry), what changed after `expected`."""
    apply: dict[str, Change] = {}
    conflicts: list[str] = []
    already: list[str] = []
    for path, (exp, tgt) in wanted.items():
        gone = _parents_gone(path, since, wanted) if tgt is not None else []
        if gone:
            # A directory above it was removed (or replaced) since: putting the path back would make
            # it again. A conflict; forced, the directories come back as they were.
            conflicts.append(path)
            if force:
                apply[path] = (since[path][1] if path in since else exp, tgt)
                for parent in gone:
                    apply[parent] = (since[parent][1], since[parent][0])
                    if since[parent][1] is not None:  # what replaced the directory is overwritten too
                        conflicts.append(parent)
            continue
        if path not in since:
            apply[path] = (exp, tgt)
            continue
        now = since[path][1]
        if now == tgt:
            already.append(path)
            continue
        conflicts.append(path)
        if force:
            apply[path] = (now, tgt)
    # Directories the revert removes (or replaces by a file) whose content grew since: what was
    # added there is not the revert's to remove.
    removed = [p for p, (exp, tgt) in wanted.items() if _is_dir(exp) and not _is_dir(tgt) and p in apply]
    added_below = {q for q, (_, now) in since.items() if q not in wanted and now is not None}
    kept: list[str] = []
    for d in removed:
        extra = sorted(q for q in added_below if q != d and is_under(q, d))
        if not extra:
            continue
        if force:
            conflicts += extra
        elif wanted[d][1] is None:
            kept.append(d)
            del apply[d]
        else:  # it must become a file: what is below it would be lost
            conflicts += extra
    return RevertPlan(apply, tuple(sorted(set(conflicts))), tuple(sorted(kept)), tuple(sorted(already)))


def _parents_gone(path: str, since: dict[str, Change], wanted: dict[str, Change]) -> list[str]:
    """The directories above `path` that were directories at `expected` and are not now (those the
    revert itself makes again, being in `wanted`, aside)."""
    gone = []
    parent = parent_of(path)
    while parent:
        if parent in since and parent not in wanted and _is_dir(since[parent][0]) and not _is_dir(since[parent][1]):
            gone.append(parent)
        parent = parent_of(parent)
    return gone


def _is_dir(e: Entry | None) -> bool:
    return e is not None and e.kind == DIR
