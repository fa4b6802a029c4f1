"""The store's git directory: creation, configuration, and the git CLI's full add.

The store is a bare repository with no worktree configured, so no git command run in
it can touch the workspace by accident; the full scan names the worktree explicitly.
Settings that could alter bytes (autocrlf, filters from a workspace .gitattributes,
the user's global config) are pinned off, and automatic gc is disabled.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pygit2

from goexd.domain.snapshots import SnapshotError

CONFIG: dict[str, str | bool | int] = {
    "core.autocrlf": False,
    "core.safecrlf": False,
    "core.filemode": True,
    "core.symlinks": True,
    "core.ignorecase": False,
    "core.precomposeunicode": False,
    "core.protectNTFS": False,
    "core.protectHFS": False,
    "core.fsmonitor": False,
    "core.untrackedCache": True,
    "core.splitIndex": False,
    # Large binaries: zlib at level 1 costs ~5 s per 200 MB of random data, level 0
    # about a third of that (see objects.py for the numbers).
    "core.looseCompression": 0,
    "core.compression": 0,
    "gc.auto": 0,
    "gc.autoDetach": False,
    "maintenance.auto": False,
}

# An object directory's name: the first two hex digits of the ids it holds.
_FANOUT = re.compile(r"[0-9a-f]{2}")

# Overrides any .gitattributes in the workspace: content is stored byte for byte.
ATTRIBUTES = "* -text -eol -crlf -filter -ident -working-tree-encoding\n"


def open_repo(git_dir: Path) -> pygit2.Repository:
    try:
        if not (git_dir / "HEAD").exists():
            git_dir.parent.mkdir(parents=True, exist_ok=True)
            pygit2.init_repository(str(git_dir), bare=True)
        # Only this store uses the directory: a lock left by a crash is stale, and so is what a
        # write that died (a full disk, a kill) left half written; gone first, it frees the space.
        (git_dir / "index.lock").unlink(missing_ok=True)
        remove_stale_locks(git_dir)
        remove_temporaries(git_dir)
        repo = pygit2.Repository(str(git_dir))
        for key, value in CONFIG.items():
            if _config_get(repo, key) != value:
                repo.config[key] = value
        info = git_dir / "info"
        info.mkdir(exist_ok=True)
        attrs = info / "attributes"
        if not attrs.exists() or attrs.read_text() != ATTRIBUTES:
            attrs.write_text(ATTRIBUTES)
    except (OSError, pygit2.GitError) as e:
        raise SnapshotError(f"cannot open snapshot store {git_dir}: {e}") from e
    return repo


def remove_temporaries(git_dir: Path) -> int:
    """Remove what an object write that failed left in the object store: git's tmp_obj_*, libgit2's
    tmp_object_git2_*, goexd's own tmp_goex_* (objects.py), tmp_pack_* and tmp_idx_*; returns the bytes
    freed. Only while no write to the store is under way (the store's own lock, or at open)."""
    objects = git_dir / "objects"
    freed = 0
    try:
        dirs = [objects, *(Path(e.path) for e in os.scandir(objects) if _FANOUT.fullmatch(e.name) or e.name == "pack")]
    except FileNotFoundError:
        return 0
    for d in dirs:
        try:
            entries = [e for e in os.scandir(d) if e.name.startswith("tmp_") and e.is_file(follow_symlinks=False)]
        except FileNotFoundError:
            continue
        for e in entries:
            try:
                size = e.stat(follow_symlinks=False).st_size
                os.unlink(e.path)
            except FileNotFoundError:
                continue
            freed += size
    return freed


def remove_leftovers(git_dir: Path) -> int:
    """After a failed write, under the store's lock: the index lock git add held and every temporary."""
    (git_dir / "index.lock").unlink(missing_ok=True)
    return remove_temporaries(git_dir)


def remove_stale_locks(git_dir: Path) -> None:
    """Remove ref and config lock files (git's `*.lock`), which a write that died leaves for ever."""
    for top in (git_dir / "refs", git_dir / "logs"):
        for lock in top.rglob("*.lock") if top.is_dir() else ():
            lock.unlink(missing_ok=True)
    for name in ("packed-refs.lock", "config.lock", "HEAD.lock"):
        (git_dir / name).unlink(missing_ok=True)


def _config_get(repo: pygit2.Repository, key: str) -> str | bool | int | None:
    try:
        raw = repo.config[key]
    except KeyError:
        return None
    if raw is None:
        return None
    if raw in ("true", "false"):
        return raw == "true"
    try:
        return int(raw)
    except ValueError:
        return raw


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, LC_ALL="C")
    return env


class VanishedDuringAdd(SnapshotError):
    """git add died because a path vanished or changed type while it ran."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


# How git names the path it trips over when a file vanishes under it.
_VANISHED = re.compile(rb"unable to stat '(.+?)': |open\(\"(.+?)\"\): |unable to index file '(.+?)'")


def add_all(git_dir: Path, workspace: Path, exclude: list[str]) -> None:
    """`git add -A -f`: uses git's stat cache and untracked cache, and force-adds
    ignored files. `exclude`d paths (and everything below them) are left alone."""
    cmd = ["git", f"--git-dir={git_dir}", f"--work-tree={workspace}", "add", "-A", "-f"]
    specs = b"".join(b":(exclude,literal)" + os.fsencode(p) + b"\0" for p in exclude)
    if specs:
        cmd += ["--pathspec-from-file=-", "--pathspec-file-nul"]
    try:
        proc = subprocess.run(cmd, input=specs, capture_output=True, env=_env(), check=False)
    except OSError as e:
        raise SnapshotError(f"cannot run git: {e}") from e
    if proc.returncode == 0:
        return
    message = f"git add failed in {workspace}: {proc.stderr.decode(errors='replace').strip()}"
    found = _VANISHED.search(proc.stderr)
    if found:
        raw = next(g for g in found.groups() if g is not None)
        raise VanishedDuringAdd(os.fsdecode(raw), message)
    raise SnapshotError(message)
