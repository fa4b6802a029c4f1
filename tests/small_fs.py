"""A small real filesystem for the disk-full tests: a tmpfs of a given size (root mounts it).

tmpfs behaves as a disk does where these tests look: writes past its size fail with ENOSPC,
statvfs reports what is left, fallocate takes real room, and overlayfs takes it as an upper
layer (user xattrs included, for an unprivileged goexd: Linux 6.6+).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

MiB = 1024 * 1024
_fillers = itertools.count()


@contextlib.contextmanager
def small_fs(size: int, uid: int = 0, gid: int = 0) -> Iterator[Path]:
    """A fresh tmpfs of `size` bytes, its root owned by uid:gid (0755), unmounted and removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="goex-smallfs-", dir="/var/tmp"))
    path.chmod(0o755)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755,uid={uid},gid={gid}", "goex-smallfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(path)], capture_output=True, check=False)
        path.rmdir()


def free(path: Path) -> int:
    return shutil.disk_usage(path).free


def fill(path: Path, leave: int = 0) -> Path:
    """A file in `path` (a mount) taking all its free space but `leave` bytes; delete it to free them."""
    filler = path / f"filler-{next(_fillers)}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        want = free(path) - leave
        if want > 0:
            os.posix_fallocate(fd, 0, want)
    finally:
        os.close(fd)
    return filler


def tmp_files(git_dir: Path) -> list[Path]:
    """What a failed object write can leave in a snapshot store (git's, libgit2's and goexd's temporaries)."""
    return sorted(p for p in (git_dir / "objects").rglob("tmp_*"))
