"""Class 7: resources goexd must refuse (INVALID_ARGUMENT naming the field, no session row left).

A workspace is snapshotted by the daemon and changed by actions; a SQLite file is opened and
written by the daemon itself. Each test asks for a forbidden path through the real daemon, in
both modes (root and unprivileged), and shows with a control that an ordinary path next to it
is accepted, so a refusal is not an accident of the test's setup.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import session_count, status_of
from tests.security.conftest import SEC_USER, close_session, make_workspace, mode_of

FS_FIELD = "resources[0].fs.path"
DB_FIELD = "resources[0].db.url"
HOME_USER = "goex-home"  # a user whose home the tests choose (created once, like goex-sec)
HOMES = Path("/var/tmp/goex-homes")


def _fs(path: str | Path) -> spb.CreateSessionRequest:
    return spb.CreateSessionRequest(resources=[pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(path)))])


def _db(path: str | Path) -> spb.CreateSessionRequest:
    return spb.CreateSessionRequest(resources=[pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite://{path}"))])


def _rows(d: DaemonProcess) -> int:
    return session_count(d)


def _refused(d: DaemonProcess, req: spb.CreateSessionRequest, fld: str, *words: str) -> str:
    code, msg = status_of(lambda: d.sessions.CreateSession(req, timeout=60))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (req, code, msg)
    assert msg.startswith(f"{fld}: "), msg
    assert any(w in msg for w in words), (words, msg)
    return msg


def _accepted(d: DaemonProcess, req: spb.CreateSessionRequest) -> None:
    session = d.sessions.CreateSession(req, timeout=60).session
    close_session(d, session.id)


@contextlib.contextmanager
def _scratch(d: DaemonProcess) -> Iterator[Path]:
    """A directory the daemon's user owns (in a root-owned 0755 parent of its own)."""
    with make_workspace(d.uid, d.gid) as ws:
        yield ws


def test_system_trees_and_the_root_are_refused(sec_daemon: DaemonProcess, sec_workspace: Path) -> None:
    d = sec_daemon
    before = _rows(d)
    trees = ["/", "/etc", "/etc/ssl", "/usr", "/usr/bin", "/bin", "/var", "/var/lib", "/var/log", "/var/cache"]
    trees += ["/proc", "/proc/self", "/proc/1", "/sys/kernel", "/dev", "/dev/shm", "/run", "/boot", "/opt", "/lib"]
    trees += ["/snap", "/lib64", "/usr/local", "/var/spool"]
    tested = 0
    for tree in trees:
        if not Path(tree).is_dir():
            continue
        tested += 1
        _refused(d, _fs(tree), FS_FIELD, "system tree", "root directory")
    assert tested >= 15, tested
    # Gathering dirs themselves: every user's files, mounts or scratch space, never one project.
    for shared in ("/tmp", "/var/tmp", "/home", "/mnt", "/media", "/srv"):
        if Path(shared).is_dir():
            _refused(d, _fs(shared), FS_FIELD, "unrelated trees", "home directory")
    with _scratch(d) as scratch:  # links are resolved first: a link to /etc is /etc
        (scratch / "etc-link").symlink_to("/etc")
        (scratch / "proc-link").symlink_to("/proc/self/root/etc")
        _refused(d, _fs(scratch / "etc-link"), FS_FIELD, "system tree /etc")
        _refused(d, _fs(scratch / "proc-link"), FS_FIELD, "system tree")
    assert _rows(d) == before
    _accepted(d, _fs(sec_workspace))  # control: an ordinary project dir is taken


def _home_user() -> pwd.struct_passwd:
    """goex-home, whose home is HOMES/goex-home (created with useradd the first time)."""
    home = HOMES / HOME_USER
    try:
        user = pwd.getpwnam(HOME_USER)
    except KeyError:
        argv = ["useradd", "--system", "--no-create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin"]
        subprocess.run([*argv, HOME_USER], check=False, capture_output=True)
        user = pwd.getpwnam(HOME_USER)  # another run may have created it meanwhile
    assert user.pw_dir == str(home), user
    HOMES.mkdir(exist_ok=True)
    HOMES.chmod(0o755)
    home.mkdir(exist_ok=True)
    home.chmod(0o755)
    return user


def test_home_directories_themselves_are_refused(sec_daemon: DaemonProcess) -> None:
    d = sec_daemon
    user = _home_user()
    home = Path(user.pw_dir)
    project = home / f"project-{mode_of(d)}"
    project.mkdir(exist_ok=True)
    os.chown(project, d.uid, d.gid)
    before = _rows(d)
    _refused(d, _fs(home), FS_FIELD, f"home directory of user {HOME_USER}")
    _refused(d, _fs(HOMES), FS_FIELD, f"contains the home directory of user {HOME_USER}")
    _refused(d, _fs("/root"), FS_FIELD, "home directory of user root")  # another user's, for the unprivileged daemon
    assert _rows(d) == before
    _accepted(d, _fs(project))  # control: a project inside a home is a workspace


def test_goexds_own_locations_are_refused(sec_daemon: DaemonProcess) -> None:
    """The harness puts goexd's config, state, socket and log (--log-file) under one root dir."""
    d = sec_daemon
    inside = d.root / "projects"
    inside.mkdir(exist_ok=True)
    before = _rows(d)
    for path in (d.state_dir, d.state_dir / "fs", d.root, inside, d.socket.parent, d.root / "logs"):
        _refused(d, _fs(path), FS_FIELD, "goexd's")
    with _scratch(d) as scratch:
        (scratch / "state-link").symlink_to(d.state_dir)
        _refused(d, _fs(scratch / "state-link"), FS_FIELD, "goexd's state directory")
        assert _rows(d) == before
        _accepted(d, _fs(scratch))  # control: the same kind of dir, outside goexd's own


@pytest.mark.parametrize("mode", ["root", "user"])
def test_config_runtime_and_log_locations_apart_are_refused(mode: str) -> None:
    """goexd's config file, log file and sockets each in a dir of their own: each is protected on its own."""
    owner = pwd.getpwnam(SEC_USER) if mode == "user" else None
    uid, gid = (owner.pw_uid, owner.pw_gid) if owner is not None else (0, 0)
    with make_workspace(uid, gid) as base:
        conf, logs, root = base / "conf", base / "logs", base / "daemon"
        for p in (conf, logs, root):
            p.mkdir()
            os.chown(p, uid, gid)
        (conf / "goexd.toml").write_text('shutdown_grace_s = 1.0\njournal_sync = "normal"\n')
        args = ("--config", str(conf / "goexd.toml"), "--log-file", str(logs / "goexd.log"))
        d = DaemonProcess(root, *args, user=SEC_USER if mode == "user" else None).start()
        try:
            egress = re.search(r"egress proxy started \(run dir (\S+)\)", d.log())
            assert egress is not None, d.log()
            (conf / "rules").mkdir()
            before = _rows(d)
            _refused(d, _fs(conf), FS_FIELD, "is goexd's config directory")
            _refused(d, _fs(conf / "rules"), FS_FIELD, "inside goexd's config directory")
            _refused(d, _fs(logs), FS_FIELD, "contains goexd's log file")
            _refused(d, _fs(d.socket.parent), FS_FIELD, "is goexd's runtime directory")
            _refused(d, _fs(egress.group(1)), FS_FIELD, "is goexd's runtime directory")
            _refused(d, _fs(root), FS_FIELD, "contains goexd's state directory")
            assert _rows(d) == before
            assert "Traceback" not in d.log()
        finally:
            d.stop()


@contextlib.contextmanager
def _other_daemon(mode: str) -> Iterator[tuple[Path, DaemonProcess]]:
    """A second goexd of the same user, its root two levels down a scratch dir."""
    owner = pwd.getpwnam(SEC_USER) if mode == "user" else None
    uid, gid = (owner.pw_uid, owner.pw_gid) if owner is not None else (0, 0)
    with make_workspace(uid, gid) as scratch:
        root = scratch / "deep" / "other-goexd"
        root.mkdir(parents=True)
        for p in (root.parent, root):
            os.chown(p, uid, gid)
        other = DaemonProcess(root, user=SEC_USER if mode == "user" else None).start()
        try:
            yield scratch, other
        finally:
            other.stop()


def test_another_goexds_state_dir_is_refused_inside_and_around(sec_daemon: DaemonProcess) -> None:
    d = sec_daemon
    with _other_daemon(mode_of(d)) as (scratch, other):
        assert (other.state_dir / ".goexd-state").is_file()
        twin = scratch / "twin" / "state"  # control: the same shape without the marker
        twin.mkdir(parents=True)
        (twin / "journal.sqlite3").write_text("")
        for p in (twin.parent, twin):
            os.chown(p, d.uid, d.gid)
        before = _rows(d)
        _refused(d, _fs(other.state_dir), FS_FIELD, "is the state directory of a goexd")
        inner = other.state_dir / "inner"
        inner.mkdir()
        os.chown(inner, d.uid, d.gid)
        _refused(d, _fs(inner), FS_FIELD, "the state directory of a goexd")
        _refused(d, _fs(other.root), FS_FIELD, "contains")
        _refused(d, _fs(scratch / "deep"), FS_FIELD, "contains the state directory")
        _refused(d, _db(other.state_dir / "journal.sqlite3"), DB_FIELD, "state directory")
        assert _rows(d) == before
        _accepted(d, _fs(twin.parent))


def test_sqlite_paths_that_are_not_database_files_are_refused(sec_daemon: DaemonProcess) -> None:
    d = sec_daemon
    with _scratch(d) as scratch:
        text = scratch / "notes.txt"
        text.write_text("not a database\n" * 100)
        os.mkfifo(scratch / "fifo")
        (scratch / "dir.db").mkdir()
        (scratch / "passwd.db").symlink_to("/etc/passwd")
        (scratch / "fifo.db").symlink_to(scratch / "fifo")
        real = scratch / "real.db"
        with contextlib.closing(sqlite3.connect(real)) as db:
            db.execute("CREATE TABLE t (x)")
        for p in scratch.iterdir():
            os.lchown(p, d.uid, d.gid)
        listing = sorted(os.listdir(scratch))
        before = _rows(d)
        _refused(d, _db("/proc/self/mem"), DB_FIELD, "system tree /proc")
        _refused(d, _db("/dev/null"), DB_FIELD, "system tree /dev")
        _refused(d, _db(scratch / "dir.db"), DB_FIELD, "a directory")
        _refused(d, _db(scratch / "fifo"), DB_FIELD, "a FIFO")
        _refused(d, _db(scratch / "fifo.db"), DB_FIELD, "a FIFO")
        _refused(d, _db(text), DB_FIELD, "not a SQLite database")
        _refused(d, _db(scratch / "passwd.db"), DB_FIELD, "system tree /etc")
        _refused(d, _db(scratch / ("a" * 256)), DB_FIELD, "NAME_MAX")
        _refused(d, _db(scratch / (("a" * 200 + "/") * 21) / "x.db"), DB_FIELD, "PATH_MAX")
        _refused(d, _db(d.state_dir / "journal.sqlite3"), DB_FIELD, "goexd's state directory")
        _refused(d, _db(d.state_dir / "new.db"), DB_FIELD, "goexd's state directory")
        _refused(d, _db(d.root / "new.db"), DB_FIELD, "goexd's config directory")
        _refused(d, _db(scratch / "missing" / "x.db"), DB_FIELD, "does not exist")
        assert _rows(d) == before
        assert text.read_text() == "not a database\n" * 100
        assert sorted(os.listdir(scratch)) == listing  # no -wal or -journal file was left beside any of them
        _accepted(d, _db(real))  # controls: a database, and a file that does not exist yet
        _accepted(d, _db(scratch / "fresh.db"))


def test_overlong_workspace_paths_are_refused(sec_daemon: DaemonProcess) -> None:
    d = sec_daemon
    before = _rows(d)
    _refused(d, _fs("/var/tmp/" + "a" * 256), FS_FIELD, "NAME_MAX")
    _refused(d, _fs("/var/tmp/" + "/".join(["a" * 255] * 17)), FS_FIELD, "PATH_MAX")
    _refused(d, _fs("x" * 5_000_000), FS_FIELD, "not an absolute path")
    assert _rows(d) == before
