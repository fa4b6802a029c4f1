"""Class 2: no action leaves a set-id file or a file capability on the host (whatever its uid,
however it made one), not even while it runs; an action runs as the workspace's owner, so what
it creates is theirs; undo never recreates a set-id file owned by someone else.

Each attempt works in its own directory of a shared workspace and the host walks that directory
afterwards. Where the action was allowed to finish, its change set must say what was removed."""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.security.conftest import (
    SEC_USER,
    Shared,
    close_session,
    make_workspace,
    mode_of,
    result_of,
    run_action,
    sec_session,
)
from tests.security.probes import setid_files, tag
from tests.users import ensure_system_user

SEC_BACKENDS = ("bwrap", "container")  # its escape attempts apply to any sandbox: run against both


def attempt(s: Shared, script: str, *, python: bool = False) -> tuple[Path, pb.Action]:
    """Run `script` in a fresh directory of the workspace (its cwd); returns the dir and the action."""
    t = tag()
    (s.ws / t).mkdir()
    os.chown(s.ws / t, s.d.uid, s.d.gid)
    prefix = f"import os\nos.chdir({t!r})\n" if python else f"cd {t} || exit 99\n"
    script = prefix + script
    return s.ws / t, run_action(s.d, s.session, script, python=python)


def assert_no_setid_left(where: Path, action: pb.Action) -> None:
    left = setid_files(where)
    assert left == [], f"set-id files left on the host: {left}\n{result_of(action)}\n{action.changes}"


def assert_reported(action: pb.Action) -> None:
    """When the action made a set-id file and still succeeded, its result says it was removed."""
    if action.state == pb.ACTION_STATE_EXECUTED and "MADE" in result_of(action).out:
        text = " ".join(action.changes.warnings)
        assert "set-user-ID" in text or "set-group-ID" in text or "capabilit" in text, action.changes


# Each attempt prints MADE when its own command claims success: that is when the daemon must act.
SHELL_ATTEMPTS = {
    "cp-chmod-4755": "cp /bin/sh rootsh && chmod 4755 rootsh && echo MADE",
    "chmod-u+s": "cp /bin/sh rootsh && chmod u+s rootsh && echo MADE",
    "chmod-g+s-file": "cp /bin/sh rootsh && chmod 2755 rootsh && echo MADE",
    "install-m-4755": "install -m 4755 /bin/sh rootsh && echo MADE",
    "setgid-dir-then-file": "mkdir -m 2775 d && install -m 2755 /bin/sh d/rootsh && echo MADE",
    "cp-p-of-a-setuid-binary": "cp -p /usr/bin/su rootsh || cp -p /usr/bin/passwd rootsh; test -u rootsh && echo MADE",
    "hard-link-to-a-setuid-binary": "ln /usr/bin/su rootsh 2>/dev/null || ln /usr/bin/passwd rootsh && echo MADE",
    "tar-xp-setuid-entry": (
        "python3 - <<'EOF'\n"
        "import io, tarfile\n"
        "data = open('/bin/sh', 'rb').read()\n"
        "with tarfile.open('t.tar', 'w') as t:\n"
        "    i = tarfile.TarInfo('rootsh'); i.size = len(data); i.mode = 0o4755; i.uid = 0; i.gid = 0\n"
        "    t.addfile(i, io.BytesIO(data))\n"
        "EOF\n"
        "tar -xpf t.tar && rm t.tar && test -u rootsh && echo MADE"
    ),
    "setcap": "cp /bin/sh rootsh && setcap cap_setuid,cap_dac_override+ep rootsh && echo MADE",
}

PYTHON_ATTEMPTS = {
    "os-chmod": "import shutil\nshutil.copy('/bin/sh', 'rootsh')\nos.chmod('rootsh', 0o4755)\nprint('MADE')",
    "open-o-creat-4755": (
        "fd = os.open('rootsh', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o6755)\n"
        "os.write(fd, open('/bin/sh', 'rb').read()); os.close(fd)\n"
        "print('MADE' if os.stat('rootsh').st_mode & 0o6000 else 'no bits')"
    ),
    "fchmod": (
        "fd = os.open('rootsh', os.O_WRONLY | os.O_CREAT, 0o755)\n"
        "os.write(fd, open('/bin/sh', 'rb').read()); os.fchmod(fd, 0o4755); os.close(fd)\nprint('MADE')"
    ),
    "fchmodat-via-dirfd": (
        "open('rootsh', 'w').close()\n"
        "d = os.open('.', os.O_RDONLY)\nos.chmod('rootsh', 0o2755, dir_fd=d)\nprint('MADE')"
    ),
    "mknod-regular-4755": "import stat\nos.mknod('rootsh', stat.S_IFREG | 0o4755)\nprint('MADE')",
    "setxattr-security-capability": (
        "import struct, shutil\nshutil.copy('/bin/sh', 'rootsh')\n"
        # VFS_CAP_REVISION_2, effective; permitted = CAP_SETUID (7) | CAP_DAC_OVERRIDE (1)
        "blob = struct.pack('<IIIII', 0x02000001, (1 << 7) | (1 << 1), 0, 0, 0)\n"
        "os.setxattr('rootsh', 'security.capability', blob)\nprint('MADE')"
    ),
}


@pytest.mark.parametrize("name", sorted(SHELL_ATTEMPTS))
def test_no_setid_file_is_left_by_a_shell_action(sec_shared: Shared, name: str) -> None:
    where, action = attempt(sec_shared, SHELL_ATTEMPTS[name])
    assert_no_setid_left(where, action)
    assert_reported(action)


@pytest.mark.parametrize("name", sorted(PYTHON_ATTEMPTS))
def test_no_setid_file_is_left_by_a_python_action(sec_shared: Shared, name: str) -> None:
    where, action = attempt(sec_shared, PYTHON_ATTEMPTS[name], python=True)
    assert_no_setid_left(where, action)
    assert_reported(action)


def test_no_setid_file_exists_even_while_the_action_runs(sec_shared: Shared) -> None:
    """A local user could run a set-id file during the action, before any post-action check: the
    bits must never be set at all (as root over a root-owned workspace: a root shell for anyone)."""
    t = tag()
    where = sec_shared.ws / t
    where.mkdir()
    os.chown(where, sec_shared.d.uid, sec_shared.d.gid)
    script = (
        f"cd {t}; cp /bin/sh a; chmod 4755 a; install -m 6755 /bin/sh b; cp /bin/sh c; chmod g+s c\n"
        "python3 -c \"import os; fd = os.open('d', os.O_CREAT | os.O_WRONLY, 0o4755); os.close(fd)\"\n"
        "touch ready; sleep 2"
    )
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError):
                seen.extend(setid_files(where))
            done.wait(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        action = run_action(sec_shared.d, sec_shared.session, script)
    finally:
        done.set()
        watcher.join()
    assert (where / "ready").exists(), result_of(action)
    assert sorted(set(seen)) == [], f"set-id files existed during the action: {sorted(set(seen))}"
    assert_no_setid_left(where, action)


# --- whose files ---------------------------------------------------------------------------------


@contextlib.contextmanager
def session_over(d: DaemonProcess, uid: int, gid: int) -> Iterator[tuple[Path, str]]:
    with make_workspace(uid, gid) as ws:
        session = sec_session(d, ws)
        try:
            yield ws, session
        finally:
            close_session(d, session)


def test_an_action_runs_as_the_workspace_owner(sec_daemon: DaemonProcess) -> None:
    """goex-sec's workspace: the root daemon's action runs as goex-sec, so what it creates is
    theirs (and a user daemon's action as itself)."""
    owner = ensure_system_user(SEC_USER)
    with session_over(sec_daemon, owner.pw_uid, owner.pw_gid) as (ws, session):
        action = run_action(sec_daemon, session, "id -u; id -g; echo x > made; mkdir dir; echo y > dir/f")
        r = result_of(action)
        assert r.code == 0, r
        assert r.out.split() == [str(owner.pw_uid), str(owner.pw_gid)], r
        for p in (ws / "made", ws / "dir", ws / "dir" / "f"):
            st = p.lstat()
            assert (st.st_uid, st.st_gid) == (owner.pw_uid, owner.pw_gid), f"{p} is {st.st_uid}:{st.st_gid}"


def test_a_root_daemon_never_runs_an_action_as_root_in_a_workspace_root_does_not_own(
    sec_daemon: DaemonProcess,
) -> None:
    """A workspace owned by `nobody`: the action is nobody (or, for a user daemon that cannot
    switch to nobody, at least not root, and nothing it makes belongs to root)."""
    nobody = pwd.getpwnam("nobody")
    with session_over(sec_daemon, nobody.pw_uid, nobody.pw_gid) as (ws, session):
        action = run_action(sec_daemon, session, "id -u; echo x > made 2>/dev/null; true")
        r = result_of(action)
        uid = r.out.split()[0] if r.out.split() else ""
        assert uid != "0", f"the action ran as root in nobody's workspace:\n{r}"
        if mode_of(sec_daemon) == "root":
            assert uid == str(nobody.pw_uid), r
        for p in ws.rglob("*"):
            assert p.lstat().st_uid != 0, f"{p} belongs to root"


# --- undo -----------------------------------------------------------------------------------------


def test_undo_never_recreates_a_setid_file_owned_by_someone_else(sec_shared: Shared) -> None:
    """A nobody-owned set-uid file the action deleted comes back nobody's, or without its bits."""
    nobody = pwd.getpwnam("nobody")
    t = tag()
    where = sec_shared.ws / t
    where.mkdir()
    os.chown(where, sec_shared.d.uid, sec_shared.d.gid)
    victim = where / "nobody-suid"
    victim.write_bytes(Path("/bin/true").read_bytes())
    os.chown(victim, nobody.pw_uid, nobody.pw_gid)
    victim.chmod(0o4755)
    d, session = sec_shared.d, sec_shared.session
    action = run_action(d, session, f"rm -f {t}/nobody-suid; test -e {t}/nobody-suid || echo GONE")
    assert "GONE" in result_of(action).out, result_of(action)
    d.actions.UndoAction(apb.UndoActionRequest(session_id=session, action_id=action.id), timeout=60)
    if victim.exists():
        st = victim.lstat()
        if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            assert st.st_uid == nobody.pw_uid, f"undo made a set-id file owned by {st.st_uid}: {oct(st.st_mode)}"
    assert [f for f in setid_files(where) if "uid 0" in f] == []
