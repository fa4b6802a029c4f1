"""The file inverse strategy on real bwrap and overlayfs: the corpus of (action, right inverse, wrong
inverse) cases tried on an overlay of the workspace, then actions undone for real by their inverse.

Every trial must leave the workspace exactly as it was (fingerprint before and after).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from goexd.domain.errors import FailedPrecondition
from goexd.domain.models import ActionKind, ActionSpec, Resource, ResourceKind, UndoStrategy, Verdict
from goexd.domain.sandbox import Limits
from goexd.resources.fs.inverse import FsInverseResource
from goexd.resources.fs.trial import try_pair
from goexd.resources.fs.versioned import FORCED, FsVersionedResource
from goexd.sandbox.bwrap import BwrapSandbox
from goexd.snapshots.git_store import GitWorkspaceStore
from tests.corpus import fs_cases
from tests.fs_fingerprint import fingerprint

CASES = fs_cases.load()
LIMITS = Limits(timeout_s=30)


def sh(script: str) -> ActionSpec:
    return ActionSpec(ActionKind.SHELL, argv=("sh", "-c", script))


def _open(
    tmp: Path, strategy: UndoStrategy, overlays: bool = True, sandbox: BwrapSandbox | None = None
) -> tuple[FsVersionedResource, Path]:
    """`sandbox`: the suite's, as goexd sets it up (a root one mounts the trials' overlays itself)."""
    ws = tmp / "ws"
    ws.mkdir(parents=True)
    fs_cases.seed(ws)
    store = GitWorkspaceStore(tmp / "store.git", ws)
    store.capture()
    resource = Resource("fs", ResourceKind.FS, str(ws), strategy)
    overlays_dir = tmp / "overlays"
    overlays_dir.mkdir()
    cls = FsInverseResource if strategy is UndoStrategy.INVERSE else FsVersionedResource
    sb = sandbox if sandbox is not None else BwrapSandbox()
    manager = cls(resource, store, sb, [tmp / "store.git"], overlays_dir=overlays_dir if overlays else None)
    return manager, ws


def _gone(overlays: Path) -> bool:
    """Whether the trials' dirs have gone within 10 s."""
    deadline = time.monotonic() + 10
    while any(overlays.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(overlays.iterdir())


@pytest.fixture
def inverse_fs(tmp_path: Path, sandbox: BwrapSandbox) -> Iterator[tuple[FsInverseResource, Path]]:
    manager, ws = _open(tmp_path, UndoStrategy.INVERSE, sandbox=sandbox)
    assert isinstance(manager, FsInverseResource)
    yield manager, ws
    manager.close()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_right_inverse_passes_and_wrong_one_fails(
    inverse_fs: tuple[FsInverseResource, Path], case: fs_cases.FsCase
) -> None:
    manager, ws = inverse_fs
    before = fingerprint(ws)
    right = manager.test(case.spec(case.action), case.spec(case.right), LIMITS, None)
    assert right.verdict is Verdict.PASSED, right.detail
    assert fingerprint(ws) == before
    wrong = manager.test(case.spec(case.action), case.spec(case.wrong), LIMITS, None)
    assert wrong.verdict is Verdict.FAILED, wrong.detail
    assert case.wrong_diff in wrong.detail, wrong.detail
    assert fingerprint(ws) == before  # the real workspace is untouched
    assert _gone(ws.parent / "overlays")  # nor is anything of the trial left (removed in the background)


UNKNOWN = fs_cases.load_unknown()


@pytest.mark.parametrize("case", UNKNOWN, ids=[c.name for c in UNKNOWN])
def test_corpus_pairs_that_cannot_be_tried_are_unknown(
    inverse_fs: tuple[FsInverseResource, Path], case: fs_cases.UnknownCase
) -> None:
    manager, ws = inverse_fs
    before = fingerprint(ws)
    got = manager.test(case.spec(case.action), case.spec(case.right), Limits(timeout_s=case.timeout_s), None)
    assert got.verdict is Verdict.UNKNOWN and case.why in got.detail, got.detail
    assert fingerprint(ws) == before


def test_a_failing_inverse_fails_the_trial(inverse_fs: tuple[FsInverseResource, Path]) -> None:
    manager, _ = inverse_fs
    got = manager.test(sh("echo x > n"), sh("rm n && exit 3"), LIMITS, None)
    assert got.verdict is Verdict.FAILED and "exit 3" in got.detail, got.detail


def test_no_inverse_passes_only_for_an_action_that_changes_nothing(
    inverse_fs: tuple[FsInverseResource, Path],
) -> None:
    manager, _ = inverse_fs
    reads = manager.test(sh("cat a.txt > /dev/null"), None, LIMITS, None)
    assert reads.verdict is Verdict.PASSED and reads.reversibility_class.value == "read_only", reads.detail
    writes = manager.test(sh("echo x > n"), None, LIMITS, None)
    assert writes.verdict is Verdict.FAILED and "has no inverse" in writes.detail, writes.detail


def test_a_trial_that_cannot_run_is_unknown_never_passed(tmp_path: Path) -> None:
    manager, ws = _open(tmp_path, UndoStrategy.INVERSE, overlays=False)
    got = manager.test(sh("echo x > n"), sh("rm n"), LIMITS, None)
    assert got.verdict is Verdict.UNKNOWN and "no overlay" in got.detail, got.detail
    manager2, _ = _open(tmp_path / "two", UndoStrategy.INVERSE)
    slow = manager2.test(sh("sleep 5"), sh("true"), Limits(timeout_s=0.5), None)
    assert slow.verdict is Verdict.UNKNOWN and "did not finish" in slow.detail, slow.detail
    assert not (ws / "n").exists()


def test_the_versioned_strategy_tries_pairs_too(tmp_path: Path, sandbox: BwrapSandbox) -> None:
    manager, ws = _open(tmp_path, UndoStrategy.VERSIONED, sandbox=sandbox)
    before = fingerprint(ws)
    site = manager.trial_site()
    ok = try_pair(site, sh("chmod 600 a.txt"), sh("chmod 644 a.txt"), LIMITS, None, without_inverse="unknown")
    assert ok.reversibility.verdict is Verdict.PASSED, ok.reversibility.detail
    bad = try_pair(site, sh("chmod 600 a.txt"), sh("true"), LIMITS, None, without_inverse="unknown")
    assert bad.reversibility.verdict is Verdict.FAILED, bad.reversibility.detail
    alone = try_pair(site, sh("echo x > n"), None, LIMITS, None, without_inverse="unknown")
    assert alone.reversibility.verdict is Verdict.UNKNOWN and "n" in alone.reversibility.detail
    assert fingerprint(ws) == before


def _run(manager: FsInverseResource, action_id: str, spec: ActionSpec, inverse: ActionSpec) -> dict[str, str]:
    cp = manager.checkpoint(action_id, inverse)
    out = manager.execute(spec, LIMITS, cp, None, threading.Event())
    assert out.exec is not None and out.exec.exit_code == 0, out
    return {**cp, **out.checkpoint_extra}


def test_undo_runs_the_inverse_and_verifies(inverse_fs: tuple[FsInverseResource, Path]) -> None:
    manager, ws = inverse_fs
    before = fingerprint(ws)
    cp = _run(
        manager, "act_1", sh("echo more >> b.txt && chmod 600 b.txt"), sh("sed -i '$ d' b.txt && chmod 644 b.txt")
    )
    assert (ws / "b.txt").read_text() == "beta\nmore\n"
    report = manager.rollback("act_1", cp)
    assert report.verified, report.detail
    assert "match the pre-action state" in report.detail
    assert fingerprint(ws) == before
    again = manager.rollback("act_1", cp)  # retried (a crash before the journal's record): not run again
    assert again.verified and "not again" in again.detail, again.detail
    assert fingerprint(ws) == before


def test_undo_that_does_not_restore_is_not_verified_and_keeps_the_pre_action_version(
    inverse_fs: tuple[FsInverseResource, Path],
) -> None:
    manager, ws = inverse_fs
    cp = _run(manager, "act_2", sh("chmod 600 a.txt"), sh("chmod 640 a.txt"))
    report = manager.rollback("act_2", cp)
    assert not report.verified and "a.txt: mode 0640 where 0644 was" in report.detail, report.detail
    (kept,) = [k for k in manager.set_asides() if "did not restore" in k.reason]
    manager.restore_set_aside(kept.id)
    assert (ws / "a.txt").stat().st_mode & 0o777 == 0o644


def test_undo_refuses_when_the_paths_changed_since_unless_forced(inverse_fs: tuple[FsInverseResource, Path]) -> None:
    manager, ws = inverse_fs
    cp = _run(manager, "act_3", sh("echo new > n.txt"), sh("rm n.txt"))
    (ws / "n.txt").write_text("the person's edit\n")
    with pytest.raises(FailedPrecondition, match="changed since it ran"):
        manager.rollback("act_3", cp)
    assert (ws / "n.txt").read_text() == "the person's edit\n"
    report = manager.rollback_overwriting("act_3", cp)
    assert report.verified and "set aside your version of n.txt" in report.detail, report.detail
    (kept,) = [k for k in manager.set_asides() if "overwritten by a forced undo" in k.reason]
    manager.restore_set_aside(kept.id)
    assert (ws / "n.txt").read_text() == "the person's edit\n"


def test_a_failing_inverse_changes_nothing_and_the_action_stays(inverse_fs: tuple[FsInverseResource, Path]) -> None:
    manager, ws = inverse_fs
    cp = _run(manager, "act_4", sh("echo new > n.txt"), sh("rm n.txt && echo oops >&2 && exit 2"))
    after = fingerprint(ws)
    with pytest.raises(FailedPrecondition, match=r"inverse failed \(exit 2: oops"):
        manager.rollback("act_4", cp)
    assert fingerprint(ws) == after


def test_an_incomplete_action_is_rolled_back_from_snapshots_not_by_its_inverse(
    inverse_fs: tuple[FsInverseResource, Path],
) -> None:
    manager, ws = inverse_fs
    before = fingerprint(ws)
    cp = manager.checkpoint("act_5", sh("echo inverse-ran > marker"))
    out = manager.execute(sh("echo x > n.txt; sleep 5"), Limits(timeout_s=0.5), cp, None, threading.Event())
    assert out.exec is not None and out.exec.termination.value == "timeout"
    report = manager.rollback("act_5", {**cp, **out.checkpoint_extra})
    assert report.verified, report.detail
    assert fingerprint(ws) == before  # no marker: the inverse did not run


def test_undo_in_direct_mode(tmp_path: Path) -> None:
    manager, ws = _open(tmp_path, UndoStrategy.INVERSE, overlays=False)
    assert isinstance(manager, FsInverseResource)
    before = fingerprint(ws)
    cp = _run(manager, "act_6", sh("ln -sfn b.txt link"), sh("ln -sfn a.txt link"))
    report = manager.rollback("act_6", cp)
    assert report.verified, report.detail
    assert fingerprint(ws) == before


def test_an_inverse_that_would_overwrite_an_edit_made_since_is_refused_unless_forced(
    inverse_fs: tuple[FsInverseResource, Path],
) -> None:
    manager, ws = inverse_fs
    cp = _run(manager, "act_7", sh("echo new > n.txt"), sh("rm -rf n.txt build"))
    (ws / "build").mkdir()
    (ws / "build" / "out").write_text("the person's build\n")  # made after the action; the inverse removes it
    after = fingerprint(ws)
    with pytest.raises(FailedPrecondition, match=r"inverse would overwrite what changed since the action.*build"):
        manager.rollback("act_7", cp)
    assert fingerprint(ws) == after  # nothing was changed
    report = manager.rollback_overwriting("act_7", cp)
    assert not (ws / "build").exists() and not (ws / "n.txt").exists()
    (kept,) = [k for k in manager.set_asides() if k.reason == FORCED and list(k.paths) == ["build/out"]]
    manager.restore_set_aside(kept.id)
    assert (ws / "build" / "out").read_text() == "the person's build\n", report.detail


def test_describe_tells_a_planner_that_actions_give_their_inverse(inverse_fs: tuple[FsInverseResource, Path]) -> None:
    manager, _ = inverse_fs
    head, *files = manager.describe().splitlines()
    assert "strategy inverse" in head and "  a.txt" in files
