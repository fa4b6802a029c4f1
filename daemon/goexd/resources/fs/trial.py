"""A shell or python action and its inverse, tried on a throwaway copy-on-write copy of a workspace.

The trial mounts an overlay over the workspace (sandbox/overlay.py), exactly as an overlay run
does, and runs the action and then its inverse in the sandbox over the *same* upper dir: the
inverse sees the action's result, and neither writes the workspace. The state after each is
the workspace's snapshot before the trial plus the upper (snapshots/tree_edit.py), read from
the upper without reading the workspace; the trial compares the snapshot after the inverse
with the one before by id (every path, content, full mode, owner, symlink target and
directory, empty ones included) and, when they differ, names what differs. Then the upper goes.

Verdicts: passed (the two ids are equal), failed (they differ, or the inverse failed: the diff
or why), unknown (the pair could not be tried: no overlay here, the action needs the network,
a run did not finish, the action failed (a non-zero exit: nothing of its inverse was tried), the
action changes what snapshots do not hold (a FIFO, extended attributes); the detail says why).
Never "passed" for what was not compared.

A goexd killed during a trial leaves only the trial's dir among the overlay dirs, which the
next start removes (fs.clear_overlays): nothing of a trial ever reaches the workspace.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from goexd.domain.errors import InvalidArgument
from goexd.domain.models import ActionKind, ActionSpec, Reversibility, ReversibilityClass, Verdict
from goexd.domain.names import display_path
from goexd.domain.sandbox import ExecResult, Limits, Sandbox, SandboxSpec, Termination, WorkspaceOverlay
from goexd.domain.snapshots import ChangeKind, FileChange, Snapshot, SnapshotError
from goexd.resources.fs import links as fs_links
from goexd.resources.fs.discard import discard
from goexd.snapshots.git_store import GitWorkspaceStore
from goexd.snapshots.overlay_upper import not_compared

log = logging.getLogger(__name__)

TRIAL_PREFIX = "trial-"  # a trial's dir among the overlay dirs
DIFF_SHOWN = 20  # paths named in a failed verdict's diff
STDERR_SHOWN = 400
WHERE = "tried on an overlay of the workspace; the workspace was not touched"


@dataclass(frozen=True)
class TrialSite:
    """What a trial needs of an fs resource; `overlays` None: no overlay here (`why_not` says why)."""

    workspace: Path
    store: GitWorkspaceStore
    sandbox: Sandbox
    masked: tuple[Path, ...]
    overlays: Path | None
    why_not: str = ""


@dataclass(frozen=True)
class TrialResult:
    """A trial's verdict, and what the action alone changed (the paths involved), when it got that far."""

    reversibility: Reversibility
    action_changes: tuple[FileChange, ...] = ()


def argv_of(spec: ActionSpec, fld: str = "spec") -> list[str]:
    """The sandbox argv of a shell or python action; INVALID_ARGUMENT for other kinds."""
    if spec.kind is ActionKind.SHELL:
        if not spec.argv:
            raise InvalidArgument(f"{fld}.shell.argv", "empty command")
        return list(spec.argv)
    if spec.kind is ActionKind.PYTHON:
        return ["python3", "-c", spec.code]
    raise InvalidArgument(fld, f"{spec.kind.value} actions do not run on a file-system resource")


def unknown(why: str) -> Reversibility:
    return Reversibility(ReversibilityClass.BEST_EFFORT, Verdict.UNKNOWN, f"not tried: {why}")


def try_pair(
    site: TrialSite,
    spec: ActionSpec,
    inverse: ActionSpec | None,
    limits: Limits,
    cancel: threading.Event | None,
    *,
    without_inverse: str,
) -> TrialResult:
    """Action then inverse on an overlay of the workspace; compared with the snapshot before.

    `without_inverse`: what an action that changes something and has no inverse is told (the
    strategy's answer: failed for the inverse strategy, unknown for the versioned one)."""
    action_argv = argv_of(spec)
    inverse_argv = argv_of(inverse, "inverse") if inverse is not None else None
    if site.overlays is None:
        return TrialResult(unknown(f"no overlay of the workspace can be made here ({site.why_not})"))
    for what, s in (("action", spec), ("inverse", inverse)):
        if s is not None and s.egress is not None:
            return TrialResult(
                unknown(f"the {what} reaches the network, which cannot be tried without its side effects")
            )
    try:
        pre = site.store.capture()
    except SnapshotError as e:
        return TrialResult(unknown(f"the workspace cannot be snapshotted: {e}"))
    links = fs_links.groups_at(site.workspace, site.store.linked_paths())
    run_dir = site.overlays / f"{TRIAL_PREFIX}{uuid.uuid4().hex[:16]}"
    try:
        overlay = _make_overlay(run_dir, site.workspace)
        ran = _run(site, action_argv, spec, overlay, limits, cancel)
        if ran.termination is not Termination.EXITED:
            return TrialResult(unknown(f"the action did not finish in the trial ({_ended(ran)})"))
        privileged = os.geteuid() == 0
        mid, by_action = site.store.edit(pre, overlay.upper, privileged=privileged)
        involved = site.store.changes(pre, mid, limit=1 << 30).changes
        unheld = not_compared(overlay.upper, site.workspace, by_action.paths)
        if unheld:
            shown = ", ".join(display_path(u) for u in unheld[:DIFF_SHOWN])
            return TrialResult(
                unknown(
                    f"the action changes what goexd's snapshots do not hold ({shown}): goexd neither applies nor "
                    f"compares such changes ({WHERE})"
                ),
                involved,
            )
        if inverse_argv is None or inverse is None:
            if mid == pre:
                return TrialResult(_read_only(ran), ())
            return TrialResult(_no_inverse(without_inverse, involved), involved)
        if ran.exit_code != 0:  # a failed action tries nothing of its inverse: not a passed test of the pair
            return TrialResult(_action_failed(ran, involved), involved)
        _fresh_work(overlay)
        undo = _run(site, inverse_argv, inverse, overlay, limits, cancel)
        if undo.termination is not Termination.EXITED:
            return TrialResult(unknown(f"the inverse did not finish in the trial ({_ended(undo)})"), involved)
        post, upper = site.store.edit(pre, overlay.upper, privileged=privileged)
        verdict = _compared(site.store, pre, post, ran, undo, upper.skipped, len(involved), site.workspace)
        if verdict.verdict is Verdict.PASSED and links:
            verdict = _links_compared(site.store, links, pre, mid, post, verdict)
        return TrialResult(verdict, involved)
    except OSError as e:
        return TrialResult(unknown(f"the trial's overlay could not be made or read: {e}"))
    finally:
        # Off the caller's path (removing overlayfs' work dir takes ~10 ms); a kill leaves it to the next start.
        threading.Thread(target=_discard_quietly, args=(run_dir,), name="goexd-trial-discard", daemon=True).start()


def _discard_quietly(run_dir: Path) -> None:
    try:
        discard(run_dir)
    except OSError as e:
        log.warning("could not remove the trial dir %s (the next start does): %s", run_dir, e)


def _make_overlay(run_dir: Path, workspace: Path) -> WorkspaceOverlay:
    (run_dir / "work").mkdir(parents=True, mode=0o700)
    upper = run_dir / "upper"
    upper.mkdir(mode=0o700)
    # The merged root shows its upper's owner and mode: the workspace root's (as an overlay run's does).
    st = os.stat(workspace)
    if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        os.chown(upper, st.st_uid, st.st_gid)
    os.chmod(upper, stat.S_IMODE(st.st_mode))
    return WorkspaceOverlay(upper, run_dir / "work")


def _run(
    site: TrialSite,
    argv: list[str],
    spec: ActionSpec,
    overlay: WorkspaceOverlay,
    limits: Limits,
    cancel: threading.Event | None,
) -> ExecResult:
    """One run in the sandbox, confined as the real run is (same mounts, masks, limits; no network)."""
    return site.sandbox.run(sandbox_spec(site.workspace, site.masked, argv, spec, limits, overlay), cancel=cancel)


def sandbox_spec(
    workspace: Path,
    masked: Sequence[Path],
    argv: Sequence[str],
    spec: ActionSpec,
    limits: Limits,
    overlay: WorkspaceOverlay | None,
) -> SandboxSpec:
    """How a trial's command, or an inverse run for real, runs: as an action does, without network."""
    return SandboxSpec(
        argv=argv,
        workspace=workspace,
        workdir=spec.cwd,
        readonly_subpaths=(".git",),
        masked_paths=masked,
        env=spec.env,
        stdin=spec.stdin,
        limits=limits,
        overlay=overlay,
    )


def _fresh_work(overlay: WorkspaceOverlay) -> None:
    """Between the two runs over one upper: an empty work dir. Only overlayfs' scratch space is there, and a
    `volatile` mount leaves a marker in it that refuses a second mount (the kernel's docs: remove it where the
    upper is known intact, as here: the first run is over and nothing crashed)."""
    discard(overlay.work)
    overlay.work.mkdir(mode=0o700)


def _ended(result: ExecResult) -> str:
    return result.detail or result.termination.value


def _status(result: ExecResult) -> str:
    return f"exit {result.exit_code}" if result.exit_code is not None else _ended(result)


def _read_only(ran: ExecResult) -> Reversibility:
    return Reversibility(
        ReversibilityClass.READ_ONLY,
        Verdict.PASSED,
        f"the action changes nothing in the workspace ({_status(ran)}; {WHERE})",
    )


def _action_failed(ran: ExecResult, involved: Sequence[FileChange]) -> Reversibility:
    why = ran.stderr.decode(errors="replace").strip()[-STDERR_SHOWN:]
    return unknown(
        f"the action failed in the trial ({_status(ran)}{': ' + why if why else ''}), so the pair was not tried: a "
        f"failed action is no test of its inverse (it changed {len(involved)} path(s); {WHERE})"
    )


def _no_inverse(answer: str, involved: Sequence[FileChange]) -> Reversibility:
    listing = ", ".join(display_path(c.path) for c in involved[:DIFF_SHOWN])
    more = f" and {len(involved) - DIFF_SHOWN} more" if len(involved) > DIFF_SHOWN else ""
    changed = f"the action changes {len(involved)} path(s) ({listing}{more}) and has no inverse ({WHERE})"
    if answer == "failed":
        return Reversibility(
            ReversibilityClass.IRREVERSIBLE,
            Verdict.FAILED,
            f"{changed}; the inverse strategy undoes by an inverse: give one (goex run --inverse ...)",
        )
    return Reversibility(
        ReversibilityClass.REVERSIBLE,
        Verdict.UNKNOWN,
        f"no inverse to try: {changed}; this resource undoes from its snapshots, verified when it is undone",
    )


def _compared(
    store: GitWorkspaceStore,
    pre: Snapshot,
    post: Snapshot,
    ran: ExecResult,
    undo: ExecResult,
    skipped: Sequence[str],
    involved: int,
    workspace: Path,
) -> Reversibility:
    if undo.exit_code != 0:
        why = undo.stderr.decode(errors="replace").strip()[-STDERR_SHOWN:]
        return Reversibility(
            ReversibilityClass.IRREVERSIBLE,
            Verdict.FAILED,
            f"the inverse fails after the action ({_status(undo)}{': ' + why if why else ''}; {WHERE})",
        )
    if skipped:
        return Reversibility(
            ReversibilityClass.IRREVERSIBLE,
            Verdict.FAILED,
            f"action then inverse leave what a snapshot cannot hold: {', '.join(skipped[:DIFF_SHOWN])} ({WHERE})",
        )
    if post == pre:
        return Reversibility(
            ReversibilityClass.REVERSIBLE,
            Verdict.PASSED,
            f"action then inverse left the workspace as it was: {involved} path(s) the action changes, restored "
            f"(compared by content id: paths, contents, modes, owners, symlinks, and which files are hard links of "
            f"each other; action {_status(ran)}; {WHERE})",
        )
    return Reversibility(
        ReversibilityClass.IRREVERSIBLE,
        Verdict.FAILED,
        f"action then inverse did not restore the workspace ({WHERE}): "
        f"{diff_text(store, pre, post, workspace=workspace)}",
    )


def _links_compared(
    store: GitWorkspaceStore,
    links: fs_links.LinkGroups,
    pre: Snapshot,
    mid: Snapshot,
    post: Snapshot,
    ok: Reversibility,
) -> Reversibility:
    """Snapshot ids do not encode hard links. goexd applies each run's result by content, a written file as a new
    inode: a name of a multiply-linked file that the action's or the inverse's result writes or removes leaves its
    links (a mode change is applied in place)."""
    written = {
        c.path.rstrip("/")
        for old, new in ((pre, mid), (mid, post))
        for c in store.changes(old, new, limit=1 << 30).changes
        if c.kind is not ChangeKind.MODE_CHANGED
    }
    lost = fs_links.differences(links, fs_links.rewritten(links, written))
    if not lost:
        return ok
    shown = "; ".join(lost[:DIFF_SHOWN]) + (f"; and {len(lost) - DIFF_SHOWN} more" if len(lost) > DIFF_SHOWN else "")
    return Reversibility(
        ReversibilityClass.IRREVERSIBLE,
        Verdict.FAILED,
        f"action then inverse did not restore the workspace ({WHERE}): contents restored, but hard links lost: "
        f"{shown} (goexd applies a run's result by content, each file written as a new inode)",
    )


def _unheld(path: Path) -> str:
    """The kind of what is at `path` when snapshots do not hold it (a FIFO, socket or device), else ""."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return ""
    return "" if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode) else _kind(mode)


def diff_text(
    store: GitWorkspaceStore,
    want: Snapshot,
    got: Snapshot,
    paths: Sequence[str] | None = None,
    *,
    workspace: Path | None = None,
) -> str:
    """What differs between `want` and `got` (at `paths` only, when given), path by path, in words; `workspace`:
    where `want` is the workspace now, which names what a snapshot does not hold (a FIFO) that was there."""
    changes = store.changes(want, got, limit=1 << 30).changes
    if paths is not None:
        tops = set(paths)
        changes = tuple(c for c in changes if c.path.rstrip("/") in tops)
    shown = "; ".join(describe_change(c, workspace) for c in changes[:DIFF_SHOWN])
    more = f"; and {len(changes) - DIFF_SHOWN} more" if len(changes) > DIFF_SHOWN else ""
    return f"{len(changes)} path(s) differ: {shown}{more}"


def describe_change(c: FileChange, workspace: Path | None = None) -> str:
    """One difference, from the state wanted (old) to the state found (new)."""
    name = display_path(c.path)
    if c.kind is ChangeKind.ADDED:
        was = _unheld(workspace / c.path) if workspace is not None else ""
        if was:  # the wanted state is the workspace's, which has one there: not in its snapshot
            return f"{name}: a {_kind(c.new_mode)} where a {was} was"
        return f"{name}: left behind ({_kind(c.new_mode)}, should not exist)"
    if c.kind is ChangeKind.DELETED:
        return f"{name}: missing ({_kind(c.old_mode)} {_perm(c.old_mode)} expected)"
    if c.kind is ChangeKind.TYPE_CHANGED:
        return f"{name}: a {_kind(c.new_mode)} where a {_kind(c.old_mode)} was"
    if c.kind is ChangeKind.MODE_CHANGED:
        if stat.S_IMODE(c.old_mode) == stat.S_IMODE(c.new_mode):
            return f"{name}: owner differs (contents restored)"
        return f"{name}: mode {_perm(c.new_mode)} where {_perm(c.old_mode)} was (contents restored)"
    what = "target" if stat.S_ISLNK(c.new_mode) else "contents"
    mode = "" if c.old_mode == c.new_mode else f", and mode {_perm(c.new_mode)} where {_perm(c.old_mode)} was"
    return f"{name}: {what} differ{mode}"


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "file"


def _perm(mode: int) -> str:
    return f"{stat.S_IMODE(mode):04o}"
