"""A nested repository's .git in the snapshot store (issue 14): captured, reverted three-way, set aside
and flagged like any directory, against real git and real files, with inotify and with full scans.

The "action" here is what changed the workspace between two captures (its `pre` and `post`); undo is
revert(post, pre), as the fs resource does it.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from goexd.domain.snapshots import RevertConflict, Snapshot
from goexd.snapshots.git_store import GitWorkspaceStore
from goexd.snapshots.layout import ESCAPE, WORK
from goexd.snapshots.safefs import SafeFS
from tests.fs_fingerprint import describe_diff, fingerprint, tree_digest


@pytest.fixture(params=[True, False], ids=["watch", "scan"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[GitWorkspaceStore, Path]]:
    ws = tmp_path / "ws"
    ws.mkdir()
    s = GitWorkspaceStore(tmp_path / "state" / "ws.git", ws, watch=bool(request.param))
    yield s, ws
    s.close()


def git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def nested_repo(ws: Path, name: str = "sub") -> Path:
    repo = ws / name
    repo.mkdir(parents=True)
    (repo / "code.py").write_text("v1\n")
    git(repo, "init", "-q")
    git(repo, "add", "code.py")
    git(repo, "commit", "-qm", "one")
    (repo / "code.py").write_text("v2\n")
    git(repo, "commit", "-qam", "two")
    return repo


def repo_state(repo: Path) -> tuple[str, ...]:
    """What a person would compare: history, refs, index and every object, byte for byte."""
    return (
        git(repo, "log", "--format=%H %s"),
        git(repo, "show-ref"),
        git(repo, "ls-files", "--stage"),
        tree_digest(repo / ".git"),
    )


def test_a_commit_in_a_nested_repository_is_undone_byte_exact(store: tuple[GitWorkspaceStore, Path]) -> None:
    s, ws = store
    repo = nested_repo(ws)
    pre, before, at_pre = s.capture(), repo_state(repo), fingerprint(ws)

    (repo / "code.py").write_text("agent\n")
    (repo / "new.py").write_text("new\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "by the agent")
    git(repo, "gc", "-q")  # packs and prunes: objects and refs rewritten, loose ones removed
    post = s.capture()
    if s._tracker is not None:  # inotify saw every write inside the nested .git: no rescan needed
        assert s.full_scans == 1
    changes = s.changes(pre, post)
    git_paths = [c for c in changes.changes if c.path.startswith("sub/.git/")]
    assert git_paths and all(c.runs_code for c in git_paths)
    assert any("sub/.git/" in w for w in changes.warnings)

    done = s.revert(post, pre)
    assert not done.plan.conflicts
    assert repo_state(repo) == before
    actual = fingerprint(ws)
    assert actual == at_pre, describe_diff(at_pre, actual)
    git(repo, "fsck", "--strict", "--no-dangling")
    assert s.capture() == pre


def test_a_planted_repository_is_flagged_and_its_undo_removes_it(store: tuple[GitWorkspaceStore, Path]) -> None:
    s, ws = store
    (ws / "a.txt").write_text("a\n")
    pre = s.capture()
    (ws / "vendor" / "lib").mkdir(parents=True)
    git(ws / "vendor" / "lib", "init", "-q")
    git(ws / "vendor" / "lib", "config", "core.fsmonitor", "touch /tmp/pwned-by-fsmonitor")
    post = s.capture()
    flagged = {c.path: c.runs_code for c in s.changes(pre, post).changes}
    assert flagged["vendor/lib/.git/config"] is True
    assert all(flagged[p] for p in flagged if "/.git/" in p)
    s.revert(post, pre)
    assert not (ws / "vendor").exists()
    assert s.capture() == pre


def test_a_persons_edit_to_a_nested_config_conflicts_and_force_sets_it_aside(
    store: tuple[GitWorkspaceStore, Path],
) -> None:
    s, ws = store
    repo = nested_repo(ws)
    pre = s.capture()
    config_before = (repo / ".git" / "config").read_bytes()
    git(repo, "config", "user.name", "the agent")
    post = s.capture()
    with (repo / ".git" / "config").open("a") as f:  # the person, after the action
        f.write("[alias]\n\tst = status\n")
    mine = (repo / ".git" / "config").read_bytes()
    with pytest.raises(RevertConflict) as refused:
        s.revert(post, pre)
    assert refused.value.paths == ("sub/.git/config",)
    assert (repo / ".git" / "config").read_bytes() == mine  # nothing written

    done = s.revert(post, pre, force=True)
    assert done.plan.conflicts == ("sub/.git/config",)
    assert (repo / ".git" / "config").read_bytes() == config_before
    kept = s.set_aside(done.before, done.after, done.plan.conflicts, "a1", "forced")
    s.restore_set_aside(kept.id)
    assert (repo / ".git" / "config").read_bytes() == mine


def test_escaped_names_and_names_that_collide_with_the_prefix_round_trip(
    store: tuple[GitWorkspaceStore, Path],
) -> None:
    s, ws = store
    names = [".GIT/x", "d/.Git./y", "git~1", f"{ESCAPE}.git/z", f"{ESCAPE}{ESCAPE}.GIT", f"{ESCAPE}plain", "sub/.git"]
    pre, empty = s.capture(), fingerprint(ws)
    for name in names:
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text(name)
    post, at_post = s.capture(), fingerprint(ws)
    assert sorted(c.path for c in s.changes(pre, post).changes) == sorted(names)
    # The store holds each under one name, decoded back exactly (a .git file in sub/: a gitlink's).
    work = pygit2.Repository(str(s.git_dir))[post.id][WORK]
    assert isinstance(work, pygit2.Tree)
    e = ESCAPE
    assert {x.name for x in work} == {
        f"{e}.GIT",
        "d",
        f"{e}git~1",
        f"{e}{e}.git",
        f"{e}{e}{e}.GIT",
        f"{e}{e}plain",
        "sub",
    }
    s.revert(post, pre)
    assert fingerprint(ws) == empty
    s.revert(pre, post)
    assert fingerprint(ws) == at_post
    assert s.capture() == post


def test_ids_are_stable_and_ordinary_names_are_stored_as_git_writes_them(
    store: tuple[GitWorkspaceStore, Path], tmp_path: Path
) -> None:
    """Escaping changes nothing for a workspace without names git refuses: its workspace tree is the
    one `git write-tree` makes of it (as before escaping existed), and an unchanged one keeps its id."""
    s, ws = store
    for name in ("a.txt", "src/m.py", ".gitignore", ".github/workflows/ci.yml", "gitlab/x"):
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text(name)
    first = s.capture()
    assert s.capture() == first
    plain = tmp_path / "plain.git"
    git(tmp_path, "init", "-q", "--bare", str(plain))
    git(tmp_path, f"--git-dir={plain}", f"--work-tree={ws}", "add", "-A", "-f")
    tree = git(tmp_path, f"--git-dir={plain}", "write-tree").strip()
    work = pygit2.Repository(str(s.git_dir))[first.id][WORK]
    assert str(work.id) == tree
    with GitWorkspaceStore(s.git_dir, ws, watch=False) as again:  # a new process, a full scan
        assert again.capture() == first


def test_a_snapshot_written_before_escaping_restores(store: tuple[GitWorkspaceStore, Path]) -> None:
    """An older store held a name that starts with the prefix as it is: it still restores, and the
    change set lists it once, under its own name."""
    s, ws = store
    (ws / "a.txt").write_text("a\n")
    current = s.capture()
    repo = pygit2.Repository(str(s.git_dir))
    root = repo[current.id]
    assert isinstance(root, pygit2.Tree)
    tb = repo.TreeBuilder(root[WORK])
    tb.insert(f"{ESCAPE}old", repo.create_blob(b"old\n"), pygit2.enums.FileMode.BLOB)
    top = repo.TreeBuilder(root)
    top.insert(WORK, tb.write(), pygit2.enums.FileMode.TREE)
    old = Snapshot(str(top.write()))
    s.revert(current, old)
    assert (ws / f"{ESCAPE}old").read_text() == "old\n"
    now = s.capture()  # held escaped now: another id for the same workspace
    assert [c.path for c in s.changes(old, now).changes] == []
    assert [c.path for c in s.changes(current, now).changes] == [f"{ESCAPE}old"]


def test_a_full_scan_rereads_only_the_nested_files_that_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git's stat cache does not cover what goexd stages itself: its own keeps a full scan from
    re-reading a nested repository whole, and still sees a same-size rewrite whose mtime was put back."""
    ws = tmp_path / "ws"
    ws.mkdir()
    repo = nested_repo(ws)
    time.sleep(0.2)  # older than the racy window: remembered once read
    with GitWorkspaceStore(tmp_path / "state.git", ws, watch=False) as s:
        first = s.capture()
        reads: list[str] = []
        real = s._read_file

        def counting(path: str, fs: SafeFS) -> tuple[pygit2.Oid, os.stat_result]:
            reads.append(path)
            return real(path, fs)

        monkeypatch.setattr(s, "_read_file", counting)
        assert s.capture() == first and reads == []
        st = (repo / "code.py").stat()
        (repo / "code.py").write_text("v3\n")  # same size
        os.utime(repo / "code.py", ns=(st.st_atime_ns, st.st_mtime_ns))
        second = s.capture()
        assert reads == ["sub/code.py"]
        assert [c.path for c in s.changes(first, second).changes] == ["sub/code.py"]
