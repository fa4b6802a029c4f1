"""Workspace entries the action user cannot write, found when a session opens (issue 19).

Files unpacked from a tarball keep its uids: an action (run as the workspace's owner,
sandbox/identity.py) then cannot change them, and `sed -i`, `rm` or a formatter fail while the action
still ends `executed`. So a session's opening warns, naming a few paths and the count. An entry counts
when the action user neither owns it (an owner can chmod its own read-only files) nor may write it
through its group or others' bits (actions run with no supplementary groups), and it is not a symlink
(whose own bits mean nothing); a directory counts the same way (nothing can be created or removed in
it). Under an unprivileged goexd every entry another user owns counts, whatever its bits: the sandbox's
user namespace maps only goexd's own ids, and overlayfs cannot copy up a file of an unmapped owner (an
o+w file fails with EOVERFLOW). Directories the daemon cannot read are counted too. The workspace's own
top-level `.git` is left out (bound read-only in every sandbox anyway). The walk is find(1)'s, in C,
bounded by a timeout (FIND_TIMEOUT_S); when it does not finish in time, the warning says the check was
cut short.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from goexd.domain.names import display_path
from goexd.sandbox.identity import RunAs, current

SAMPLE = 5  # paths named in the warning
_HOW = " and not writable by its group or others"
_UNMAPPED = ", which the sandbox of an unprivileged goexd cannot change at all: it maps no other user"
FIND_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Unwritable:
    count: int  # entries the action user cannot write
    sample: tuple[str, ...]  # the first few, relative to the workspace
    unreadable: int = 0  # directories the check could not read
    cut_short: bool = False  # the walk did not finish in time: there may be more

    def warning(self, root: Path, who: RunAs) -> str | None:
        if not (self.count or self.unreadable or self.cut_short):
            return None
        parts = []
        if self.count:
            named = ", ".join(self.sample) + (", ..." if self.count > len(self.sample) else "")
            parts.append(
                f"{self.count} entr{'y' if self.count == 1 else 'ies'} the action user (uid {who.uid}, gid {who.gid}) "
                f"cannot write: owned by another user{_HOW if current().is_root else _UNMAPPED} ({named})"
            )
        if self.unreadable:
            parts.append(f"{self.unreadable} director{'y' if self.unreadable == 1 else 'ies'} goexd cannot read")
        if self.cut_short:
            parts.append(f"the check stopped after {FIND_TIMEOUT_S:g} s, so there may be more")
        return (
            f"workspace {display_path(str(root))}: "
            + "; ".join(parts)
            + "; actions that change them will fail (give them to the "
            "workspace's owner, e.g. chown -R, or make them writable)"
        )


def unwritable(root: Path, who: RunAs, timeout_s: float = FIND_TIMEOUT_S) -> Unwritable:
    """What of `root` the user `who` cannot write (see the module doc)."""
    top_git = os.path.join(root, ".git")
    bits: list[str] = []
    if current().is_root:  # an unprivileged goexd's sandbox maps no other uid: their entries are never writable
        bits = ["!", "(", "-gid", str(who.gid), "-perm", "-g+w", ")", "!", "-perm", "-o+w"]
    argv = [
        "find", str(root), "-path", top_git, "-prune", "-o",
        "!", "-type", "l", "!", "-uid", str(who.uid), *bits, "-print0",
    ]  # fmt: skip
    cut_short = False
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False)
        out, err = done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        out, err, cut_short = exc.stdout or b"", exc.stderr or b"", True
    found = [p for p in out.split(b"\0") if p]
    if cut_short and found:
        found.pop()  # the last one may be cut
    prefix = os.fsencode(root).rstrip(b"/") + b"/"
    sample = tuple(display_path(p.removeprefix(prefix) if p != os.fsencode(root) else b".") for p in found[:SAMPLE])
    unreadable = sum(1 for line in err.splitlines() if line.endswith(b"Permission denied"))
    return Unwritable(len(found), sample, unreadable, cut_short)
