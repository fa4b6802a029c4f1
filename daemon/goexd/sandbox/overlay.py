"""Running a command over an overlay of its workspace instead of the workspace itself.

The command's writes land in an upper directory that goexd owns (`WorkspaceOverlay`);
the live workspace is only its lower layer, so nobody else's change to it during the run
can be mistaken for the command's, and the run can be thrown away whole. goexd applies
the upper afterwards (snapshots/overlay_upper.py).

bubblewrap 0.8 has no --overlay. A root goexd mounts the overlay itself, with mount(2), in a
private mount dir of its own, and bwrap binds that (sandbox/overlay_mounts.py: no fork, ~3 ms
less a run). Otherwise the overlay is mounted over the workspace's own path in a private mount
namespace by a short prefix of the launch argv (`launch_prefix`: `unshare`, a POSIX sh running
util-linux `mount`, then exec of the rest), and bwrap, started inside that namespace, binds
that path as it always does:

- an unprivileged daemon mounts in a user namespace of its own (`unshare --user
  --map-root-user --mount`, `userxattr`); bwrap then runs as that namespace's root and is
  told the daemon's uid and gid (`--uid/--gid`), so the command sees the ids it saw before.
- a root sandbox without a mount dir (one goexd could not make, or one made without it, as
  some tests and benches do) mounts as root (`unshare --mount`), then switches to the
  workspace's owner (setpriv) as before.

Either way a root daemon's overlay uses the layers with root's rights (the upper may live in
its private state dir).

Both ways redirect_dir stays off (an unprivileged mount cannot have it): renaming a
directory that exists in the workspace fails with EXDEV inside the sandbox (mv, shutil.move
fall back to copy and delete; a bare rename(2) of such a directory does not).

The overlay is mounted `volatile` (Linux 5.10+): overlayfs then never syncs the upper's
filesystem, which it otherwise does whole (syncfs: everyone's dirty data on the state dir's
disk) when the run's mount namespace goes, on the action's path. Nothing relies on the upper
being durable: goexd reads it into the snapshot store right after the run, and an upper a
crash left behind is thrown away at the next start, never mounted again.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from goexd.domain.sandbox import WorkspaceOverlay
from goexd.sandbox.limits import JOIN_LOOP

UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
MOUNT = shutil.which("mount") or "/usr/bin/mount"
SH = "/bin/sh"
# The overlay options travel through libmount (commas split options, quotes group) and
# overlayfs (colons split lower layers, backslash escapes): paths holding any of these
# are not given to it.
UNSAFE_CHARS = frozenset(',:\\"\n')
MOUNT_FAILED_STATUS = 125
MOUNT_FAILED = "goex-overlay: cannot mount the workspace overlay"
# The run's cgroup files to join (limits.JOIN_LOOP) up to "--"; then $1: mount options, $2: the
# workspace path; the rest is the command to exec.
_SCRIPT = (
    f"{JOIN_LOOP}; "
    f'{MOUNT} -t overlay goex-overlay -o "$1" -- "$2" || {{ echo "{MOUNT_FAILED}" >&2; exit {MOUNT_FAILED_STATUS}; }}; '
    'shift 2; exec "$@"'
)


class OverlayUnavailable(Exception):
    """This workspace cannot be run over an overlay here; the message says why."""


def check_paths(*paths: Path) -> None:
    for p in paths:
        if UNSAFE_CHARS & set(str(p)):
            raise OverlayUnavailable(f'{p}: a path with , : \\ " or a newline cannot be an overlay layer')


def mount_options(lower: Path, overlay: WorkspaceOverlay, privileged: bool) -> str:
    check_paths(lower, overlay.upper, overlay.work)
    opts = [f"lowerdir={lower}", f"upperdir={overlay.upper}", f"workdir={overlay.work}"]
    # An unprivileged mount may only use user.overlay.* attributes, and then never creates
    # redirects (asking for redirect_dir at all is refused); a root one is told so.
    opts.append("redirect_dir=off" if privileged else "userxattr")
    if VOLATILE:
        opts.append("volatile")
    return ",".join(opts)


def clear_work(work: Path) -> None:
    """Empty an overlay's work dir for another mount of the same layers: overlayfs leaves its `work`
    at mode 000 in it and, after a `volatile` mount, `incompat/volatile`, which makes the next mount
    over that work dir fail ("overlay with incompat feature 'volatile' cannot be mounted")."""
    todo = [str(work)]
    dirs: list[str] = []
    while todo:
        top = todo.pop()
        os.chmod(top, 0o700)  # goexd's own dir (its mode does not matter: it is emptied)
        dirs.append(top)
        with os.scandir(top) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    todo.append(e.path)
                else:
                    os.unlink(e.path)
    for d in reversed(dirs[1:]):  # deepest first; `work` itself stays
        os.rmdir(d)


def _has_volatile(release: str) -> bool:
    """Whether a kernel of this release knows overlayfs' `volatile` option (5.10 and later)."""
    m = re.match(r"(\d+)\.(\d+)", release)
    return m is not None and (int(m[1]), int(m[2])) >= (5, 10)


VOLATILE = _has_volatile(os.uname().release)


def launch_prefix(lower: Path, overlay: WorkspaceOverlay, privileged: bool, joins: Sequence[str] = ()) -> list[str]:
    """The argv prefix that mounts the overlay over `lower` in a new mount namespace, then
    execs the argv that follows it (the uid switch, the limits launcher, bwrap). `joins`: the
    run's cgroup files its shell joins first (limits.RunLimits.joins; one exec fewer than a
    shell of their own)."""
    ns = ["--mount", "--propagation", "private"] if privileged else ["--user", "--map-root-user", "--mount"]
    options = mount_options(lower, overlay, privileged)
    return [UNSHARE, *ns, "--", SH, "-c", _SCRIPT, "goex-overlay", *joins, "--", options, str(lower)]
