"""GitWorkspaceStore run by an unprivileged user over entries that user may not read.

An action leaves `chmod 000 d`, `chmod 0 f`, a 0300 directory, a whole tree at mode 0, or the
workspace root itself at 0. goexd's user owns them (the sandbox ran as that user), so the store
opens them up for one capture or restore and gives every mode back: the snapshot records them
exactly as found, and a restore brings back any such state byte for byte and mode for mode.
Entries it does not own (made by root here) cannot be read: a capture refuses, naming them, and a
restore restores everything else and says what it left.

Real git, real inotify, real files, both change-detection modes. The test process runs as root
(as the suite does) and takes the unprivileged user's identity (effective uid and gid, no
supplementary groups; capabilities go with uid 0) around the store's calls: the kernel then checks
every access as it would for goexd running as that user. Fingerprints are taken as root, which
reads everything.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest
from pygit2.enums import ConfigLevel

from goexd.domain.snapshots import Snapshot, UnreadableEntries
from goexd.snapshots.git_store import OPENED_JOURNAL, GitWorkspaceStore
from tests.fs_fingerprint import Item, describe_diff, fingerprint
from tests.users import ensure_system_user

USER = "goex-sec"  # the unprivileged user of the security suite
MODES = [pytest.param(True, id="watch"), pytest.param(False, id="scan")]


@pytest.fixture(autouse=True)
def _as_root() -> None:
    assert os.geteuid() == 0, "these tests switch to an unprivileged user and back: run them as root, as CI does"


@pytest.fixture(scope="module")
def user() -> pwd.struct_passwd:
    return ensure_system_user(USER)


@contextlib.contextmanager
def identity(uid: int, gid: int, groups: list[int]) -> Iterator[None]:
    """Run the block with these effective ids (the real uid stays root, so we can come back)."""
    saved = (os.geteuid(), os.getegid(), os.getgroups())
    os.seteuid(0)  # to change groups and gid, from wherever we are
    os.setgroups(groups)
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setgroups(saved[2])
        os.setegid(saved[1])
        os.seteuid(saved[0])


def as_root() -> contextlib.AbstractContextManager[None]:
    return identity(0, 0, [0])


@pytest.fixture(params=MODES)
def watch(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def place(user: pwd.struct_passwd) -> Iterator[Path]:
    """A 0755 root-owned dir under /var/tmp (the user cannot reach pytest's tmp_path) holding the
    workspace `ws` and the state dir `state`, both the user's."""
    parent = Path(tempfile.mkdtemp(prefix="goex-unreadable-", dir="/var/tmp"))
    parent.chmod(0o755)
    for name in ("ws", "state"):
        (parent / name).mkdir()
        os.chown(parent / name, user.pw_uid, user.pw_gid)
    try:
        yield parent
    finally:
        shutil.rmtree(parent, ignore_errors=True)  # root removes whatever modes were left


@pytest.fixture
def ws(place: Path) -> Path:
    return place / "ws"


@pytest.fixture(autouse=True)
def _git_config_in_reach(place: Path) -> Iterator[None]:
    """libgit2 looks for the user's config under root's HOME (0700), as found when this process
    first used it; the user may not stat there. Point it where the user may (nothing there)."""
    levels = (ConfigLevel.GLOBAL, ConfigLevel.XDG)
    saved = {level: pygit2.settings.search_path[level] for level in levels}
    for level in levels:
        pygit2.settings.search_path[level] = str(place)
    try:
        yield
    finally:
        for level, path in saved.items():
            pygit2.settings.search_path[level] = path


@pytest.fixture
def as_user(user: pwd.struct_passwd, place: Path) -> Iterator[None]:
    """The whole test runs as the unprivileged user (fingerprints step back to root)."""
    with identity(user.pw_uid, user.pw_gid, []):
        yield


@pytest.fixture
def store(place: Path, watch: bool, as_user: None) -> Iterator[GitWorkspaceStore]:
    s = GitWorkspaceStore(place / "state" / "ws.git", place / "ws", watch=watch)
    yield s
    s.close()


def fp(root: Path) -> dict[str, Item]:
    with as_root():
        return fingerprint(root)


def perm(path: Path) -> int:
    with as_root():
        return stat.S_IMODE(os.lstat(path).st_mode)


def write(path: Path, data: str = "x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    return path


def leave_unreadable(ws: Path) -> None:
    """What the hostile actions of the issue leave, all owned by the store's user."""
    write(ws / "d" / "f", "in a 000 dir\n")
    write(ws / "d" / "sub" / "g", "deeper\n")
    os.chmod(write(ws / "f000", "a 000 file\n"), 0)
    os.link(ws / "f000", ws / "d" / "f000-link")  # a mode shared by two names, opened up once
    os.link(ws / "f000", ws / "z-link")
    os.chmod(ws / "d", 0)
    os.chmod(write(ws / "f200", "write only\n"), 0o200)
    write(ws / "w" / "inside", "in a 0300 dir\n")
    os.chmod(ws / "w", 0o300)
    write(ws / "x" / "inside", "in a 0100 dir\n")
    os.chmod(ws / "x", 0o100)
    write(ws / "r" / "inside", "in a 0400 dir\n")
    os.chmod(ws / "r", 0o400)
    for p in ("t/a/b/f", "t/a/g", "t/h"):
        write(ws / p, f"{p}\n")
    for p in ("t/a/b/f", "t/a/b", "t/a/g", "t/a", "t/h", "t"):  # a whole tree at 0, bottom up
        os.chmod(ws / p, 0)


def restore_and_check(store: GitWorkspaceStore, ws: Path, snap: Snapshot, expected: dict[str, Item]) -> None:
    report = store.restore(snap)
    assert (report.unowned, report.unreadable) == ((), ())
    actual = fp(ws)
    assert actual == expected, describe_diff(expected, actual)
    assert store.capture() == snap


def assert_given_back(place: Path) -> None:
    """No mode of the workspace is still opened up: the journal of openings is gone."""
    assert not (place / "state" / "ws.git" / OPENED_JOURNAL).exists()


# -- entries goexd's user owns ------------------------------------------------------------


def test_a_capture_records_unreadable_entries_as_found_and_leaves_their_modes(
    store: GitWorkspaceStore, place: Path, ws: Path
) -> None:
    write(ws / "README", "hi\n")
    leave_unreadable(ws)
    before = fp(ws)
    assert before["d"][1] == 0 and before["t/a/b"][1] == 0 and before["w"][1] == 0o300  # the control

    snap = store.capture()

    after = fp(ws)
    assert after == before, describe_diff(before, after)
    assert_given_back(place)
    # Exactly what root, who reads everything without opening anything up, records.
    with as_root(), GitWorkspaceStore(place / "root-store.git", ws, watch=False) as by_root:
        assert by_root.capture() == snap
    assert store.capture() == snap  # stable: its own mode changes back are not changes


def test_restores_to_and_from_a_state_with_unreadable_entries_are_exact(store: GitWorkspaceStore, ws: Path) -> None:
    write(ws / "README", "hi\n")
    write(ws / "d" / "old", "replaced by the action\n")
    clean_fp, clean = fp(ws), store.capture()
    (ws / "d" / "old").unlink()
    os.rmdir(ws / "d")
    write(ws / "README", "changed\n")
    leave_unreadable(ws)
    bad_fp, bad = fp(ws), store.capture()
    assert bad != clean

    restore_and_check(store, ws, clean, clean_fp)  # the undo
    restore_and_check(store, ws, bad, bad_fp)  # and back: every 0 mode recreated as it was
    restore_and_check(store, ws, clean, clean_fp)


def test_the_workspace_root_at_mode_0_is_captured_and_restored(store: GitWorkspaceStore, ws: Path) -> None:
    write(ws / "a" / "f")
    clean_fp, clean = fp(ws), store.capture()
    write(ws / "new")
    os.chmod(ws / "a", 0)
    os.chmod(ws, 0)  # `chmod 0 .` in an action
    bad_fp = fp(ws)

    bad = store.capture()
    assert perm(ws) == 0 and fp(ws) == bad_fp

    restore_and_check(store, ws, clean, clean_fp)
    assert perm(ws) == 0o755
    restore_and_check(store, ws, bad, bad_fp)
    assert perm(ws) == 0


def test_changes_below_a_000_directory_are_seen_and_undone(store: GitWorkspaceStore, ws: Path) -> None:
    write(ws / "d" / "f", "one\n")
    os.chmod(ws / "d", 0)
    first_fp, first = fp(ws), store.capture()
    os.chmod(ws / "d", 0o700)
    write(ws / "d" / "f", "two\n")
    write(ws / "d" / "g", "new\n")
    os.chmod(ws / "d" / "f", 0)
    os.chmod(ws / "d", 0)

    second = store.capture()

    changes = store.changes(first, second)
    assert sorted((c.kind.value, c.path) for c in changes.changes) == [("added", "d/g"), ("modified", "d/f")]
    restore_and_check(store, ws, first, first_fp)


def test_an_unchanged_capture_opens_nothing_up_again(place: Path, ws: Path, as_user: None) -> None:
    """Giving the modes back raises inotify events; the capture drops those (the entries still
    have the modes it recorded), so the next capture reads nothing: no entry's ctime moves (each
    opening up is a chmod). A real change made afterwards to such an entry is still seen."""
    leave_unreadable(ws)
    locked = [ws / "d", ws / "d" / "f", ws / "f000", ws / "t" / "a" / "b" / "f", ws / "w"]
    with GitWorkspaceStore(place / "state" / "ws.git", ws, watch=True) as store:
        snap = store.capture()
        ctimes = ctimes_of(locked)
        for _ in range(3):
            assert store.capture() == snap
        assert ctimes_of(locked) == ctimes
        os.chmod(ws / "f000", 0o200)
        changed = store.capture()
        # f000 has two more names (hard links): the mode is the inode's, so all three changed, and
        # re-reading a file with other names makes that capture a full scan (inotify names one).
        changes = [(c.kind.value, c.path) for c in store.changes(snap, changed).changes]
        assert changes == [("mode_changed", "d/f000-link"), ("mode_changed", "f000"), ("mode_changed", "z-link")]
        assert store.full_scans == 2


def ctimes_of(paths: list[Path]) -> list[int]:
    with as_root():
        return [os.lstat(p).st_ctime_ns for p in paths]


def test_modes_opened_up_by_a_killed_goexd_are_given_back_when_the_store_opens(
    user: pwd.struct_passwd, place: Path, ws: Path
) -> None:
    """A process of the user opens entries up through a journaled batch, then is SIGKILLed
    before it can give them back; the next store on that state dir puts them back."""
    git_dir = place / "state" / "ws.git"
    with identity(user.pw_uid, user.pw_gid, []):
        GitWorkspaceStore(git_dir, ws).close()
        write(ws / "d" / "f")
        os.chmod(ws / "d" / "f", 0)
        os.chmod(ws / "d", 0)
        os.chmod(write(ws / "g"), 0o200)
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from goexd.snapshots.safefs import SafeFS\n"
        "fs = SafeFS(Path(sys.argv[1]), Path(sys.argv[2]))\n"
        "fs.open_file('d/f')\n"  # opens d (to enter it) and d/f (to read it) up
        "fs.open_file('g')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run(
        [sys.executable, "-c", code, str(ws), str(git_dir / OPENED_JOURNAL)],
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        capture_output=True,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (perm(ws / "d"), perm(ws / "d" / "f"), perm(ws / "g")) == (0o500, 0o400, 0o600)  # the control

    with identity(user.pw_uid, user.pw_gid, []):
        GitWorkspaceStore(git_dir, ws).close()

    assert (perm(ws / "d"), perm(ws / "d" / "f"), perm(ws / "g")) == (0, 0, 0o200)
    assert_given_back(place)


def test_a_restore_of_many_directories_stays_within_a_low_descriptor_limit(store: GitWorkspaceStore, ws: Path) -> None:
    """A systemd or login default soft RLIMIT_NOFILE of 1024 (here 256): an action that leaves
    600 directories, a third of them at mode 0, is captured and undone (each directory's fd used
    to stay cached for the whole capture or restore: EMFILE, and the undo failed)."""
    write(ws / "README")
    clean_fp, clean = fp(ws), store.capture()
    for i in range(600):
        write(ws / "many" / f"d{i}" / "f", f"{i}\n")
        if i % 3 == 0:
            os.chmod(ws / "many" / f"d{i}", 0)
    many_fp = fp(ws)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with as_root():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        many = store.capture()
        assert store.changes(clean, many).added == 600
        restore_and_check(store, ws, clean, clean_fp)
        restore_and_check(store, ws, many, many_fp)
    finally:
        with as_root():
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- entries goexd's user does not own and may not read ---------------------------------


def make_foreign(ws: Path) -> None:
    """Root's entries the user may not read: a 0700 directory (inside one of the user's) and a
    0600 file."""
    with as_root():
        (ws / "d").mkdir(exist_ok=True)
        (ws / "d" / "foreign").mkdir(mode=0o700)
        write(ws / "d" / "foreign" / "secret", "root's\n")
        os.chmod(write(ws / "foreign.txt", "root's\n"), 0o600)


def test_a_capture_refuses_what_goexd_may_not_read_and_does_not_own(store: GitWorkspaceStore, ws: Path) -> None:
    write(ws / "mine")
    store.capture()  # the control: the same workspace without them captures
    make_foreign(ws)

    with pytest.raises(UnreadableEntries) as raised:
        store.capture()

    assert sorted(e.path for e in raised.value.entries) == ["d/foreign", "foreign.txt"]
    message = str(raised.value)
    assert "may not read 2 entries and cannot open them up, so goexd cannot snapshot them" in message
    assert "d/foreign/ (owner 0:0, mode 0700)" in message and "foreign.txt (owner 0:0, mode 0600)" in message


def test_a_restore_restores_the_rest_and_names_what_it_left(store: GitWorkspaceStore, ws: Path) -> None:
    write(ws / "README", "hi\n")
    pre_fp, pre = fp(ws), store.capture()
    # The action: edits, and a 000 directory of its own that ends up holding root's.
    write(ws / "README", "changed\n")
    write(ws / "d" / "mine", "the action's\n")
    make_foreign(ws)
    os.chmod(ws / "d", 0)

    report = store.restore(pre)

    assert sorted(u.path for u in report.unreadable) == ["d/foreign", "foreign.txt"]
    assert "left 2 entries as they were, which goexd's user (uid " in report.describe()
    after = fp(ws)
    assert after["README"] == pre_fp["README"]
    # Only root's entries are left, and the directory that holds one (its mode as the action left it).
    assert sorted(set(after) - set(pre_fp)) == ["d", "d/foreign", "d/foreign/secret", "foreign.txt"]
    assert after["d"][1] == 0
    assert {k: v for k, v in after.items() if k in pre_fp} == pre_fp

    with as_root():  # once they are gone, the workspace is the snapshot again
        shutil.rmtree(ws / "d")
        (ws / "foreign.txt").unlink()
    restore_and_check(store, ws, pre, pre_fp)
