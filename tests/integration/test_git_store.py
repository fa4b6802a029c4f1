"""GitWorkspaceStore against real git, real inotify and real files, in both modes."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goexd.domain.snapshots import ChangeKind, Snapshot, SnapshotError
from goexd.snapshots.git_store import PRE_RESTORE_REF, GitWorkspaceStore
from goexd.snapshots.layout import ESCAPE, SMALL_BLOB
from tests.fs_fingerprint import describe_diff, fingerprint, tree_digest

MODES = [pytest.param(True, id="watch"), pytest.param(False, id="scan")]


@pytest.fixture(params=MODES)
def watch(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    w.mkdir()
    return w


@pytest.fixture
def store(tmp_path: Path, ws: Path, watch: bool) -> Iterator[GitWorkspaceStore]:
    s = GitWorkspaceStore(tmp_path / "state" / "fs" / "ws.git", ws, watch=watch)
    yield s
    s.close()


def write(path: Path, data: str | bytes, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mode is not None:
        os.chmod(path, mode)


def assert_restores(store: GitWorkspaceStore, ws: Path, snap: Snapshot, expected: dict) -> None:
    store.restore(snap)
    actual = fingerprint(ws)
    assert actual == expected, describe_diff(expected, actual)
    assert store.capture() == snap


# -- hand-picked cases ---------------------------------------------------------------


def test_add_modify_delete_roundtrip(store: GitWorkspaceStore, ws: Path) -> None:
    write(ws / "a.txt", "one")
    write(ws / "src/b.py", "print(1)\n")
    write(ws / "src/deep/c.bin", bytes(range(256)))
    s1, f1 = store.capture(), fingerprint(ws)
    assert store.capture() == s1  # nothing changed: same id

    write(ws / "a.txt", "two")
    (ws / "src/b.py").unlink()
    write(ws / "new/d.txt", "d")
    s2, f2 = store.capture(), fingerprint(ws)
    assert s2 != s1

    assert_restores(store, ws, s1, f1)
    assert_restores(store, ws, s2, f2)


def test_identical_trees_have_identical_ids(tmp_path: Path, watch: bool) -> None:
    ids = []
    for name in ("one", "two"):
        w = tmp_path / name
        write(w / "x/y.txt", "same")
        os.chmod(w / "x", 0o750)
        with GitWorkspaceStore(tmp_path / f"{name}.git", w, watch=watch) as s:
            ids.append(s.capture().id)
    assert ids[0] == ids[1]


def test_exact_permission_bits(store: GitWorkspaceStore, ws: Path) -> None:
    for mode in (0o600, 0o640, 0o700, 0o755, 0o644, 0o711, 0o4755, 0o444):
        write(ws / f"f{mode:o}", f"{mode:o}", mode)
    for mode in (0o700, 0o750, 0o755, 0o500, 0o1777):
        (ws / f"d{mode:o}").mkdir()
        write(ws / f"d{mode:o}" / "inner", "x")
        os.chmod(ws / f"d{mode:o}", mode)
    os.chmod(ws, 0o710)
    s1, f1 = store.capture(), fingerprint(ws)

    os.chmod(ws / "f600", 0o644)
    os.chmod(ws / "f640", 0o600)
    os.chmod(ws / "f755", 0o700)
    os.chmod(ws / "d700", 0o755)
    os.chmod(ws, 0o755)
    s2, f2 = store.capture(), fingerprint(ws)
    changes = store.changes(s1, s2)
    kinds = {c.path: c.kind for c in changes.changes}
    assert kinds == {
        "./": ChangeKind.MODE_CHANGED,
        "d700/": ChangeKind.MODE_CHANGED,
        "f600": ChangeKind.MODE_CHANGED,
        "f640": ChangeKind.MODE_CHANGED,
        "f755": ChangeKind.MODE_CHANGED,
    }
    by_path = {c.path: c for c in changes.changes}
    assert by_path["f640"].old_mode == stat.S_IFREG | 0o640
    assert by_path["f640"].new_mode == stat.S_IFREG | 0o600
    assert by_path["d700/"].new_mode == stat.S_IFDIR | 0o755

    assert_restores(store, ws, s1, f1)
    assert_restores(store, ws, s2, f2)


def test_symlinks_and_type_changes(store: GitWorkspaceStore, ws: Path) -> None:
    write(ws / "target.txt", "t")
    os.symlink("target.txt", ws / "good")
    os.symlink("does/not/exist", ws / "dangling")
    os.symlink("/etc", ws / "abs_dir_link")
    write(ws / "was_file", "file content")
    os.symlink("target.txt", ws / "was_link")
    (ws / "was_dir").mkdir()
    write(ws / "was_dir/inner", "i")
    s1, f1 = store.capture(), fingerprint(ws)

    (ws / "was_file").unlink()
    os.symlink("target.txt", ws / "was_file")
    (ws / "was_link").unlink()
    write(ws / "was_link", "now a file", 0o600)
    shutil.rmtree(ws / "was_dir")
    os.symlink("target.txt", ws / "was_dir")
    (ws / "dangling").unlink()
    os.symlink("elsewhere", ws / "dangling")
    s2, f2 = store.capture(), fingerprint(ws)

    kinds = {c.path: c.kind for c in store.changes(s1, s2).changes}
    assert kinds["was_file"] == ChangeKind.TYPE_CHANGED
    assert kinds["was_link"] == ChangeKind.TYPE_CHANGED
    assert kinds["was_dir"] == ChangeKind.TYPE_CHANGED
    assert kinds["was_dir/inner"] == ChangeKind.DELETED
    assert kinds["dangling"] == ChangeKind.MODIFIED

    assert_restores(store, ws, s1, f1)
    assert os.readlink(ws / "dangling") == "does/not/exist"
    assert_restores(store, ws, s2, f2)


def test_empty_directories(store: GitWorkspaceStore, ws: Path) -> None:
    (ws / "keep/empty/deeper").mkdir(parents=True)
    (ws / "gone").mkdir()
    s1, f1 = store.capture(), fingerprint(ws)
    (ws / "gone").rmdir()
    (ws / "fresh/empty").mkdir(parents=True)
    write(ws / "filled/x", "x")
    s2, f2 = store.capture(), fingerprint(ws)

    cs = store.changes(s1, s2)
    assert [(c.kind, c.path) for c in cs.changes] == [
        (ChangeKind.ADDED, "filled/x"),  # filled/ itself is implied by its file
        (ChangeKind.ADDED, "fresh/"),
        (ChangeKind.ADDED, "fresh/empty/"),
        (ChangeKind.DELETED, "gone/"),
    ]
    assert (cs.added, cs.modified, cs.deleted) == (3, 0, 1)
    assert_restores(store, ws, s1, f1)
    assert_restores(store, ws, s2, f2)


def test_ignored_files_are_snapshotted(store: GitWorkspaceStore, ws: Path) -> None:
    write(ws / ".gitignore", "*.log\nbuild/\n")
    write(ws / "app.log", "log line")
    write(ws / "build/out.o", b"\x7fELF")
    write(ws / "sub/.gitignore", "*\n")
    write(ws / "sub/hidden", "h")
    s1, f1 = store.capture(), fingerprint(ws)
    for p in ("app.log", "build/out.o", "sub/hidden"):
        (ws / p).unlink()
    store.capture()
    assert_restores(store, ws, s1, f1)


def test_gitattributes_do_not_alter_bytes(store: GitWorkspaceStore, ws: Path) -> None:
    write(ws / ".gitattributes", "* text eol=crlf\n*.txt ident\n")
    write(ws / "a.txt", "line1\nline2\r\n$Id$\n")
    s1, f1 = store.capture(), fingerprint(ws)
    write(ws / "a.txt", "other")
    store.capture()
    assert_restores(store, ws, s1, f1)


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_workspace_git_dir_untouched(store: GitWorkspaceStore, ws: Path) -> None:
    write(ws / "tracked.txt", "v1")
    _git(ws, "init", "-q")
    _git(ws, "add", "tracked.txt")
    _git(ws, "commit", "-qm", "one")
    before = tree_digest(ws / ".git")
    status_before = _git(ws, "status", "--porcelain")

    s1, f1 = store.capture(), fingerprint(ws)
    write(ws / "tracked.txt", "v2")
    write(ws / "untracked.txt", "u")
    store.capture()
    assert tree_digest(ws / ".git") == before
    assert_restores(store, ws, s1, f1)
    assert tree_digest(ws / ".git") == before
    assert _git(ws, "status", "--porcelain") == status_before

    # Removing the workspace's .git does not change the snapshot: it is not part of it.
    shutil.rmtree(ws / ".git")
    s_plain = store.capture()
    assert s_plain == s1  # .git was never part of the snapshot


def test_restore_after_uncaptured_user_changes(store: GitWorkspaceStore, ws: Path) -> None:
    write(ws / "doc.md", "agent version")
    s1, f1 = store.capture(), fingerprint(ws)
    # The user edits after the last capture; restore must not lose this state.
    write(ws / "doc.md", "user edit")
    write(ws / "notes/user.txt", "precious")
    f_user = fingerprint(ws)

    assert_restores(store, ws, s1, f1)
    pre = store._repo.references[PRE_RESTORE_REF].target
    assert_restores(store, ws, Snapshot(str(pre)), f_user)


def test_directory_moves(store: GitWorkspaceStore, ws: Path, tmp_path: Path) -> None:
    write(ws / "a/b/c.txt", "c")
    write(ws / "a/d.txt", "d")
    s1, f1 = store.capture(), fingerprint(ws)

    os.rename(ws / "a", ws / "moved")
    write(ws / "moved/b/after_move.txt", "written under the new name")
    outside = tmp_path / "outside"
    write(outside / "x/y.txt", "from outside")
    os.rename(outside, ws / "came_in")
    s2, f2 = store.capture(), fingerprint(ws)

    os.rename(ws / "moved", tmp_path / "left")  # moved out of the workspace
    write(tmp_path / "left/b/ghost.txt", "must not appear")
    s3, f3 = store.capture(), fingerprint(ws)
    assert "moved/b/ghost.txt" not in f3

    assert_restores(store, ws, s1, f1)
    assert_restores(store, ws, s2, f2)
    assert_restores(store, ws, s3, f3)


def test_dir_replaced_by_file_and_back(store: GitWorkspaceStore, ws: Path) -> None:
    write(ws / "x/inner/f", "f")
    s1, f1 = store.capture(), fingerprint(ws)
    shutil.rmtree(ws / "x")
    write(ws / "x", "now a file")
    s2, f2 = store.capture(), fingerprint(ws)
    assert_restores(store, ws, s1, f1)
    assert_restores(store, ws, s2, f2)


def test_directory_replaced_by_symlink_to_directory(store: GitWorkspaceStore, ws: Path) -> None:
    write(ws / "d/f", "inside")
    write(ws / "other/f", "other")
    s1, f1 = store.capture(), fingerprint(ws)
    write(ws / "d/f", "edited")  # queued as dirty before d is swapped
    shutil.rmtree(ws / "d")
    os.symlink("other", ws / "d")  # d/f now resolves, but only through a symlink
    os.symlink("loop", ws / "loop")
    s2, f2 = store.capture(), fingerprint(ws)
    assert "d/f" not in {c.path for c in store.changes(s1, s2).changes if c.kind == ChangeKind.ADDED}
    assert store.full_scan() == s2
    assert_restores(store, ws, s1, f1)
    assert_restores(store, ws, s2, f2)


def test_large_file_streamed(store: GitWorkspaceStore, ws: Path) -> None:
    big = os.urandom(3 * 1024 * 1024 + 7)
    write(ws / "big.bin", big)
    write(ws / "edge.bin", b"e" * SMALL_BLOB)  # exactly at the streaming threshold
    s1, f1 = store.capture(), fingerprint(ws)
    write(ws / "big.bin", big[::-1])
    (ws / "edge.bin").unlink()
    store.capture()
    assert_restores(store, ws, s1, f1)


def test_unusual_names(store: GitWorkspaceStore, ws: Path) -> None:
    names = [b"sp ace", b"nl\nname", b"bad\xffutf8", "ünï".encode(), b"back\\slash", b"-dash", b"=", b"_x"]
    for n in names:
        write(Path(os.fsdecode(os.path.join(os.fsencode(ws), n))), n)
    s1, f1 = store.capture(), fingerprint(ws)
    for n in names:
        os.unlink(os.path.join(os.fsencode(ws), n))
    store.capture()
    assert_restores(store, ws, s1, f1)


def test_names_git_refuses_are_held_escaped_and_restored(store: GitWorkspaceStore, ws: Path) -> None:
    """Names like ".GIT", "git~1" and a name that starts with the escape prefix are captured, listed under their
    own names and restored; a symlinked .gitmodules (refused by kind) is the one left out."""
    write(ws / "ok.txt", "ok")
    write(ws / "sub/.GIT/config", "not a repo")
    write(ws / "sub/git~1", "ntfs alias")
    write(ws / f"{ESCAPE}.git/x", "collides with the escape of .git")
    write(ws / f"{ESCAPE}plain", "collides with the prefix")
    os.symlink("x", ws / "sub/.gitmodules")
    snap, f1 = store.capture(), fingerprint(ws)
    listed = {c.path for c in store.changes(Snapshot(_empty(store, ws)), snap).changes}
    assert listed == {"ok.txt", "sub/.GIT/config", "sub/git~1", f"{ESCAPE}.git/x", f"{ESCAPE}plain"}
    assert store.capture() == snap
    shutil.rmtree(ws / "sub" / ".GIT")
    (ws / "sub" / "git~1").unlink()
    shutil.rmtree(ws / f"{ESCAPE}.git")
    write(ws / f"{ESCAPE}plain", "changed")
    changed = {c.path for c in store.changes(snap, store.capture()).changes}
    assert changed == {"sub/.GIT/config", "sub/git~1", f"{ESCAPE}.git/x", f"{ESCAPE}plain"}
    store.restore(snap)
    f1.pop("sub/.gitmodules")  # left alone by the restore, as it was
    actual = fingerprint(ws)
    actual.pop("sub/.gitmodules")
    assert actual == f1, describe_diff(f1, actual)
    assert store.capture() == snap


def _empty(store: GitWorkspaceStore, like: Path) -> str:
    """The id of an empty workspace whose root has the same mode as `like`."""
    tmp = Path(tempfile.mkdtemp())
    os.chmod(tmp, stat.S_IMODE(like.stat().st_mode))
    try:
        with GitWorkspaceStore(store._git_dir, tmp, watch=False) as other:
            return other.capture().id
    finally:
        shutil.rmtree(tmp)


def test_nested_repository_contents(store: GitWorkspaceStore, ws: Path) -> None:
    """A nested repository is captured whole, its .git included (escaped in the store), and a restore
    takes both its files and its .git back byte for byte."""
    write(ws / "lib/code.py", "v1")
    _git(ws / "lib", "init", "-q")
    _git(ws / "lib", "add", "code.py")
    _git(ws / "lib", "commit", "-qm", "nested")
    s1, f1 = store.capture(), fingerprint(ws)
    listed = {c.path for c in store.changes(Snapshot(_empty(store, ws)), s1).changes}
    assert {"lib/code.py", "lib/.git/HEAD", "lib/.git/config"} <= listed
    assert all(c.runs_code for c in store.changes(Snapshot(_empty(store, ws)), s1).changes if "/.git/" in c.path)

    write(ws / "lib/code.py", "v2")
    write(ws / "lib/new.py", "n")
    _git(ws / "lib", "add", "-A")
    _git(ws / "lib", "commit", "-qm", "second")
    s2 = store.capture()
    assert any(c.path == "lib/.git/index" for c in store.changes(s1, s2).changes)
    assert_restores(store, ws, s1, f1)
    assert _git(ws / "lib", "log", "--format=%s") == "nested\n"
    _git(ws / "lib", "fsck", "--strict")


def test_changes_sorted_capped_counted(store: GitWorkspaceStore, ws: Path) -> None:
    for i in range(30):
        write(ws / f"f{i:02}", "old")
    s1 = store.capture()
    for i in range(10):
        write(ws / f"f{i:02}", "new")
    for i in range(10, 15):
        (ws / f"f{i:02}").unlink()
    for i in range(7):
        write(ws / f"g{i}", "added")
    s2 = store.capture()
    cs = store.changes(s1, s2, limit=12)
    assert (cs.added, cs.modified, cs.deleted, cs.total) == (7, 10, 5, 22)
    assert cs.truncated and len(cs.changes) == 12
    assert [c.path for c in cs.changes] == sorted(c.path for c in cs.changes)
    assert cs.changes[0] == type(cs.changes[0])(ChangeKind.MODIFIED, "f00", 0o100644, 0o100644)
    full = store.changes(s1, s2, limit=1000)
    assert not full.truncated and len(full.changes) == 22
    assert store.changes(s2, s2).total == 0


def test_pins(store: GitWorkspaceStore, ws: Path, tmp_path: Path, watch: bool) -> None:
    write(ws / "f", "1")
    s1 = store.capture()
    write(ws / "f", "2")
    s2 = store.capture()
    store.pin("action/1", s1)
    store.pin("action/2", s2)
    store.pin("action/2", s1)  # re-pinning moves the pin
    assert store.pinned() == {"action/1": s1, "action/2": s1}
    store.unpin("action/1")
    store.unpin("never-pinned")
    assert store.pinned() == {"action/2": s1}
    with pytest.raises(ValueError):
        store.pin("bad..name", s1)
    with pytest.raises(SnapshotError):
        store.pin("x", Snapshot("0" * 40))
    with pytest.raises(SnapshotError):
        store.restore(Snapshot("not-a-snapshot"))
    store.close()
    with pytest.raises(SnapshotError):
        store.capture()

    # Everything persists in the git dir: a new instance sees pins and snapshots.
    with GitWorkspaceStore(store._git_dir, ws, watch=watch) as again:
        assert again.pinned() == {"action/2": s1}
        assert again.capture() == s2
        again.restore(s1)
        assert (ws / "f").read_text() == "1"
        config = subprocess.run(
            ["git", "--git-dir", str(store._git_dir), "config", "gc.auto"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert config.stdout.strip() == "0"


def test_damaged_index_is_rebuilt(tmp_path: Path, ws: Path, watch: bool) -> None:
    write(ws / "f", "x")
    git_dir = tmp_path / "g.git"
    with GitWorkspaceStore(git_dir, ws, watch=watch) as s:
        snap = s.capture()
    (git_dir / "index").write_bytes(b"garbage")  # the index is only a cache
    with GitWorkspaceStore(git_dir, ws, watch=watch) as s:
        assert s.capture() == snap


def test_workspace_vanishing(tmp_path: Path, watch: bool) -> None:
    w = tmp_path / "w"
    write(w / "f", "x")
    with GitWorkspaceStore(tmp_path / "g.git", w, watch=watch) as s:
        s.capture()
        shutil.rmtree(w)
        with pytest.raises(SnapshotError):
            s.capture()


def test_threads_share_one_store(store: GitWorkspaceStore, ws: Path) -> None:
    write(ws / "f", "x")
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(5):
                write(ws / f"t{i}/{j}", f"{i}{j}")
                store.capture()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    final, fp = store.capture(), fingerprint(ws)
    write(ws / "f", "changed")
    store.capture()
    assert_restores(store, ws, final, fp)


# -- inotify specifics ---------------------------------------------------------------


def test_incremental_capture_does_not_rescan(tmp_path: Path, ws: Path) -> None:
    write(ws / "a/b", "b")
    with GitWorkspaceStore(tmp_path / "g.git", ws, watch=True) as s:
        s1 = s.capture()
        assert s.full_scans == 1
        write(ws / "a/b", "changed")
        (ws / "a/new_dir/deeper").mkdir(parents=True)
        write(ws / "a/new_dir/deeper/f", "f")
        s2 = s.capture()
        s.restore(s1)
        s.restore(s2)
        assert s.full_scans == 1
        # The incremental result equals what a full rescan finds.
        assert s.full_scan() == s2


def test_queue_overflow_falls_back_to_full_scan(tmp_path: Path, ws: Path) -> None:
    write(ws / "a", "a")
    write(ws / "b", "b")
    with GitWorkspaceStore(tmp_path / "g.git", ws, watch=True) as s:
        s.capture()
        limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
        # Alternating paths defeat the kernel's merging of identical events.
        for i in range(limit // 2 + 10):
            os.chmod(ws / "a", 0o600 if i % 2 else 0o644)
            os.chmod(ws / "b", 0o600 if i % 2 else 0o644)
        write(ws / "late", "written after the overflow")
        os.chmod(ws / "a", 0o640)
        s2, f2 = s.capture(), fingerprint(ws)
        assert s.full_scans == 2
        write(ws / "a", "x")
        s.capture()
        assert s.full_scans == 2  # tracking resumed after the rescan
        assert_restores(s, ws, s2, f2)


def test_fallback_scan_matches_incremental(tmp_path: Path, ws: Path) -> None:
    write(ws / "x/y", "y")
    with GitWorkspaceStore(tmp_path / "g.git", ws, watch=True) as s:
        s.capture()
        os.chmod(ws / "x/y", 0o600)
        os.symlink("y", ws / "x/link")
        (ws / "x/empty").mkdir()
        incremental = s.capture()
        assert s.full_scan() == incremental
        assert s.capture() == incremental


# -- property test -------------------------------------------------------------------

DIRS = ["d", "d/e", "k"]
FILES = ["f", "g", "d/f", "d/e/h", "k/m"]
ALL = DIRS + FILES
PERMS = [0o600, 0o640, 0o644, 0o700, 0o755, 0o711, 0o500]
LINK_TARGETS = ["f", "../f", "d", "k", "missing", "/etc/hostname", "/etc"]

op = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(FILES), st.binary(max_size=64)),
    st.tuples(st.just("append"), st.sampled_from(FILES), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.sampled_from(ALL), st.none()),
    st.tuples(st.just("mkdir"), st.sampled_from(ALL), st.none()),
    st.tuples(st.just("rmtree"), st.sampled_from(DIRS), st.none()),
    st.tuples(st.just("chmod"), st.sampled_from([*ALL, ""]), st.sampled_from(PERMS)),
    st.tuples(st.just("symlink"), st.sampled_from(ALL), st.sampled_from(LINK_TARGETS)),
    st.tuples(st.just("rename"), st.sampled_from(ALL), st.sampled_from(ALL)),
)


def apply_op(ws: Path, kind: str, rel: str, arg: object) -> None:
    p = ws / rel if rel else ws
    with contextlib.suppress(OSError):
        if kind == "write":
            assert isinstance(arg, bytes)
            if p.is_symlink():
                p.unlink()  # never write through a link (it may point outside)
            p.write_bytes(arg)
        elif kind == "append":
            assert isinstance(arg, bytes)
            if p.is_file() and not p.is_symlink():
                with open(p, "ab") as f:
                    f.write(arg)
        elif kind == "delete":
            if p.is_symlink() or p.is_file():
                p.unlink()
            elif p.is_dir():
                p.rmdir()
        elif kind == "mkdir":
            p.mkdir()
        elif kind == "rmtree":
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
        elif kind == "chmod":
            assert isinstance(arg, int)
            if not p.is_symlink():
                os.chmod(p, 0o755 if p == ws and arg == 0o500 else arg)
        elif kind == "symlink":
            assert isinstance(arg, str)
            os.symlink(arg, p)
        elif kind == "rename":
            assert isinstance(arg, str)
            os.rename(p, ws / arg)


steps_strategy = st.lists(st.lists(op, min_size=1, max_size=5), min_size=1, max_size=6)


def _property_run(watch: bool, steps: list[list[tuple[str, str, object]]], order: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        ws.mkdir()
        write(ws / "f", "seed")
        with GitWorkspaceStore(Path(tmp) / "g.git", ws, watch=watch) as store:
            history = [(store.capture(), fingerprint(ws))]
            for step in steps:
                for kind, rel, arg in step:
                    apply_op(ws, kind, rel, arg)
                history.append((store.capture(), fingerprint(ws)))
            for (sa, fa), (sb, fb) in itertools.combinations(history, 2):
                assert (sa == sb) == (fa == fb), "ids must be equal exactly when trees are"
            picks = [history[i % len(history)] for i in order] + [history[0]]
            for snap, expected in picks:
                store.restore(snap)
                actual = fingerprint(ws)
                assert actual == expected, describe_diff(expected, actual)


@pytest.mark.parametrize("watch_mode", MODES)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=steps_strategy, order=st.lists(st.integers(0, 10), min_size=1, max_size=4))
def test_restore_any_earlier_snapshot(
    watch_mode: bool, steps: list[list[tuple[str, str, object]]], order: list[int]
) -> None:
    _property_run(watch_mode, steps, order)


def test_capture_while_files_churn(store: GitWorkspaceStore, ws: Path) -> None:
    """Paths vanishing mid-scan and files growing mid-read must not break capture."""
    write(ws / "stable.txt", "s")
    store.capture()
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            d = ws / f"tmp{i % 3}"
            with contextlib.suppress(OSError):
                (d / "a/b").mkdir(parents=True, exist_ok=True)
                write(d / "a/b/f", os.urandom(i % 200))
                with open(ws / "growing.log", "ab") as f:
                    f.write(b"x" * 1000)
                if i % 2:
                    shutil.rmtree(d)
            i += 1

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        during = [store.capture() for _ in range(30)]
    finally:
        stop.set()
        worker.join()
    settled, fp = store.capture(), fingerprint(ws)
    assert store.full_scan() == settled  # incremental tracking kept up
    # Snapshots taken mid-churn describe a coherent state: each one restores and
    # verifies (restore raises otherwise).
    for snap in dict.fromkeys(during):
        store.restore(snap)
    shutil.rmtree(ws / "tmp0", ignore_errors=True)
    write(ws / "stable.txt", "changed")
    store.capture()
    assert_restores(store, ws, settled, fp)
