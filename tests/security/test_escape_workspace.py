"""The workspace as a way out: symlinks an action leaves for the daemon's snapshot, restore and
undo to follow, the workspace path swapped for a symlink between session open and action, and
the workspace's own .git (whose hooks the user's host git would run).

The victims are host files and dirs outside the workspace, owned by the daemon's user (so a
daemon that followed a link would have the permission to harm them: only not following protects
them), each with a canary whose survival the test checks."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.security.conftest import (
    Shared,
    close_session,
    make_workspace,
    result_of,
    run_action,
    sec_session,
)
from tests.security.probes import tag

SEC_BACKENDS = ("bwrap", "container")  # its escape attempts apply to any sandbox: run against both


class Victim(NamedTuple):
    dir: Path
    file: Path  # dir/canary, "canary\n"

    def intact(self) -> bool:
        names = sorted(p.name for p in self.dir.iterdir())
        return names == ["canary"] and self.file.read_text() == "canary\n"


@pytest.fixture
def victim(sec_daemon: DaemonProcess) -> Iterator[Victim]:
    d = Path("/var/lib") / tag()
    d.mkdir(mode=0o755)
    f = d / "canary"
    f.write_text("canary\n")
    for p in (d, f):
        os.chown(p, sec_daemon.uid, sec_daemon.gid)
    yield Victim(d, f)
    shutil.rmtree(d, ignore_errors=True)


def undo(d: DaemonProcess, session: str, action_id: str) -> None:
    d.actions.UndoAction(apb.UndoActionRequest(session_id=session, action_id=action_id), timeout=60)


def act_and_undo(s: Shared, script: str) -> None:
    """Run `script` (it must succeed), then undo it."""
    action = run_action(s.d, s.session, script)
    assert result_of(action).code == 0, result_of(action)
    undo(s.d, s.session, action.id)


def prepared(s: Shared, files: dict[str, str]) -> str:
    """A fresh dir in the shared workspace holding `files` (relative path -> text), the daemon's user's."""
    t = tag()
    for rel, text in files.items():
        p = s.ws / t / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for p in [s.ws / t, *(s.ws / t).rglob("*")]:
        os.chown(p, s.d.uid, s.d.gid)
    return t


def test_undo_does_not_write_through_a_file_symlink(sec_shared: Shared, victim: Victim) -> None:
    t = prepared(sec_shared, {"f": "hello\n"})
    act_and_undo(sec_shared, f"rm {t}/f && ln -s {victim.file} {t}/f")
    assert victim.intact(), f"undo wrote through a symlink into {victim.file}: {victim.file.read_text()!r}"
    f = sec_shared.ws / t / "f"
    assert not f.is_symlink() and f.read_text() == "hello\n"


def test_undo_does_not_restore_into_a_directory_symlink(sec_shared: Shared, victim: Victim) -> None:
    t = prepared(sec_shared, {"sub/c.txt": "sea\n", "sub/canary": "mine\n"})
    act_and_undo(sec_shared, f"rm -r {t}/sub && ln -s {victim.dir} {t}/sub")
    assert victim.intact(), f"undo restored into {victim.dir}: {sorted(os.listdir(victim.dir))}"
    sub = sec_shared.ws / t / "sub"
    assert not sub.is_symlink() and (sub / "c.txt").read_text() == "sea\n"


def test_undo_removes_a_symlink_not_what_it_points_to(sec_shared: Shared, victim: Victim) -> None:
    t = prepared(sec_shared, {"keep": "k\n"})
    act_and_undo(
        sec_shared, f"ln -s {victim.dir} {t}/evil-dir && ln -s {victim.file} {t}/evil-file && ln -s / {t}/evil-root"
    )
    assert victim.intact()
    assert sorted(p.name for p in (sec_shared.ws / t).iterdir()) == ["keep"]


def test_undo_does_not_follow_a_symlinked_parent(sec_shared: Shared, victim: Victim) -> None:
    """A deep path whose parent became a symlink: restoring a/b/file must not go through it."""
    t = prepared(sec_shared, {"a/b/file": "deep\n"})
    act_and_undo(sec_shared, f"mv {t}/a {t}/a.moved && mkdir {t}/a && ln -s {victim.dir} {t}/a/b")
    assert victim.intact(), sorted(os.listdir(victim.dir))
    assert (sec_shared.ws / t / "a" / "b" / "file").read_text() == "deep\n"
    assert not (sec_shared.ws / t / "a" / "b").is_symlink()


def test_the_workspace_swapped_for_a_symlink_after_session_open(sec_daemon: DaemonProcess, victim: Victim) -> None:
    """Between CreateSession and the action, the workspace dir is renamed away and a symlink to
    another dir (of the daemon's user) put in its place: the action must not run there, and no
    undo may touch it."""
    d = sec_daemon
    with make_workspace(d.uid, d.gid) as ws:
        session = sec_session(d, ws)
        moved = ws.with_name("ws.moved")
        ws.rename(moved)
        ws.symlink_to(victim.dir)
        try:
            action = run_action(d, session, "echo pwned > pwned; rm -f canary; ls")
            if action.state == pb.ACTION_STATE_EXECUTED:
                undo(d, session, action.id)
            assert victim.intact(), f"the action ran in the swapped-in dir: {sorted(os.listdir(victim.dir))}"
        finally:
            ws.unlink()
            moved.rename(ws)
            close_session(d, session)


def test_the_workspaces_git_dir_stays_read_only(sec_daemon: DaemonProcess) -> None:
    """A hook written into the workspace's .git would run as the user at their next git command."""
    d = sec_daemon
    with make_workspace(d.uid, d.gid) as ws:
        subprocess.run(["git", "init", "-q", str(ws)], check=True)
        subprocess.run(["chown", "-R", f"{d.uid}:{d.gid}", str(ws)], check=True)
        session = sec_session(d, ws)
        try:
            script = (
                "echo 'touch /tmp/pwned' > .git/hooks/post-checkout && echo WROTE-HOOK;"
                "chmod +x .git/hooks/pre-commit.sample && echo CHMOD-HOOK;"
                "printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' >> .git/config && echo WROTE-CONFIG;"
                "mv .git .git-away && mkdir -p .git/hooks && echo SWAPPED-GIT;"
                "rm -rf .git/hooks && echo REMOVED-HOOKS; true"
            )
            r = result_of(run_action(d, session, script))
            for word in ("WROTE-HOOK", "CHMOD-HOOK", "WROTE-CONFIG", "SWAPPED-GIT", "REMOVED-HOOKS"):
                assert word not in r.out, f"{word}:\n{r}"
            assert not (ws / ".git" / "hooks" / "post-checkout").exists()
            assert "fsmonitor" not in (ws / ".git" / "config").read_text()
        finally:
            close_session(d, session)
