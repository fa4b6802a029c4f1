"""What of the host a sandbox may see, looked up at spawn: the facts bwrap_plan renders.

The visible trees are an allow list (`SYSTEM_PATHS` plus the operator's read paths). A
command that runs as a non-root user is then held by ordinary file permissions: it reads
in there only what any local user may. A command that keeps uid 0 (a root daemon over a
root-owned workspace) is not, so for it every entry of /etc and the read paths that
others may not read is masked, found by a scan (`UnreadableScan`, cached for
`SCAN_TTL_S`), plus the usual credentials by name in case a distribution makes one
world-readable. /usr is not scanned (137k entries here, 2 s): it is the distribution's,
and holds nothing but packaged files.

No Unix socket is enumerated: with nothing of /run, /tmp, /var or /home in view, and
socket(AF_UNIX) refused by the seccomp filter, none can be reached, and no socket anywhere
on the host can make a sandbox's setup fail.
"""

from __future__ import annotations

import glob
import logging
import os
import posixpath
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from goexd.domain.sandbox import SandboxSpec
from goexd.sandbox.bwrap_plan import HostView, SystemPath
from goexd.sandbox.identity import RunAs

log = logging.getLogger(__name__)

# The trees programs need, read-only. Merged-/usr systems have /bin, /sbin, /lib* as links.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
# Hidden from a uid-0 command by name, whatever their modes say.
CREDENTIALS = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssl/private",
    "/etc/security/opasswd",
    "/etc/ssh/ssh_host_*_key",
)
SCAN_TTL_S = 30.0
SCAN_MAX_ENTRIES = 50_000  # a read path this large is not scanned further (logged)


class UnreadableScan:
    """Entries under `roots` that others may not read (files) or enter (directories).

    Kept for `ttl_s`; a directory found is listed and not descended into (its mask hides
    everything below it).
    """

    def __init__(self, roots: Sequence[str], ttl_s: float = SCAN_TTL_S) -> None:
        self.roots = tuple(roots)
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._found: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    def get(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(directories, files), from a scan at most `ttl_s` old."""
        with self._lock:
            if time.monotonic() - self._at > self.ttl_s:
                self._found = self._scan()
                self._at = time.monotonic()
            return self._found

    def _scan(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        dirs: list[str] = []
        files: list[str] = []
        seen = 0
        stack = [r for r in self.roots if os.path.isdir(r) and not os.path.islink(r)]
        while stack:
            top = stack.pop()
            try:
                entries = list(os.scandir(top))
            except OSError:
                dirs.append(top)  # unreadable to us: hide it whole
                continue
            for e in entries:
                seen += 1
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if st.st_mode & 0o005 != 0o005:
                        dirs.append(e.path)
                    else:
                        stack.append(e.path)
                elif not stat.S_ISLNK(st.st_mode) and not st.st_mode & stat.S_IROTH:
                    files.append(e.path)
            if seen > SCAN_MAX_ENTRIES:
                log.warning("sandbox: stopped scanning %s for unreadable files after %d entries", self.roots, seen)
                break
        return tuple(sorted(dirs)), tuple(sorted(files))


def system_paths(read_paths: Sequence[Path] = ()) -> tuple[SystemPath, ...]:
    """The allow-listed paths that exist here, links kept as links."""
    out = []
    for p in [*SYSTEM_PATHS, *(posixpath.normpath(str(r)) for r in read_paths)]:
        if os.path.islink(p):
            out.append(SystemPath(p, symlink=os.readlink(p)))
        elif os.path.exists(p):
            out.append(SystemPath(p))
    return tuple(out)


def probe(
    spec: SandboxSpec,
    run_as: RunAs,
    system: tuple[SystemPath, ...],
    scan: UnreadableScan,
    always_masked: Sequence[Path] = (),
) -> HostView:
    """Look at the host now: what to hide, where the workspace is."""
    dirs: list[str] = []
    files: list[str] = []
    wanted = [str(p) for p in [*always_masked, *spec.masked_paths]]
    if run_as.is_root:
        wanted += [m for pattern in CREDENTIALS for m in (glob.glob(pattern) if "*" in pattern else [pattern])]
        scanned_dirs, scanned_files = scan.get()
        # Looked at again now, as the rest: the scan is cached, and a mask over an entry removed since (an ssh
        # host key a package took away) would make bwrap create it in the read-only /etc and fail every run.
        wanted += [*scanned_dirs, *scanned_files]
    for p in wanted:
        real = os.path.realpath(p)
        if real == "/":
            continue  # never "mask" the whole system
        try:
            is_dir = stat.S_ISDIR(os.stat(real).st_mode)
        except OSError:
            continue  # nothing there to hide
        (dirs if is_dir else files).append(real)
    workspace = os.path.realpath(spec.workspace) if spec.workspace is not None else None
    return HostView(
        system=system,
        masked_dirs=tuple(dirs),
        masked_files=tuple(files),
        workspace=workspace,
        readonly_subpaths=_readonly_subpaths(workspace, spec.readonly_subpaths),
    )


def _readonly_subpaths(workspace: str | None, subpaths: Sequence[str]) -> tuple[str, ...]:
    out = []
    for rel in subpaths:
        norm = posixpath.normpath(rel)
        if posixpath.isabs(norm) or norm == "." or norm.split("/")[0] == "..":
            raise ValueError(f"bad readonly subpath {rel!r}: need a path inside the workspace")
        if workspace is not None and os.path.lexists(posixpath.join(workspace, norm)):
            out.append(norm)
    return tuple(out)
