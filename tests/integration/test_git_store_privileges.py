"""GitWorkspaceStore keeps owners and set-id bits, and takes privileges away after an action.

Real git store, real files, real inotify, in both change-detection modes. These tests run as
root (as the suite does): they make files owned by other users and write file capabilities.
The daemon-as-an-unprivileged-user side is in tests/security/test_setid_and_ownership.py.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from goexd.domain.snapshots import CAPABILITY_XATTR, ChangeKind, Snapshot, SnapshotError
from goexd.snapshots.git_store import GitWorkspaceStore
from goexd.snapshots.layout import META, SELF
from goexd.snapshots.privileges import listed
from tests.fs_fingerprint import describe_diff, fingerprint
from tests.users import ensure_system_user

NOBODY = (65534, 65534)
WS_USER = "goex-ws"  # an unprivileged user who owns a workspace (created if missing)
# A valid VFS_CAP_REVISION_2 capability set: CAP_NET_RAW permitted and effective.
CAP_NET_RAW = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
MODES = [pytest.param(True, id="watch"), pytest.param(False, id="scan")]


@pytest.fixture(autouse=True)
def _as_root() -> None:
    assert os.geteuid() == 0, "these tests make files owned by other users: run them as root, as CI does"


@pytest.fixture(params=MODES)
def watch(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    w.mkdir()
    (w / "a.txt").write_text("a\n")
    return w


@pytest.fixture
def store(tmp_path: Path, ws: Path, watch: bool) -> Iterator[GitWorkspaceStore]:
    s = GitWorkspaceStore(tmp_path / "state" / "ws.git", ws, watch=watch)
    yield s
    s.close()


def make(path: Path, data: str = "x\n", perm: int = 0o644, owner: tuple[int, int] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    if owner is not None:
        os.chown(path, *owner)
    os.chmod(path, perm)  # after chown, which clears set-id bits
    return path


def owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def perm(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def owners(root: Path) -> dict[str, tuple[int, int]]:
    out = {".": owner(root)}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = Path(dirpath) / name
            out[str(full.relative_to(root))] = owner(full)
    return out


def strip(store: GitWorkspaceStore, old: Snapshot, new: Snapshot) -> tuple[Snapshot, tuple[str, ...]]:
    """strip_privileges, its findings in words (as an action's result lists them)."""
    snap, found = store.strip_privileges(old, new)
    return snap, listed(found)


def has_capability(path: Path) -> bool:
    try:
        os.getxattr(path, CAPABILITY_XATTR, follow_symlinks=False)
    except OSError:
        return False
    return True


# -- owners and full modes are restored ------------------------------------------------


def test_undo_of_a_deleted_nobody_owned_setuid_file_recreates_it_as_it_was(store: GitWorkspaceStore, ws: Path) -> None:
    make(ws / "bin" / "suid", "#!/bin/sh\n", 0o4755, NOBODY)
    os.chown(ws / "bin", *NOBODY)
    os.chmod(ws / "bin", 0o2775)  # a setgid directory is kept too
    os.symlink("suid", ws / "bin" / "link")
    os.chown(ws / "bin" / "link", *NOBODY, follow_symlinks=False)
    (ws / "scratch").mkdir()
    os.chmod(ws / "scratch", 0o1777)  # and the sticky bit
    before, owned_before = fingerprint(ws), owners(ws)
    pre = store.capture()

    for p in (ws / "bin" / "link", ws / "bin" / "suid"):
        p.unlink()
    for d in (ws / "bin", ws / "scratch"):
        d.rmdir()
    store.capture()
    report = store.restore(pre)

    assert report.unowned == ()
    assert fingerprint(ws) == before, describe_diff(before, fingerprint(ws))
    assert owners(ws) == owned_before
    assert owner(ws / "bin" / "suid") == NOBODY and perm(ws / "bin" / "suid") == 0o4755  # not root's
    assert perm(ws / "bin") == 0o2775 and perm(ws / "scratch") == 0o1777
    assert store.capture() == pre


def test_restore_into_a_users_workspace_leaves_every_file_theirs(tmp_path: Path, watch: bool) -> None:
    user = ensure_system_user(WS_USER)
    alice = (user.pw_uid, user.pw_gid)
    ws = tmp_path / "alice"
    ws.mkdir()
    for p in [make(ws / "a.txt"), make(ws / "sub" / "b.txt"), make(ws / "sub" / "deep" / "c.sh", perm=0o750)]:
        os.chown(p, *alice)
    for d in (ws, ws / "sub", ws / "sub" / "deep"):
        os.chown(d, *alice)
    with GitWorkspaceStore(tmp_path / "store.git", ws, watch=watch) as store:
        pre = store.capture()
        before = fingerprint(ws)
        # What a root action did: rewrote one file, removed a tree, added a root-owned one.
        (ws / "a.txt").unlink()
        make(ws / "a.txt", "changed\n")
        for p in (ws / "sub" / "deep" / "c.sh", ws / "sub" / "b.txt"):
            p.unlink()
        (ws / "sub" / "deep").rmdir()
        (ws / "sub").rmdir()
        make(ws / "new.txt")
        store.capture()
        assert owner(ws / "a.txt") == (0, 0)  # the control: root made it

        assert store.restore(pre).unowned == ()
        assert fingerprint(ws) == before, describe_diff(before, fingerprint(ws))
        assert set(owners(ws).values()) == {alice}, owners(ws)


def test_a_change_of_owner_alone_is_a_change_and_is_undone(store: GitWorkspaceStore, ws: Path) -> None:
    pre = store.capture()
    os.chown(ws / "a.txt", *NOBODY)
    post = store.capture()
    assert post != pre
    changes = store.changes(pre, post)
    assert [(c.kind, c.path) for c in changes.changes] == [(ChangeKind.MODE_CHANGED, "a.txt")]
    store.restore(pre)
    assert owner(ws / "a.txt") == (0, 0)
    assert store.capture() == pre


def test_a_default_owned_workspace_costs_no_owner_entries(store: GitWorkspaceStore, ws: Path, tmp_path: Path) -> None:
    """Owners equal to the store's default are left out, so such a snapshot reads exactly as one
    written before owners were recorded (and old snapshots read as default-owned)."""
    make(ws / "d" / "f.txt")
    snap = store.capture()
    repo = pygit2.Repository(str(tmp_path / "state" / "ws.git"))
    root = repo[snap.id]
    assert isinstance(root, pygit2.Tree)
    meta = root[META]
    assert isinstance(meta, pygit2.Tree)
    root_meta = repo[meta[SELF].id]
    assert isinstance(root_meta, pygit2.Blob)
    assert root_meta.data == b"%o" % perm(ws)
    assert [e.name for e in meta] == [SELF, "_d"]  # no file entries: 644 and owned by the default
    assert repo.config["goex.defaultOwner"] == "0:0"


def test_the_default_owner_is_the_stores_not_the_current_roots(tmp_path: Path, ws: Path, watch: bool) -> None:
    """Chowning the workspace root later changes one entry, not the reading of every other."""
    git_dir = tmp_path / "store.git"
    with GitWorkspaceStore(git_dir, ws, watch=watch) as store:
        pre = store.capture()
    os.chown(ws, *NOBODY)
    with GitWorkspaceStore(git_dir, ws, watch=watch) as store:
        post = store.capture()
        assert [c.path for c in store.changes(pre, post).changes] == ["./"]
        store.restore(pre)
        assert owners(ws) == {".": (0, 0), "a.txt": (0, 0)}


# -- privileges are taken away after an action ------------------------------------------


def test_a_new_setuid_or_setgid_file_loses_its_bits_and_it_is_said(store: GitWorkspaceStore, ws: Path) -> None:
    pre = store.capture()
    make(ws / "rootsh", "#!/bin/sh\n", 0o4755)
    make(ws / "groupsh", "#!/bin/sh\n", 0o2711)
    make(ws / "plain", "#!/bin/sh\n", 0o755)
    assert perm(ws / "rootsh") == 0o4755  # the control: the bits were set

    post, notes = strip(store, pre, store.capture())

    assert (perm(ws / "rootsh"), perm(ws / "groupsh"), perm(ws / "plain")) == (0o755, 0o711, 0o755)
    assert notes == (
        "removed the set-group-ID bit of groupsh (mode 2711 -> 0711)",
        "removed the set-user-ID bit of rootsh (mode 4755 -> 0755)",
    )
    # The snapshot the action's result is built from is the stripped state.
    assert post == store.capture()
    modes = {c.path: c.new_mode for c in store.changes(pre, post).changes}
    assert modes == {"groupsh": stat.S_IFREG | 0o711, "plain": stat.S_IFREG | 0o755, "rootsh": stat.S_IFREG | 0o755}


def test_a_setuid_file_from_before_the_action_is_left_alone(store: GitWorkspaceStore, ws: Path) -> None:
    make(ws / "users-own", "#!/bin/sh\n", 0o4755)
    pre = store.capture()
    make(ws / "other.txt")
    _, notes = strip(store, pre, store.capture())
    assert notes == ()
    assert perm(ws / "users-own") == 0o4755


def test_a_setuid_file_the_action_changed_is_stripped(store: GitWorkspaceStore, ws: Path) -> None:
    make(ws / "users-own", "#!/bin/sh\n", 0o4755)
    pre = store.capture()
    os.chmod(ws / "users-own", 0o4750)  # still set-id: changed by the action
    _, notes = strip(store, pre, store.capture())
    assert notes == ("removed the set-user-ID bit of users-own (mode 4750 -> 0750)",)
    assert perm(ws / "users-own") == 0o750


def test_a_new_hard_link_to_a_setuid_file_strips_the_inode_and_the_snapshot_sees_both_names(
    store: GitWorkspaceStore, ws: Path
) -> None:
    make(ws / "d" / "users-own", "#!/bin/sh\n", 0o4755)
    pre = store.capture()
    os.link(ws / "d" / "users-own", ws / "exposed")

    post, notes = strip(store, pre, store.capture())

    assert notes == (
        "removed the set-user-ID bit of exposed (mode 4755 -> 0755); the file has 2 hard links, which all lost them",
    )
    assert perm(ws / "exposed") == perm(ws / "d" / "users-own") == 0o755
    kinds = {c.path: c.kind for c in store.changes(pre, post).changes}
    assert kinds == {"exposed": ChangeKind.ADDED, "d/users-own": ChangeKind.MODE_CHANGED}
    # Undo puts the user's file back as it was and drops the new name.
    store.restore(pre)
    assert perm(ws / "d" / "users-own") == 0o4755 and not (ws / "exposed").exists()


def test_setgid_directories_are_kept(store: GitWorkspaceStore, ws: Path) -> None:
    pre = store.capture()
    (ws / "shared").mkdir()
    os.chmod(ws / "shared", 0o2775)
    make(ws / "shared" / "f.txt")
    _, notes = strip(store, pre, store.capture())
    assert notes == ()
    assert perm(ws / "shared") == 0o2775


def test_a_symlink_to_a_setuid_file_outside_is_not_followed(store: GitWorkspaceStore, ws: Path, tmp_path: Path) -> None:
    outside = make(tmp_path / "outside" / "suid", "#!/bin/sh\n", 0o4755)
    pre = store.capture()
    os.symlink(outside, ws / "link")
    (ws / "dir").mkdir()
    os.symlink(outside.parent, ws / "dir" / "via")  # a directory symlink: "dir/via/suid" must not resolve
    _, notes = strip(store, pre, store.capture())
    assert notes == ()
    assert perm(outside) == 0o4755


def test_a_file_capability_is_removed_from_a_changed_file(store: GitWorkspaceStore, ws: Path) -> None:
    make(ws / "ping", "#!/bin/sh\n", 0o755)
    os.setxattr(ws / "ping", CAPABILITY_XATTR, CAP_NET_RAW)
    make(ws / "untouched", "#!/bin/sh\n", 0o755)
    os.setxattr(ws / "untouched", CAPABILITY_XATTR, CAP_NET_RAW)
    pre = store.capture()
    os.chmod(ws / "ping", 0o4750)  # a mode change: in the change set in both modes

    _, notes = strip(store, pre, store.capture())

    assert notes == (
        f"removed the set-user-ID bit and the file capability ({CAPABILITY_XATTR}) of ping (mode 4750 -> 0750)",
    )
    assert not has_capability(ws / "ping") and perm(ws / "ping") == 0o750
    assert has_capability(ws / "untouched")  # the control: not changed by the action, kept


def test_a_capability_written_on_an_unchanged_file_is_found_through_inotify(tmp_path: Path, ws: Path) -> None:
    """Content and mode unchanged, so no snapshot differs; the inotify event names the file."""
    make(ws / "tool", "#!/bin/sh\n", 0o755)
    with GitWorkspaceStore(tmp_path / "store.git", ws, watch=True) as store:
        pre = store.capture()
        os.setxattr(ws / "tool", CAPABILITY_XATTR, CAP_NET_RAW)
        post = store.capture()
        assert post == pre  # the control: invisible to the snapshot
        _, notes = strip(store, pre, post)
    assert notes == (f"removed the file capability ({CAPABILITY_XATTR}) of tool",)
    assert not has_capability(ws / "tool")


def test_strip_refuses_a_snapshot_that_is_not_the_latest(store: GitWorkspaceStore, ws: Path) -> None:
    pre = store.capture()
    make(ws / "b.txt")
    store.capture()
    with pytest.raises(SnapshotError, match="not the latest capture"):
        strip(store, pre, Snapshot(pre.id))
