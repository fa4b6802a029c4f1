"""Class 2, the host side: no action leaves a set-id file or a file capability on the host, and
undo recreates owners and modes as they were, never a set-id file owned by someone else.

Each test goes through a real goexd (both modes of the suite: root over a root-owned
workspace, and the unprivileged goex-sec over its own), real bwrap and real files. The test
itself runs as root: it makes the files an attacker would want (a nobody-owned setuid file,
a file capability) that no action could make.

What an action can do here depends on the sandbox: a seccomp filter may refuse `chmod 4755`
itself. The hard-link test reaches the post-action check whatever the filter refuses (a link
to an existing set-id file needs no chmod), so the check is proved either way.
"""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.security.conftest import (
    close_session,
    make_workspace,
    mode_of,
    result_of,
    run_action,
    sec_session,
    start_daemon,
)
from tests.users import ensure_system_user

# Direct isolation: the post-action check of what an action did to the workspace itself (under the
# default overlay the workspace is not written until goexd applies the run: test_overlay_privileges.py).
SEC_DAEMON_CONFIG = '[fs]\nisolation = "direct"\n'
GOEX = Path(sys.executable).with_name("goex")  # the CLI installed in the venv
NOBODY = (65534, 65534)
SETID = stat.S_ISUID | stat.S_ISGID
WS_USER = "goex-ws"  # an unprivileged user whose workspace a root goexd works on
CAPABILITY = "security.capability"
# A valid VFS_CAP_REVISION_2 set: CAP_NET_RAW permitted and effective.
CAP_NET_RAW = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


def make(path: Path, owner: tuple[int, int], perm: int, data: str = "#!/bin/sh\necho hi\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    os.chown(path, *owner)
    os.chmod(path, perm)  # after chown, which clears set-id bits
    return path


def owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def perm(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def has_capability(path: Path) -> bool:
    try:
        os.getxattr(path, CAPABILITY, follow_symlinks=False)
    except OSError:
        return False
    return True


def undo(d: DaemonProcess, session: str, action_id: str) -> pb.Action:
    req = apb.UndoActionRequest(session_id=session, action_id=action_id)
    (undone,) = d.actions.UndoAction(req, timeout=60).undone
    return undone


def executed(d: DaemonProcess, session: str, script: str) -> pb.Action:
    action = run_action(d, session, script)
    assert action.state == pb.ACTION_STATE_EXECUTED, (action.error, result_of(action))
    assert action.exec.exit_code == 0, result_of(action)
    return action


def ws_owner(d: DaemonProcess) -> tuple[int, int]:
    return d.uid, d.gid


# --- undo recreates owners and modes --------------------------------------------------------


def test_undo_of_a_deleted_nobody_owned_setuid_file_recreates_it_as_it_was(
    sec_daemon: DaemonProcess, sec_workspace: Path
) -> None:
    d, ws = sec_daemon, sec_workspace
    suid = make(ws / "suid", NOBODY, 0o4755)
    session = sec_session(d, ws)
    try:
        action = executed(d, session, "rm -f suid")
        assert not suid.exists()  # the control: the action did delete it
        undone = undo(d, session, action.id)
    finally:
        close_session(d, session)
    assert undone.state == pb.ACTION_STATE_UNDONE, undone.error
    if mode_of(d) == "root":
        # Before: recreated by root as a ROOT-owned setuid file.
        assert (owner(suid), perm(suid)) == (NOBODY, 0o4755)
        assert undone.reversibility.verdict == pb.VERDICT_PASSED, undone.reversibility.detail
    else:
        # goexd may not chown to nobody: the file is its user's, and no set-id bit comes back.
        assert (owner(suid), perm(suid)) == (ws_owner(d), 0o755)
        assert undone.reversibility.verdict == pb.VERDICT_FAILED
        assert "could not restore the owner of 1 entry (goexd runs as uid" in undone.reversibility.detail
        assert "suid (recorded 65534:65534 mode 4755)" in undone.reversibility.detail


def test_a_failed_actions_rollback_recreates_owner_and_mode_too(sec_daemon: DaemonProcess, sec_workspace: Path) -> None:
    d, ws = sec_daemon, sec_workspace
    suid = make(ws / "suid", NOBODY, 0o4755)
    session = sec_session(d, ws)
    try:
        action = run_action(d, session, "rm -f suid; sleep 30", timeout_s=2)
    finally:
        close_session(d, session)
    assert action.state == pb.ACTION_STATE_FAILED, action.error
    assert "rolled back" in action.error
    if mode_of(d) == "root":
        assert (owner(suid), perm(suid)) == (NOBODY, 0o4755)
    else:
        assert (owner(suid), perm(suid)) == (ws_owner(d), 0o755)
        assert "could not restore the owner" in action.error


def test_an_action_that_leaves_read_only_directories_is_undone(sec_daemon: DaemonProcess, sec_workspace: Path) -> None:
    """Go's module cache, `chmod -R a-w`: an unprivileged goexd cannot write in such a directory
    (root can), yet its undo must remove what is in it and put every mode back."""
    d, ws = sec_daemon, sec_workspace
    lib = ws / "lib"
    lib.mkdir(mode=0o755)
    make(lib / "keep.txt", ws_owner(d), 0o644, "kept\n")
    os.chown(lib, *ws_owner(d))
    session = sec_session(d, ws)
    try:
        action = executed(
            d, session, "mkdir -p cache/mod && echo x > cache/mod/f && rm lib/keep.txt && chmod -R a-w cache lib . "
        )
        assert perm(ws) == 0o555 and perm(ws / "cache" / "mod") == 0o555  # the control
        undone = undo(d, session, action.id)
        root_after = perm(ws)
    finally:
        os.chmod(ws, 0o755)  # whatever happened, let the fixture remove it
        close_session(d, session)
    assert undone.reversibility.verdict == pb.VERDICT_PASSED, (undone.error, undone.reversibility.detail)
    assert root_after == 0o755
    assert sorted(p.name for p in ws.iterdir()) == ["README", "lib"]
    assert (lib / "keep.txt").read_text() == "kept\n"
    assert (perm(lib), perm(lib / "keep.txt")) == (0o755, 0o644)


# --- no action leaves a set-id file or a file capability -----------------------------------


def test_a_file_an_action_makes_setuid_is_not_left_setuid(sec_daemon: DaemonProcess, sec_workspace: Path) -> None:
    d, ws = sec_daemon, sec_workspace
    session = sec_session(d, ws)
    try:
        action = run_action(d, session, "cp /bin/true rootsh && chmod 4755 rootsh; stat -c %a rootsh")
        warnings = list(d.actions.GetAction(apb.GetActionRequest(action_id=action.id)).action.changes.warnings)
    finally:
        close_session(d, session)
    assert action.state == pb.ACTION_STATE_EXECUTED, action.error
    assert perm(ws / "rootsh") & SETID == 0, oct(perm(ws / "rootsh"))
    inside = result_of(action).out.strip()
    if inside == "4755":  # the sandbox let chmod through: the post-action check took the bit away
        assert warnings == ["removed the set-user-ID bit of rootsh (mode 4755 -> 0755)"]
        assert list(action.changes.warnings) == warnings
        assert [(c.path, c.new_mode) for c in action.changes.changes] == [("rootsh", stat.S_IFREG | 0o755)]
    else:  # refused inside the sandbox (seccomp): nothing to take away
        assert (inside, warnings) == ("755", []), result_of(action)


def test_a_hard_link_to_a_setuid_file_is_stripped_and_its_undo_restores_the_original(
    sec_daemon: DaemonProcess, sec_workspace: Path
) -> None:
    """A new name for the owner's own setuid file, kept in a private dir, would expose it. No
    chmod is involved, so no filter in the sandbox stops it: only the post-action check does."""
    d, ws = sec_daemon, sec_workspace
    private = ws / "private"
    private.mkdir(mode=0o700)
    os.chown(private, *ws_owner(d))
    own = make(private / "own-suid", ws_owner(d), 0o4755)
    session = sec_session(d, ws)
    try:
        action = executed(d, session, "ln private/own-suid exposed")
        exposed = ws / "exposed"
        assert os.path.samefile(exposed, own)  # the control: the link was made
        assert perm(exposed) == perm(own) == 0o755
        assert list(action.changes.warnings) == [
            "removed the set-user-ID bit of exposed (mode 4755 -> 0755); the file has 2 hard links, which all lost them"
        ]
        changes = {c.path: c.kind for c in action.changes.changes}
        assert changes == {"exposed": pb.CHANGE_KIND_ADDED, "private/own-suid": pb.CHANGE_KIND_MODE_CHANGED}
        # The CLI shows it too.
        shown = subprocess.run(
            [str(GOEX), "show", action.id],
            env={**os.environ, "GOEX_SOCKET": str(d.socket), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "goexd: removed the set-user-ID bit of exposed (mode 4755 -> 0755)" in shown, shown
        undone = undo(d, session, action.id)
    finally:
        close_session(d, session)
    assert undone.reversibility.verdict == pb.VERDICT_PASSED, undone.reversibility.detail
    assert not exposed.exists()
    assert (owner(own), perm(own)) == (ws_owner(d), 0o4755)


def test_a_setuid_file_goexd_cannot_strip_fails_the_action(sec_daemon: DaemonProcess, sec_workspace: Path) -> None:
    """nobody's world-writable setuid file, touched by the action: a root goexd takes the bit away;
    an unprivileged one cannot (not its file), so the action is refused: rolled back, FAILED."""
    d, ws = sec_daemon, sec_workspace
    shared = make(ws / "shared", NOBODY, 0o4757)
    session = sec_session(d, ws)
    try:
        action = run_action(d, session, "touch shared")
    finally:
        close_session(d, session)
    if mode_of(d) == "root":
        assert action.state == pb.ACTION_STATE_EXECUTED, action.error
        assert list(action.changes.warnings) == ["removed the set-user-ID bit of shared (mode 4757 -> 0757)"]
        assert perm(shared) == 0o757
    else:
        assert action.state == pb.ACTION_STATE_FAILED
        assert action.error.startswith("FAILED to remove the set-user-ID bit of shared: Operation not permitted"), (
            action.error
        )
        assert "the action is rolled back" in action.error
        assert (owner(shared), perm(shared)) == (NOBODY, 0o4757)  # as it was before the action: not goexd's to change


def test_a_file_capability_on_a_file_an_action_touched_is_removed(
    sec_daemon: DaemonProcess, sec_workspace: Path
) -> None:
    d, ws = sec_daemon, sec_workspace
    touched = make(ws / "ping", ws_owner(d), 0o755)
    kept = make(ws / "kept", ws_owner(d), 0o755)
    for p in (touched, kept):
        os.setxattr(p, CAPABILITY, CAP_NET_RAW)
    session = sec_session(d, ws)
    try:
        action = executed(d, session, "touch ping")  # no write: the kernel itself would drop it on one
    finally:
        close_session(d, session)
    assert list(action.changes.warnings) == [f"removed the file capability ({CAPABILITY}) of ping"]
    assert not has_capability(touched)
    assert has_capability(kept)  # the control: the action did not touch it


# --- a root goexd over a user's workspace ---------------------------------------------------


@pytest.fixture(scope="module")
def root_daemon() -> Iterator[DaemonProcess]:
    with start_daemon("root") as d:
        yield d


def test_undo_in_a_users_workspace_leaves_every_restored_file_theirs(root_daemon: DaemonProcess) -> None:
    d = root_daemon
    user = ensure_system_user(WS_USER)
    theirs = (user.pw_uid, user.pw_gid)
    with make_workspace(*theirs) as ws:
        for p in (ws / "a.txt", ws / "sub" / "b.txt", ws / "sub" / "deep" / "c.sh"):
            make(p, theirs, 0o750 if p.suffix == ".sh" else 0o644)
        os.symlink("a.txt", ws / "link")
        os.chown(ws / "link", *theirs, follow_symlinks=False)
        # World-writable directories: the action can change them whatever uid it runs as.
        for p in (ws, ws / "sub", ws / "sub" / "deep"):
            os.chown(p, *theirs)
            os.chmod(p, 0o777)
        session = sec_session(d, ws)
        try:
            executed(d, session, "rm -r sub link && rm a.txt && echo changed > a.txt && mkdir new && echo n > new/f")
            undone = undo(d, session, "")
        finally:
            close_session(d, session)
        assert undone.reversibility.verdict == pb.VERDICT_PASSED, undone.reversibility.detail
        found = {str(p.relative_to(ws)): owner(p) for p in [ws, *ws.rglob("*")]}
        # Everything was recreated by a root goexd: without the recorded owners it would be root's.
        assert set(found) == {".", "README", "a.txt", "link", "sub", "sub/b.txt", "sub/deep", "sub/deep/c.sh"}
        assert set(found.values()) == {theirs}, found
        assert (ws / "a.txt").read_text() == "#!/bin/sh\necho hi\n"
        assert perm(ws / "sub" / "deep" / "c.sh") == 0o750
