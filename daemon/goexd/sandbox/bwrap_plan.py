"""The bubblewrap mount plan: spec + host facts -> an ordered, declarative list of operations.

The sandbox's view of the host is an allow list. bwrap's root is an empty tmpfs; onto it
go, read-only, the trees programs need (/usr, /etc and the /bin, /sbin, /lib* links or
directories: `host_view.SYSTEM_PATHS`) and the operator's `sandbox.read_paths`; fresh
/dev, /proc, /tmp; the workspace read-write, at its real path (where commands start) and
at /workspace; and, for `Network.PROXY`, the egress CA as a copied file. Nothing else of
the host exists in there: no /home, /root, /var, /srv, /mnt, /run, host /tmp (the real
path's parents are empty directories), no other user's files and none of goexd's own. Masks (an empty
tmpfs over a directory, /dev/null over a file) hide what the visible trees hold that the
command's identity must not read (`HostView.masked_*`, gathered by host_view.probe).

Pure: unit-tested and logged as is. File descriptors the plan names (the seccomp program,
the CA's bytes) are opened by the runner and given in `Fds`.
"""

from __future__ import annotations

import enum
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

from goexd.domain.sandbox import Network, SandboxSpec
from goexd.sandbox import egress_forwarder as forwarder

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = {"PATH": DEFAULT_PATH, "HOME": "/tmp", "LANG": "C.UTF-8", "TERM": "dumb"}

# Network.PROXY: the command runs behind the egress forwarder (egress_forwarder.py), with
# the system python3 (the daemon's own interpreter may live outside the visible trees).
FORWARDER_PYTHON = "/usr/bin/python3"
EGRESS_DIR = posixpath.dirname(forwarder.CA_PATH)  # /run/goex, on bwrap's root tmpfs
_CA_ENV = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO")
PROXY_ENV: dict[str, str] = {
    **{k: forwarder.PROXY_URL for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
    # Empty, so that nothing (not even localhost) bypasses the proxy by default.
    "NO_PROXY": "",
    "no_proxy": "",
    **dict.fromkeys(_CA_ENV, forwarder.CA_PATH),
}
# Replaced wholesale by fresh mounts.
FRESH_MOUNTS = ("/dev", "/proc", "/tmp")

# Namespaces, privileges and lifetime. --cap-drop ALL matters when the command keeps uid 0:
# bwrap then keeps every capability inside the user namespace by default, enough to
# remount / read-write (measured with bwrap 0.8).
SECURITY_FLAGS = (
    "--unshare-all",
    "--unshare-user",
    "--disable-userns",
    "--cap-drop",
    "ALL",
    "--die-with-parent",
    "--new-session",
    "--hostname",
    "sandbox",
)


class Op(enum.StrEnum):
    RO_BIND = "--ro-bind"
    RO_BIND_TRY = "--ro-bind-try"
    BIND = "--bind"
    RO_BIND_DATA = "--ro-bind-data"  # source is a file descriptor whose bytes become the file
    DEV = "--dev"
    PROC = "--proc"
    TMPFS = "--tmpfs"
    REMOUNT_RO = "--remount-ro"
    SYMLINK = "--symlink"  # source is the link's target
    DIR = "--dir"


@dataclass(frozen=True)
class MountOp:
    op: Op
    dest: str
    source: str | None = None
    size: int | None = None  # tmpfs only
    why: str = ""  # for logs and tests: "workspace", "mask", "system read-only", ...

    def args(self) -> list[str]:
        out = ["--size", str(self.size)] if self.size is not None else []
        out.append(self.op.value)
        if self.source is not None:
            out.append(self.source)
        out.append(self.dest)
        return out

    def __str__(self) -> str:
        src = f"{self.source} -> " if self.source is not None else ""
        size = f" size={self.size}" if self.size is not None else ""
        return f"{self.op.value} {src}{self.dest}{size}  # {self.why}"


@dataclass(frozen=True)
class SystemPath:
    """One allow-listed host path: bound read-only, or recreated as the symlink it is."""

    path: str
    symlink: str | None = None  # the link's target (merged /usr: /bin -> usr/bin)


@dataclass(frozen=True)
class HostView:
    """The host facts a plan depends on (host_view.probe gathers them at spawn).

    Paths are real paths: bwrap resolves the sources of binds but not their destinations,
    so masks must name the real location.
    """

    system: tuple[SystemPath, ...] = ()
    masked_dirs: tuple[str, ...] = ()  # directories in the visible trees to hide
    masked_files: tuple[str, ...] = ()  # non-directories in the visible trees to hide
    workspace: str | None = None
    readonly_subpaths: tuple[str, ...] = ()  # the spec's subpaths that exist, normalised


@dataclass(frozen=True)
class Fds:
    """Descriptors the runner opened for this run (inherited by bwrap)."""

    seccomp: tuple[int, ...] = ()  # the programs bwrap stacks before it executes the command
    ca: int | None = None  # Network.PROXY: the CA's bytes, copied to forwarder.CA_PATH
    proxy_socket: int | None = None  # Network.PROXY: O_PATH descriptor of the route's socket
    unix_filter: int | None = None  # Network.PROXY: the program the forwarder puts on the command

    def passed(self) -> tuple[int, ...]:
        return (*self.seccomp, *(fd for fd in (self.ca, self.proxy_socket, self.unix_filter) if fd is not None))


@dataclass(frozen=True)
class Plan:
    mounts: tuple[MountOp, ...]
    env: tuple[tuple[str, str], ...]
    chdir: str
    argv: tuple[str, ...]
    seccomp_fds: tuple[int, ...] = ()
    flags: tuple[str, ...] = SECURITY_FLAGS

    def bwrap_options(self) -> list[str]:
        """Everything but the command, in order (bwrap applies mounts in this order)."""
        out = list(self.flags)
        for fd in self.seccomp_fds:
            out += ["--add-seccomp-fd", str(fd)]
        for m in self.mounts:
            out += m.args()
        out.append("--clearenv")
        for key, value in self.env:
            out += ["--setenv", key, value]
        out += ["--chdir", self.chdir]
        # The options travel NUL-separated (--args): a NUL inside one would inject others.
        if any("\0" in a for a in out):
            raise ValueError("sandbox options must not contain NUL bytes")
        return out

    def describe(self) -> str:
        seccomp = [f"--add-seccomp-fd {fd}" for fd in self.seccomp_fds]
        lines = [" ".join([*self.flags, *seccomp]), *map(str, self.mounts)]
        lines += [f"env {k}={v}" for k, v in self.env]
        argv = ["<egress forwarder source>" if a == forwarder.SOURCE else a for a in self.argv]
        lines += [f"chdir {self.chdir}", f"exec {argv}"]
        return "\n".join(lines)


def render_plan(spec: SandboxSpec, host: HostView, fds: Fds = Fds(), workspace_source: str | None = None) -> Plan:
    """Spec + host facts -> the ordered mount plan. Pure.

    `workspace_source`: what is bound as the workspace, where that is not the workspace itself (the
    overlay a root goexd mounted for the run: sandbox/overlay_mounts.py); its places and masks stay
    the workspace's.

    Order matters (bwrap applies mounts in sequence, later ones on top): the allow-listed
    trees read-only, fresh /dev /proc /tmp, masks, the workspace (at /workspace, then at its
    real path: `_workspace_places`) with its read-only subpaths and masks each time,
    the egress CA (Network.PROXY), the remounts that make masks read-only, and last the
    root itself read-only (nothing later may need a mount point in it).
    """
    if not spec.argv:
        raise ValueError("SandboxSpec.argv is empty")
    visible = [s.path for s in host.system]
    mount = _check_mount_point(spec.workspace_mount, visible)
    proxy = _check_network(spec, fds)
    mounts = [*_system_mounts(host), *_fresh_mounts(spec.limits.memory_bytes)]
    masks = _masks(host, visible)
    mounts += masks
    places: tuple[str, ...] = ()
    if host.workspace is not None:
        source = workspace_source if workspace_source is not None else host.workspace
        places = _workspace_places(mount, host.workspace)
        for place in places:
            why = "workspace" if place == mount else "workspace at its real path"
            if (top := _parents_on_fresh_tmp(place)) is not None:
                # Its parents would be made on the sandbox's own /tmp, which commands may write: they go on a
                # tmpfs of their own instead, made read-only at the end like a mask (only the workspace below).
                mounts.append(MountOp(Op.TMPFS, top, size=PARENTS_TMPFS_BYTES, why="real path's parents"))
                masks.append(mounts[-1])
            mounts.append(MountOp(Op.BIND, place, source, why=why))
            mounts += [
                MountOp(Op.RO_BIND, posixpath.join(place, rel), posixpath.join(source, rel), why="read-only")
                for rel in host.readonly_subpaths
            ]
            inner = _workspace_masks(host, place)
            mounts += inner
            masks += inner
    if proxy:
        mounts.append(MountOp(Op.RO_BIND_DATA, forwarder.CA_PATH, str(fds.ca), why="egress CA"))
    mounts += [MountOp(Op.REMOUNT_RO, m.dest, why="mask read-only") for m in masks if m.op is Op.TMPFS]
    mounts.append(MountOp(Op.REMOUNT_RO, "/", why="root read-only"))
    env = command_env(spec, proxy)
    chdir = _workdir(places[-1], spec.workdir) if places else "/tmp"
    argv = tuple(spec.argv)
    if proxy:
        # -I: no user site or PYTHON* variables; -S: no site module (faster start, stdlib only).
        argv = (
            FORWARDER_PYTHON, "-I", "-S", "-c", forwarder.SOURCE,
            str(fds.proxy_socket), str(fds.unix_filter), "--", *argv,
        )  # fmt: skip
    return Plan(tuple(mounts), tuple(env.items()), chdir, argv, seccomp_fds=fds.seccomp)


def command_env(spec: SandboxSpec, proxy: bool) -> dict[str, str]:
    """The command's whole environment, every backend's: the base, the spec's, and behind the egress proxy its
    settings, which win over the spec's (with no other way out, bypassing them only breaks requests)."""
    env = {**BASE_ENV, **spec.env, **(PROXY_ENV if proxy else {})}
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"bad environment variable {key!r}: no '=' in names, no NUL anywhere")
    return env


def _workspace_places(mount: str, real: str) -> tuple[str, ...]:
    """Where the workspace appears, the place commands start in last: `mount` (/workspace, the alias)
    and its real path on the host, where tools, venvs (absolute shebangs) and build caches expect it.

    bwrap makes the real path's missing parents as empty directories on its root (read-only at the
    end, like the root), so nothing else of the host comes with them. Only the alias where the real
    path cannot be a mount point of its own (on the sandbox's own /dev, /proc or /run/goex, or over
    one of its own trees, /tmp say: refused as workspaces anyway); only the real path where one holds
    the other (binding the second would make its mount point inside the first, in the workspace).
    """
    if real == mount:
        return (mount,)
    own = ("/dev", "/proc", EGRESS_DIR)
    if _is_under_any(real, own) or any(_is_under(p, real) for p in (*own, *FRESH_MOUNTS)):
        return (mount,)
    if _is_under(real, mount) or _is_under(mount, real):
        return (real,)
    return (mount, real)


PARENTS_TMPFS_BYTES = 64 * 1024  # empty directories only


def _parents_on_fresh_tmp(place: str) -> str | None:
    """The top directory of `place`'s parents below the sandbox's fresh /tmp (/tmp/a for /tmp/a/b/ws), or None
    where the place is not that deep under /tmp."""
    if not _is_under(place, "/tmp") or place == "/tmp":
        return None
    parts = place.split("/")  # "", "tmp", top, ..., the workspace
    return "/".join(parts[:3]) if len(parts) > 3 else None


def _workdir(mount: str, workdir: str) -> str:
    """The command's directory inside the workspace's mount; never above it."""
    inner = posixpath.normpath(posixpath.join(mount, workdir))
    if posixpath.isabs(workdir) or not _is_under(inner, mount):
        raise ValueError(f"bad workdir {workdir!r}: need a path relative to the workspace, inside it")
    return inner


def _check_network(spec: SandboxSpec, fds: Fds) -> bool:
    """Whether the egress forwarder is wired in; refuses inconsistent specs."""
    if spec.network is Network.NONE:
        if spec.proxy is not None:
            raise ValueError("SandboxSpec.proxy is set but network is none: use Network.PROXY")
        return False
    if spec.proxy is None:
        raise ValueError("network=proxy needs SandboxSpec.proxy (the egress proxy's socket and CA)")
    for path in (spec.proxy.socket_path, spec.proxy.ca_path):
        if not path.is_absolute():
            raise ValueError(f"bad proxy path {str(path)!r}: need an absolute host path")
    if fds.ca is None or fds.proxy_socket is None or fds.unix_filter is None:
        raise ValueError("network=proxy needs the CA, socket and filter descriptors")
    return True


def _system_mounts(host: HostView) -> list[MountOp]:
    out = []
    for s in host.system:
        if s.symlink is not None:
            out.append(MountOp(Op.SYMLINK, s.path, s.symlink, why="system link"))
        else:
            out.append(MountOp(Op.RO_BIND, s.path, s.path, why="system read-only"))
    return out


def _fresh_mounts(tmpfs_size: int) -> list[MountOp]:
    return [
        MountOp(Op.DEV, "/dev", why="minimal /dev"),
        MountOp(Op.TMPFS, "/dev/shm", size=tmpfs_size, why="fresh /dev/shm"),
        MountOp(Op.PROC, "/proc", why="own /proc"),
        # bwrap covers these only when they look writable to it, which misses root:
        # a capability-less uid 0 could otherwise write sysctls and sysrq-trigger.
        MountOp(Op.RO_BIND, "/proc/sys", "/proc/sys", why="sysctls read-only"),
        MountOp(Op.RO_BIND_TRY, "/proc/sysrq-trigger", "/proc/sysrq-trigger", why="sysrq read-only"),
        MountOp(Op.TMPFS, "/tmp", size=tmpfs_size, why="fresh /tmp"),
    ]


def _mask_candidates(host: HostView) -> list[tuple[str, bool]]:
    """(path, is_dir) of everything to hide, parents first, without duplicates."""
    candidates = {p: True for p in host.masked_dirs}
    for p in host.masked_files:
        candidates.setdefault(p, False)
    return sorted(candidates.items())


def _masks(host: HostView, visible: list[str]) -> list[MountOp]:
    """Masks for what the visible trees hold; anything outside them is not there to hide."""
    hidden: list[str] = []
    masks = []
    for path, is_dir in _mask_candidates(host):
        if not _is_under_any(path, visible) or _is_under_any(path, hidden):
            continue
        masks.append(_mask(path, is_dir))
        if is_dir:
            hidden.append(path)
    return masks


def _workspace_masks(host: HostView, mount: str) -> list[MountOp]:
    """Masked paths inside the workspace are visible through its mount."""
    assert host.workspace is not None
    out: list[MountOp] = []
    hidden: list[str] = []
    for path, is_dir in _mask_candidates(host):
        if path == host.workspace or not _is_under(path, host.workspace):
            continue  # masking must never hide the workspace itself
        dest = posixpath.join(mount, posixpath.relpath(path, host.workspace))
        if _is_under_any(dest, hidden):
            continue
        out.append(_mask(dest, is_dir))
        if is_dir:
            hidden.append(dest)
    return out


def _mask(path: str, is_dir: bool) -> MountOp:
    if is_dir:
        return MountOp(Op.TMPFS, path, size=4096, why="mask")
    return MountOp(Op.RO_BIND, path, "/dev/null", why="mask")


def _check_mount_point(path: str, visible: Iterable[str]) -> str:
    norm = posixpath.normpath(path)
    taken = [*FRESH_MOUNTS, EGRESS_DIR, *visible]
    if not posixpath.isabs(norm) or norm == "/" or _is_under_any(norm, taken) or _is_under_any(EGRESS_DIR, [norm]):
        raise ValueError(
            f"bad workspace_mount {path!r}: need an absolute path outside /, {', '.join(taken)}"
            " (those are the sandbox's own or the host's read-only trees)"
        )
    return norm


def _is_under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _is_under_any(path: str, parents: Iterable[str]) -> bool:
    return any(_is_under(path, p) for p in parents)
