"""A nested repository's .git is snapshotted like any other directory (issue 14), against a real goexd
run as root and as an unprivileged user, in both isolation modes (overlay and direct), with real git
run by the action inside bwrap.

An agent may commit in a vendored repository; its undo takes the repository's .git back byte for
byte. A repository an action plants below the top is flagged for the reviewer (a .git/config can
name an fsmonitor or hooks path: code the person's git would run) and removed by its undo. One at
the workspace's top, where the workspace had none, is never applied. The person's edits are made
from here, outside the sandbox, as the workspace's owner would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from goexd.snapshots.layout import ESCAPE
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of
from tests.e2e.test_undo_three_way import set_asides, undo
from tests.fs_fingerprint import describe_diff, fingerprint, tree_digest
from tests.security.conftest import make_workspace, run_action, sec_session, start_daemon

ISOLATION = {"overlay": "", "direct": '[fs]\nisolation = "direct"\n'}
GIT = "git -c user.name=agent -c user.email=agent@example.com"


@pytest.fixture(
    scope="module",
    params=[("root", "overlay"), ("user", "overlay"), ("root", "direct"), ("user", "direct")],
    ids="-".join,
)
def d(request: pytest.FixtureRequest) -> Iterator[DaemonProcess]:
    mode, isolation = request.param
    with start_daemon(mode, ISOLATION[isolation]) as daemon:
        yield daemon


@pytest.fixture
def ws(d: DaemonProcess) -> Iterator[Path]:
    with make_workspace(d.uid, d.gid) as w:
        yield w


def as_owner(d: DaemonProcess, *cmd: str, cwd: Path) -> str:
    """Run a command as the workspace's owner would, outside the sandbox."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, HOME="/tmp")
    user = {} if os.geteuid() == d.uid else {"user": d.uid, "group": d.gid, "extra_groups": []}
    done = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, check=False, **user)  # type: ignore[call-overload]
    assert done.returncode == 0, done.stderr
    return str(done.stdout)


def person_git(d: DaemonProcess, repo: Path, *args: str) -> str:
    return as_owner(d, "git", "-c", "user.name=me", "-c", "user.email=me@example.com", *args, cwd=repo)


def nested_repo(d: DaemonProcess, ws: Path) -> Path:
    repo = ws / "vendor" / "lib"
    as_owner(d, "mkdir", "-p", str(repo), cwd=ws)
    as_owner(d, "sh", "-c", "echo v1 > code.py", cwd=repo)
    person_git(d, repo, "init", "-q")
    person_git(d, repo, "add", "code.py")
    person_git(d, repo, "commit", "-qm", "one")
    as_owner(d, "sh", "-c", "echo v2 > code.py", cwd=repo)
    person_git(d, repo, "commit", "-qam", "two")
    return repo


def repo_state(d: DaemonProcess, repo: Path) -> tuple[str, ...]:
    return (
        person_git(d, repo, "log", "--format=%H %s"),
        person_git(d, repo, "show-ref"),
        person_git(d, repo, "ls-files", "--stage"),
        tree_digest(repo / ".git"),
    )


def test_a_commit_in_a_nested_repository_is_undone_byte_exact(d: DaemonProcess, ws: Path) -> None:
    repo = nested_repo(d, ws)
    before, at_pre = repo_state(d, repo), fingerprint(ws)
    s = sec_session(d, ws)
    a = run_action(d, s, f"cd vendor/lib && echo agent > code.py && {GIT} commit -qam 'by the agent' && {GIT} gc -q")
    assert a.state == pb.ACTION_STATE_EXECUTED, a.exec.stderr
    assert person_git(d, repo, "log", "-1", "--format=%s") == "by the agent\n"  # applied, in either mode
    flagged = [c for c in a.changes.changes if c.path.startswith("vendor/lib/.git/")]
    assert flagged and all(c.runs_code for c in flagged)
    assert any("vendor/lib/.git/" in w and "run code later" in w for w in a.changes.warnings)
    diff = d.actions.GetDiff(apb.GetDiffRequest(action_id=a.id), timeout=60)
    shown = {f.path: f for f in diff.files}
    assert b"+agent" in shown["vendor/lib/code.py"].patch
    assert b"by the agent" in shown["vendor/lib/.git/logs/HEAD"].patch  # the .git's own files, by their names

    undone = undo(d, s)
    assert [u.state for u in undone] == [pb.ACTION_STATE_UNDONE]
    assert undone[0].reversibility.verdict == pb.VERDICT_PASSED
    assert repo_state(d, repo) == before
    actual = fingerprint(ws)
    assert actual == at_pre, describe_diff(at_pre, actual)
    person_git(d, repo, "fsck", "--strict", "--no-dangling")


def test_a_planted_repository_with_an_fsmonitor_is_flagged_and_removed_by_undo(d: DaemonProcess, ws: Path) -> None:
    s = sec_session(d, ws)
    a = run_action(
        d, s, "mkdir sub && cd sub && git init -q && git config core.fsmonitor 'touch /tmp/pwned' && echo x > f"
    )
    assert a.state == pb.ACTION_STATE_EXECUTED, a.exec.stderr
    assert "fsmonitor" in (ws / "sub" / ".git" / "config").read_text()  # there, for the reviewer to see
    flagged = {c.path: c.runs_code for c in a.changes.changes}
    assert flagged["sub/.git/config"] is True and flagged["sub/f"] is False
    assert any("sub/.git/config" in w for w in a.changes.warnings)
    undone = undo(d, s)
    assert undone[0].state == pb.ACTION_STATE_UNDONE
    assert not (ws / "sub").exists()


def test_a_persons_edit_to_a_nested_config_makes_the_undo_conflict(d: DaemonProcess, ws: Path) -> None:
    repo = nested_repo(d, ws)
    config = repo / ".git" / "config"
    original = config.read_bytes()
    s = sec_session(d, ws)
    a = run_action(d, s, "cd vendor/lib && git config user.name 'the agent'")
    assert a.state == pb.ACTION_STATE_EXECUTED, a.exec.stderr
    person_git(d, repo, "config", "alias.st", "status")  # the person, after the action
    mine = config.read_bytes()
    code, msg = status_of(lambda: undo(d, s))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "vendor/lib/.git/config" in msg
    assert config.read_bytes() == mine  # nothing written
    undone = undo(d, s, force=True)
    assert undone[0].state == pb.ACTION_STATE_UNDONE
    assert config.read_bytes() == original
    kept = set_asides(d, s)
    assert [list(k.paths) for k in kept] == [["vendor/lib/.git/config"]]
    d.actions.RestoreSetAside(apb.RestoreSetAsideRequest(session_id=s, set_aside_id=kept[0].id), timeout=60)
    assert config.read_bytes() == mine


def test_a_repository_at_the_top_where_there_was_none_is_never_applied(d: DaemonProcess, ws: Path) -> None:
    s = sec_session(d, ws)
    # Read-only inside, as git's own objects are: removed all the same (direct isolation).
    plant = "git init -q && git config core.fsmonitor 'touch /tmp/pwned' && chmod -R a-w .git; echo ok > made.txt"
    a = run_action(d, s, plant)
    assert a.state == pb.ACTION_STATE_EXECUTED, a.exec.stderr
    assert not (ws / ".git").exists() and (ws / "made.txt").read_text() == "ok\n"
    assert any(w.startswith("not applied: .git") for w in a.changes.warnings)
    assert all(not c.path.startswith(".git") for c in a.changes.changes)
    undo(d, s)
    assert not (ws / ".git").exists() and not (ws / "made.txt").exists()


def test_names_git_refuses_and_the_escape_prefix_round_trip(d: DaemonProcess, ws: Path) -> None:
    as_owner(d, "sh", "-c", f"mkdir .GIT && echo mine > .GIT/x && echo mine > '{ESCAPE}.git'", cwd=ws)
    at_pre = fingerprint(ws)
    s = sec_session(d, ws)
    script = f"echo agent > .GIT/x; mkdir -p 'd/.Git.' && echo y > 'd/.Git./y'; echo z > git~1; echo a > '{ESCAPE}.git'"
    a = run_action(d, s, script)
    assert a.state == pb.ACTION_STATE_EXECUTED, a.exec.stderr
    assert sorted(c.path for c in a.changes.changes) == sorted([".GIT/x", "d/.Git./y", "git~1", f"{ESCAPE}.git"])
    assert (ws / ".GIT" / "x").read_text() == "agent\n"
    undo(d, s)
    actual = fingerprint(ws)
    assert actual == at_pre, describe_diff(at_pre, actual)


def test_the_workspaces_own_git_stays_read_only_and_out_of_snapshots(d: DaemonProcess, ws: Path) -> None:
    person_git(d, ws, "init", "-q")
    person_git(d, ws, "add", "README")
    person_git(d, ws, "commit", "-qm", "mine")
    before = tree_digest(ws / ".git")
    s = sec_session(d, ws)
    a = run_action(d, s, "echo x >> .git/config; git commit -q --allow-empty -m agent; echo done > made.txt")
    assert a.state == pb.ACTION_STATE_EXECUTED
    assert tree_digest(ws / ".git") == before
    assert [c.path for c in a.changes.changes] == ["made.txt"]
    shutil.rmtree(ws / ".git")  # not part of any snapshot: its removal is no change of the action's to undo
    assert undo(d, s)[0].state == pb.ACTION_STATE_UNDONE
    assert not (ws / ".git").exists() and not (ws / "made.txt").exists()
