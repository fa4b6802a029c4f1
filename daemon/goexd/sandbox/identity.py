"""Which host user a sandboxed command runs as: the rule every backend follows.

An action runs as the owner of its workspace. A daemon that is not root runs it as
itself (it can be no one else). A root daemon switches to the workspace's owner and group
before the sandbox is made, so everything the command creates is theirs and uid 0 never
acts in a tree root does not own; only a root-owned workspace keeps uid 0 (with no
capabilities: the mount plan and the seccomp filter are what protect the host then). With
no workspace at all a root daemon runs the command as nobody.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

NOBODY = "nobody"
NOBODY_ID = 65534  # when the host has no such user


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int

    @property
    def is_root(self) -> bool:
        return self.uid == 0


def current() -> RunAs:
    return RunAs(os.geteuid(), os.getegid())


def run_as_for(workspace: Path | None) -> RunAs:
    """The identity a command over `workspace` runs as (see the module doc)."""
    me = current()
    if not me.is_root:
        return me
    if workspace is None:
        return _nobody()
    st = os.stat(workspace)
    if st.st_uid == 0:
        return me
    # The directory's group, not the owner's passwd entry: the owner may have none (the
    # uid of an unpacked tarball), and a project normally carries its owner's group.
    return RunAs(st.st_uid, st.st_gid)


def _nobody() -> RunAs:
    try:
        pw = pwd.getpwnam(NOBODY)
    except KeyError:
        return RunAs(NOBODY_ID, NOBODY_ID)
    return RunAs(pw.pw_uid, pw.pw_gid)
