"""Session open warns about workspace entries the action user cannot write (issue 19), through a real goexd:
as root (actions run as the workspace's owner) and as an unprivileged user; the warning is true (an action
cannot change what it names) and names nothing an action can change."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import shell
from tests.security.conftest import SEC_USER, _scratch_dir, make_workspace
from tests.users import ensure_system_user

STRANGER = 4242  # a uid no one on the host has: an unpacked tarball's


def _open(d: DaemonProcess, ws: Path) -> sepb.CreateSessionResponse:
    spec = pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws)))
    return d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec]), timeout=60)


def _tarball_tree(ws: Path, owner: int, group: int) -> None:
    """Entries of a stranger's, some writable all the same, in a workspace of `owner`'s."""
    (ws / "theirs").mkdir()
    for name, mode, gid in (("theirs/a.txt", 0o644, STRANGER), ("b.txt", 0o644, STRANGER)):
        (ws / name).write_text("x\n")
        os.chown(ws / name, STRANGER, gid)
        os.chmod(ws / name, mode)
    os.chown(ws / "theirs", STRANGER, STRANGER)
    for name, mode, gid in (("open.txt", 0o666, STRANGER), ("group.txt", 0o664, group)):  # writable anyway
        (ws / name).write_text("x\n")
        os.chown(ws / name, STRANGER, gid)
        os.chmod(ws / name, mode)
    (ws / "mine-ro.txt").write_text("x\n")  # read-only but the owner's: it can chmod it
    os.chown(ws / "mine-ro.txt", owner, group)
    os.chmod(ws / "mine-ro.txt", 0o444)
    os.symlink("b.txt", ws / "link")
    os.lchown(ws / "link", STRANGER, STRANGER)
    (ws / ".git").mkdir()  # the workspace's own repository: bound read-only anyway, not checked
    (ws / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    os.chown(ws / ".git" / "HEAD", STRANGER, STRANGER)
    for p in (ws, ws / ".git"):
        os.chown(p, owner, group)


def _check(d: DaemonProcess, ws: Path, expected: list[str], writable: str) -> None:
    opened = _open(d, ws)
    assert len(opened.warnings) == 1, opened.warnings
    said = opened.warnings[0]
    assert said.startswith(f"workspace {ws}: {len(expected)} entries the action user") and "cannot write" in said
    named = said.split("); actions")[0].rsplit(" (", 1)[1].split(", ")
    assert sorted(named) == expected, said
    # True: the action cannot change them (and still ends executed, as any command that fails does).
    for script in ("echo y >> b.txt", "rm -f theirs/a.txt", "touch theirs/new.txt"):
        failed = shell(d, opened.session.id, script)
        assert failed.exec.exit_code != 0, (script, failed.exec)
    assert (ws / "b.txt").read_text() == "x\n" and (ws / "theirs" / "a.txt").exists()
    ok = shell(d, opened.session.id, writable)
    assert ok.exec.exit_code == 0, ok.exec.stderr
    close = sepb.CloseSessionRequest(session_id=opened.session.id, mode=sepb.CLOSE_MODE_UNDO_ALL)
    d.sessions.CloseSession(close)


def test_root_goexd_warns_of_a_strangers_entries(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "f.txt").write_text("x\n")
    assert list(_open(shared_daemon, clean).warnings) == []
    ws = tmp_path / "ws"
    ws.mkdir()
    _tarball_tree(ws, 0, 0)  # a root daemon runs a root-owned workspace's actions as uid 0, without capabilities
    _check(
        shared_daemon,
        ws,
        ["b.txt", "theirs", "theirs/a.txt"],  # open.txt (o+w) and group.txt (g+w, its group) are writable
        "echo y > open.txt && echo y > group.txt && chmod u+w mine-ro.txt",
    )


def test_unprivileged_goexd_warns_of_a_strangers_entries() -> None:
    user = ensure_system_user(SEC_USER)
    root = _scratch_dir("goex-warn-", user.pw_uid, user.pw_gid)
    try:
        with make_workspace(user.pw_uid, user.pw_gid) as ws:
            _tarball_tree(ws, user.pw_uid, user.pw_gid)
            d = DaemonProcess(root, user=SEC_USER).start()
            try:
                expected = ["b.txt", "group.txt", "open.txt", "theirs", "theirs/a.txt"]  # whatever their bits
                _check(d, ws, expected, "chmod u+w mine-ro.txt && echo y > mine-ro.txt")
            finally:
                assert d.stop() == 0
    finally:
        shutil.rmtree(root, ignore_errors=True)
