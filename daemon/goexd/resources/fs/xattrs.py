"""Extended attributes (POSIX ACLs included) of a workspace's files, which snapshots do not hold.

A snapshot holds each path's content, mode and owner, not its extended attributes: a file with an
access ACL (`system.posix_acl_access`, the `+` of `ls -l`), a directory with a default ACL
(`system.posix_acl_default`) or any `user.*` attribute has the snapshot id of one without. goexd
neither applies nor restores them, so what the inverse strategy can do is compare them and say so:
the trial calls a pair that removes or changes them unknown (snapshots/overlay_upper.not_compared),
the undo compares the involved paths' attributes after the inverse with those recorded before the
action (a difference is NOT verified, named), and verdict memory keys a verdict on them too (a digest
of them joins the workspace's fingerprint), so a verdict from a state without an ACL is not reused
on one with it.

Finding them is one walk of the workspace, one listxattr per entry; the resource keeps what it found
and follows the store's captures (GitWorkspaceStore.latest_touched: inotify's dirty set names a path
whose attributes changed, though its snapshot does not change), so it walks again only after a
capture it did not follow (a full scan, an action's apply), O(changed) otherwise
(FsVersionedResource.xattrs_now). The workspace's own top-level `.git` is left out, as snapshots
leave it out. Left out as well: overlayfs' own attributes and `security.*` (labels the system sets,
file capabilities: goexd strips those on every run, snapshots/privileges.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from goexd.snapshots.overlay_upper import NOT_OURS as _NOT_OURS
from goexd.snapshots.overlay_upper import own_xattrs

Xattrs = Mapping[str, str]  # path -> digest of its own extended attributes (only paths that have some)


def of_workspace(workspace: Path) -> dict[str, str]:
    """Every file, directory and symlink of the workspace that carries extended attributes -> their digest."""
    out: dict[str, str] = {}
    root = own_xattrs(workspace)
    if root:
        out[""] = _digest(root)
    stack = [("", os.fspath(workspace))]
    listxattr = os.listxattr
    while stack:
        rel, path = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError:  # unreadable or gone: the store says so where it matters
            continue
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            if name == ".git":
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                held = is_dir or entry.is_file(follow_symlinks=False)
                names = listxattr(entry.path, follow_symlinks=False) if held else []
            except OSError:
                continue
            if any(not n.startswith(_NOT_OURS) for n in names):  # one call per entry; read only where some are
                found = own_xattrs(Path(entry.path))
                if found:
                    out[name] = _digest(found)
            if is_dir:
                stack.append((name, entry.path))
    return out


def updated(found: Xattrs, workspace: Path, paths: Iterable[str]) -> dict[str, str]:
    """`found` after the changes at `paths` (a capture's dirty set: what changed below a directory that appeared
    whole is in it too): each path read again, and what was below one that is gone or no longer a directory
    dropped."""
    out = dict(found)
    for dirty in paths:
        path = dirty.rstrip("/")
        if path == ".git" or path.startswith(".git/"):
            continue
        full = workspace / path if path else workspace
        try:
            is_dir = stat.S_ISDIR(os.lstat(full).st_mode)
            exists = True
        except OSError:
            is_dir = exists = False
        if not is_dir:
            for below in [k for k in out if path and k.startswith(path + "/")]:
                del out[below]
        attrs = own_xattrs(full) if exists else {}
        if attrs:
            out[path] = _digest(attrs)
        else:
            out.pop(path, None)
    return out


def describe(path: str, workspace: Path) -> str:
    """Which extended attributes a path has now, in words: "system.posix_acl_access, user.tag" or "none"."""
    names = sorted(own_xattrs(workspace / path)) if path else sorted(own_xattrs(workspace))
    return ", ".join(names) or "none"


def differences(
    before: Xattrs, now: Xattrs, keep: Callable[[str], bool] = lambda _: True, workspace: Path | None = None
) -> list[str]:
    """For the paths `keep` accepts: "a: extended attributes differ (had some, now none)" and the like."""
    out = []
    for path in sorted(set(before) | set(now)):
        if before.get(path) == now.get(path) or not keep(path):
            continue
        was = "had some" if path in before else "had none"
        has = (
            describe(path, workspace) if workspace is not None and path in now else ("some" if path in now else "none")
        )
        out.append(f"{path or '.'}: extended attributes differ ({was}, now {has})")
    return out


def digest(found: Xattrs) -> str:
    """A short digest of a workspace's extended attributes ("" for none), for fingerprints."""
    if not found:
        return ""
    return hashlib.sha256(to_json(found).encode()).hexdigest()[:16]


def to_json(found: Xattrs) -> str:
    return json.dumps(dict(sorted(found.items())))


def from_json(text: str) -> dict[str, str]:
    return dict(json.loads(text))


def _digest(found: Mapping[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(found):
        h.update(name.encode() + b"\0" + found[name] + b"\0")
    return h.hexdigest()[:16]
