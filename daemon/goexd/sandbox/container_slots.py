"""Slots: how a pooled container, started before anyone knew which workspace it would serve, gets one.

A container's mounts are fixed when it is created, so a container made ahead of time cannot be given a
workspace by the engine. A root goexd whose engine runs on this machine gives it one by mount
propagation instead: every pooled container binds a *slot*, a directory of goexd's own, at /workspace
(and a second one, read-only, at /run/goex) with `rslave` propagation; when the container is leased,
goexd mounts the run's workspace (or the run's overlay of it, sandbox/overlay.py) onto the slot on the
host, and the mount appears at /workspace in that container and nowhere else (a mount below one slot is
not below another's bind). The egress route's socket is bound into the run slot the same way; the
proxy's CA is copied there. When the run is over (every process of the container dead, see
container_runner.py) the slot's mounts are undone and it is removed with its container.

The slots live in `$TMPDIR/goexd-slots-<owner>-<pid>-XXXXXXXX` (`owner`: the state dir's key), a bind mount of
itself made a shared mount of its own peer group, so that the mounts below it propagate to the containers'
binds (a private mount would not; a slave of the host's root would also receive the host's). The mount dir
is 0711 and each slot 0700, root's: the mount table names the slots, but no other user reaches a
workspace or an overlay through them. A start unmounts and removes what an earlier start of the same
state dir left (`clear_left`), as sandbox/overlay_mounts.py does for its own dir.

Only for a root goexd (mounting takes CAP_SYS_ADMIN) and a local engine in this mount namespace (a
remote engine cannot see these mounts): container.py checks that a mount really reaches a container
before it relies on slots, and binds workspaces at create time otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from goexd.domain.sandbox import SandboxSpec
from goexd.sandbox import overlay, overlay_mounts
from goexd.sandbox.identity import RunAs
from goexd.sandbox.overlay_mounts import _mount, _remove, _unmount_under

log = logging.getLogger(__name__)

PREFIX = "goexd-slots-"
WORKSPACE_DIR = "ws"  # bound at /workspace
RUN_DIR = "run"  # bound read-only at /run/goex: the egress socket and CA
EGRESS_SOCKET = "egress.sock"
EGRESS_CA = "ca.pem"
EMPTY_FILE = "empty"  # bound over a masked file inside the workspace

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND, _MS_REC = 0x1, 0x2, 0x4, 0x20, 0x1000, 0x4000
_MS_MOVE, _MS_PRIVATE, _MS_SHARED = 0x2000, 0x40000, 0x100000
STAGING = ".staging"  # below the slot dir, a private mount: where a workspace tree is made before it is moved


@dataclass(frozen=True)
class Slot:
    path: Path
    staging: Path  # where the run's workspace tree is put together before it is moved onto the slot

    @property
    def workspace(self) -> Path:
        return self.path / WORKSPACE_DIR

    @property
    def run(self) -> Path:
        return self.path / RUN_DIR

    def attach(self, spec: SandboxSpec, run_as: RunAs) -> None:
        """Mount the run's workspace (or its overlay) on the slot, its read-only and masked parts over
        it, and the egress route's socket and CA beside it. Undone by `detach` (also on failure)."""
        try:
            if spec.workspace is not None:
                self._workspace(spec, run_as)
            if spec.proxy is not None:
                sock = self.run / EGRESS_SOCKET
                sock.touch(mode=0o600)
                _bind(spec.proxy.socket_path, sock)
                if run_as.uid != os.geteuid():
                    os.chown(spec.proxy.socket_path, run_as.uid, run_as.gid)
                shutil.copyfile(spec.proxy.ca_path, self.run / EGRESS_CA)
                (self.run / EGRESS_CA).chmod(0o644)
        except BaseException:
            self.detach()
            raise

    def _workspace(self, spec: SandboxSpec, run_as: RunAs) -> None:
        """The workspace tree is put together on the private staging dir, then moved onto the slot whole: a mount
        propagates with the flags it has then, and a later remount (read-only, nosuid) would not follow it."""
        assert spec.workspace is not None
        stage = self.staging
        if spec.overlay is not None:
            options = overlay.mount_options(spec.workspace, spec.overlay, privileged=True).encode()
            try:
                _mount(b"goex-overlay", os.fsencode(stage), b"overlay", _MS_NOSUID | _MS_NODEV, options)
            except OSError as e:
                raise OSError(e.errno, f"{overlay.MOUNT_FAILED} ({e.strerror})") from None
        else:
            _bind(spec.workspace, stage)
        for rel in spec.readonly_subpaths:
            inside = stage / rel
            # Never through a link the workspace's owner planted: that would bind something else read-only.
            if inside.is_dir() and not inside.is_symlink():
                _bind(inside, inside, readonly=True)
        for masked in spec.masked_paths:
            with contextlib.suppress(ValueError):
                self._mask(stage / Path(masked).relative_to(spec.workspace))
        _mount(os.fsencode(stage), os.fsencode(self.workspace), None, _MS_MOVE, None)

    def _mask(self, inside: Path) -> None:
        try:
            st = inside.lstat()
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            _mount(b"tmpfs", os.fsencode(inside), b"tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV, b"size=4k,mode=0555")
        elif not stat.S_ISLNK(st.st_mode):
            _bind(self.path / EMPTY_FILE, inside, readonly=True)

    def detach(self) -> None:
        """Unmount everything on the slot (the container's view of it goes with it: slave propagation), and what a
        failed attach left on the staging dir."""
        _unmount_under(os.fsencode(self.path))
        _unmount_under(os.fsencode(self.staging))

    def remove(self) -> None:
        self.detach()
        _remove(self.path)
        _remove(self.staging)


def _bind(source: Path, target: Path, readonly: bool = False) -> None:
    """A bind of `source` on `target`, nosuid and nodev (and read-only when asked), as bwrap's binds are."""
    src, dst = os.fsencode(source), os.fsencode(target)
    _mount(src, dst, None, _MS_BIND | _MS_REC, None)
    flags = _MS_REMOUNT | _MS_BIND | _MS_NOSUID | _MS_NODEV | (_MS_RDONLY if readonly else 0)
    _mount(None, dst, None, flags, None)


class Slots:
    """A root goexd's slot dir (see the module doc): `open` at start, `close` at stop."""

    def __init__(self, base: Path) -> None:
        self.base = base

    @classmethod
    def open(cls, owner: str, tmp: Path | None = None) -> Slots:
        clear_left(owner, tmp)
        # The pid in the name: whoever clears up after a dead goexd (the tests do) can tell its dirs.
        base = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{owner}-{os.getpid()}-", dir=tmp))
        try:
            base.chmod(0o711)
            raw = os.fsencode(base)
            _mount(raw, raw, None, _MS_BIND, None)
            _mount(None, raw, None, _MS_PRIVATE, None)  # out of the host's peer group...
            _mount(None, raw, None, _MS_SHARED, None)  # ...into one of its own, which the containers' binds follow
            staging = base / STAGING
            staging.mkdir(mode=0o700)
            _mount(os.fsencode(staging), os.fsencode(staging), None, _MS_BIND, None)
            _mount(None, os.fsencode(staging), None, _MS_PRIVATE, None)
        except OSError:
            clear_left(owner, tmp)
            raise
        return cls(base)

    def new(self) -> Slot:
        name = secrets.token_hex(8)
        path = self.base / name
        path.mkdir(mode=0o700)
        for sub in (WORKSPACE_DIR, RUN_DIR):
            (path / sub).mkdir(mode=0o755)
        empty = path / EMPTY_FILE
        empty.touch(mode=0o444)
        staging = self.base / STAGING / name
        staging.mkdir(mode=0o700)
        return Slot(path, staging)

    def close(self) -> None:
        _unmount_under(os.fsencode(self.base))
        _remove(self.base)


def clear_left(owner: str, tmp: Path | None = None) -> list[str]:
    """Unmount what earlier starts of `owner` left below their slot dirs and remove those dirs (as
    overlay_mounts.clear_left does for its own dirs); the mount points unmounted."""
    return overlay_mounts.clear_left(owner, tmp, prefix=PREFIX)
