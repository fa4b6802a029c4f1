"""The escape that lets a snapshot hold names git refuses (layout.store_name): a bijection on every
name a directory can hold, whose results git and libgit2 accept, and whose notion of "refused" is
libgit2's own."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pygit2
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pygit2.enums import FileMode

from goexd.snapshots.layout import (
    ESCAPE,
    git_refuses,
    needs_escape,
    store_name,
    store_path,
    workspace_name,
    workspace_path,
)

_BLOB = pygit2.Oid(hex="e69de29bb2d1d6434b8b29ae775ad8c2e48c5391")  # the empty blob

# Names as goexd holds them: a directory entry's bytes (no "/", no NUL), os.fsdecode'd.
_interesting = st.sampled_from([".git", ".GIT", "git~1", "GIT~1", ".gitmodules", ESCAPE, ".", " ", ":", "\\", "~1"])
_raw_names = st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b)
_mixed = st.lists(st.one_of(_interesting, _raw_names.map(os.fsdecode)), min_size=1, max_size=4).map("".join)
names = st.one_of(_raw_names.map(os.fsdecode), _mixed).filter(lambda n: n not in (".", "..") and "/" not in n)


def _index_accepts(path: str) -> bool:
    """Whether libgit2 takes `path` into an index (its NTFS rules on, as for the store's indexes)."""
    try:
        pygit2.Index().add(pygit2.IndexEntry(path, _BLOB, FileMode.BLOB))
    except (ValueError, pygit2.GitError):
        return False
    return True


@settings(max_examples=600, deadline=None)
@given(names)
@example(".git")
@example(".Git. .")
@example("git~1:stream")
@example(".git\\x")
@example(ESCAPE + ".git")
@example(ESCAPE + "plain")
@example(ESCAPE + ESCAPE + ".GIT")
def test_encode_decode_is_a_bijection_and_escaped_names_are_storable(name: str) -> None:
    stored = store_name(name)
    assert workspace_name(stored) == name
    # Only names that need it change, and then only by the prefix: distinct names stay distinct.
    assert stored == (ESCAPE + name if needs_escape(name) else name)
    assert not git_refuses(stored)
    assert _index_accepts("d/" + stored)
    # The rule is libgit2's: a name it refuses is one goexd escapes.
    assert git_refuses(name) == (not _index_accepts("d/" + name))


@settings(max_examples=200, deadline=None)
@given(st.lists(names, min_size=1, max_size=5), st.lists(names, min_size=1, max_size=5))
def test_paths_round_trip_and_distinct_paths_stay_distinct(a: list[str], b: list[str]) -> None:
    pa, pb = "/".join(a), "/".join(b)
    assert workspace_path(store_path(pa)) == pa
    assert (store_path(pa) == store_path(pb)) == (pa == pb)


def test_names_a_store_older_than_escaping_holds_read_unchanged() -> None:
    """Such a store holds no escaped names; a name that starts with the prefix was stored as it is,
    and reads back as it is unless what follows the prefix would itself need escaping."""
    for old in ("plain", "a.txt", ESCAPE + "x", ESCAPE, ".gitignore", ".gitmodules", "gitx"):
        assert workspace_name(old) == old
    assert workspace_path("sub/dir/file") == "sub/dir/file"
    assert store_path("sub/dir/file") == "sub/dir/file"  # and unchanged names keep their snapshot ids


@pytest.mark.parametrize(
    "name",
    [".git", ".GIT", ".gIt", ".git.", ".git ", ".git. .", "git~1", "GIT~1", ".git:x", ".git::$INDEX_ALLOCATION"],
)
def test_escaped_tree_passes_git_fsck(tmp_path: Path, name: str) -> None:
    """The git CLI's strictest check accepts a tree holding the escaped name (as a directory and a file)."""
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    blob = repo.create_blob(b"x")
    index = pygit2.Index()
    index.add(pygit2.IndexEntry(f"sub/{store_name(name)}/config", blob, FileMode.BLOB))
    index.add(pygit2.IndexEntry(f"{store_name(name)}", blob, FileMode.BLOB))
    repo.create_commit("refs/heads/main", *(2 * [pygit2.Signature("t", "t@t", 0)]), "m", index.write_tree(repo), [])
    fsck = subprocess.run(["git", "--git-dir", str(tmp_path / "r.git"), "fsck", "--strict"], capture_output=True)
    assert fsck.returncode == 0, fsck.stderr
