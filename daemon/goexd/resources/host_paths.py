"""Which host paths a resource may name: what goexd refuses as a workspace or a SQLite file.

The daemon snapshots a workspace with its own privileges and actions change it; it opens and
writes a SQLite file itself. So a path the API accepts must not reach the host's system trees,
another user's home as a whole, goexd's own files (an action rewriting goexd.toml would apply
at the next start) or any goexd's state dir (vault keys, journal, snapshots). Every check runs
on the path with its symbolic links resolved, before anything is opened.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from goexd.config import Config, default_config_file
from goexd.domain.errors import InvalidArgument
from goexd.domain.textcap import shown

NAME_MAX = 255  # bytes in one path component (Linux)
PATH_MAX = 4096  # bytes in a path, its terminating NUL included

# Written into every state dir at start, so that any goexd can tell one when it sees it. It names the
# directory it marks (device and inode): a file of that name anywhere else (one an action made, a copy)
# marks nothing, so an action cannot get a workspace refused by planting one (issue 14 F11).
STATE_MARKER = ".goexd-state"
STATE_MARKER_TEXT = (
    "This directory holds a goexd daemon's state (journal, vault, snapshots).\n"
    "No goexd accepts it, or a directory inside or around it, as a resource.\n"
)
_MARKER_ID = "directory: "  # + "<st_dev>:<st_ino>" of the state dir
_MARKER_MAX = 4096  # bytes a marker may have: a larger file is not one

# The host's own trees: nothing inside them, and nothing containing them, is a resource. /opt is
# here because FHS reserves it for installed packages (like /usr/local): code others run.
SYSTEM_TREES = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/lost+found",
    "/nix",
    "/opt",
    "/proc",
    "/run",
    "/sbin",
    "/snap",
    "/sys",
    "/usr",
    "/var/backups",
    "/var/cache",
    "/var/crash",
    "/var/lib",
    "/var/local",
    "/var/lock",
    "/var/log",
    "/var/mail",
    "/var/opt",
    "/var/run",
    "/var/spool",
)
# Directories that gather unrelated trees (users, mounts, scratch space of everyone): refused
# themselves, while a project inside one is fine.
GATHERING = ("/home", "/media", "/mnt", "/srv", "/tmp", "/var/tmp")

# A workspace is walked once, before its first snapshot, for a goexd state dir inside it. The walk
# is bounded: a tree with more directories than this is refused rather than half checked.
MAX_SCAN_DIRS = 100_000


@dataclass(frozen=True)
class OwnPath:
    label: str  # "state directory", "config directory", "log file"...
    path: Path  # resolved
    is_dir: bool  # a directory: nothing inside it either; a file: nothing containing it


@dataclass(frozen=True)
class OwnPaths:
    """goexd's own locations: no resource lies inside one of its directories or contains any of them."""

    entries: tuple[OwnPath, ...] = ()

    @classmethod
    def of(cls, dirs: Iterable[tuple[str, Path]], files: Iterable[tuple[str, Path | None]] = ()) -> OwnPaths:
        entries = [OwnPath(label, _real(p), True) for label, p in dirs]
        entries += [OwnPath(label, _real(p), False) for label, p in files if p is not None]
        return cls(tuple(entries))


def _real(path: Path) -> Path:
    """The path with its links resolved as far as they exist (goexd's own paths need not exist yet)."""
    return Path(os.path.realpath(path.expanduser()))


def _marker_text(st: os.stat_result) -> bytes:
    return f"{STATE_MARKER_TEXT}{_MARKER_ID}{st.st_dev}:{st.st_ino}\n".encode()


def mark_state_dir(state_dir: Path) -> None:
    """Leave the marker other daemons look for, naming this directory (rewritten when it names another:
    the state dir was copied or moved, or an older goexd wrote it without the name)."""
    marker = state_dir / STATE_MARKER
    want = _marker_text(os.stat(state_dir))
    try:
        if marker.read_bytes() == want:
            return
    except OSError:
        pass
    tmp = state_dir / f"{STATE_MARKER}.tmp"
    tmp.write_bytes(want)
    os.replace(tmp, marker)


def is_state_dir(d: str | Path) -> bool:
    """Whether `d` is marked as a goexd's state dir: its marker is a small regular file naming `d` itself."""
    try:
        fd = os.open(os.path.join(d, STATE_MARKER), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MARKER_MAX:
            return False
        return os.read(fd, _MARKER_MAX + 1) == _marker_text(os.stat(d))
    except OSError:
        return False
    finally:
        os.close(fd)


def checked_syntax(raw: str, fld: str, what: str) -> Path:
    """An absolute path the kernel can take: no NUL, no component over NAME_MAX, not over PATH_MAX."""
    if not raw:
        raise InvalidArgument(fld, f"{what} path is required")
    if "\x00" in raw:
        raise InvalidArgument(fld, "path contains a NUL byte")
    if not raw.startswith("/"):
        raise InvalidArgument(fld, f"{shown(raw)} is not an absolute path")
    encoded = os.fsencode(raw)
    if len(encoded) >= PATH_MAX:
        raise InvalidArgument(fld, f"the path is {len(encoded)} bytes long; the limit is {PATH_MAX - 1} (PATH_MAX)")
    longest = max(encoded.split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        raise InvalidArgument(fld, f"a path component is {len(longest)} bytes long; the limit is {NAME_MAX} (NAME_MAX)")
    return Path(raw)


def resolved(path: Path, fld: str) -> Path:
    """The existing path with every link resolved; a missing, looping or unreachable one is refused."""
    try:
        return Path(os.path.realpath(path, strict=True))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise InvalidArgument(fld, f"{shown(str(path))} does not exist") from None
        if exc.errno == errno.ENOTDIR:
            raise InvalidArgument(fld, f"{shown(str(path))}: a component is not a directory") from None
        raise InvalidArgument(fld, f"{shown(str(path))}: {os.strerror(exc.errno or errno.EIO)}") from None


def _within(path: Path, tree: Path) -> bool:
    return path == tree or tree in path.parents


def _trees(names: Sequence[str]) -> set[Path]:
    # Each as written and as resolved: /bin is /usr/bin on merged-/usr systems, /var/run is /run.
    return {Path(n) for n in names} | {_real(Path(n)) for n in names}


def refuse_own(path: Path, fld: str, own: OwnPaths, container: bool) -> None:
    """One of goexd's own paths, inside one of its directories, or (for a directory) containing any of them."""
    for entry in own.entries:
        if path == entry.path:
            raise InvalidArgument(fld, f"{path} is goexd's {entry.label}")
        if entry.is_dir and entry.path in path.parents:
            raise InvalidArgument(fld, f"{path} is inside goexd's {entry.label} {entry.path}")
        if container and path in entry.path.parents:
            raise InvalidArgument(fld, f"{path} contains goexd's {entry.label} {entry.path}")


def refuse_system(path: Path, fld: str, container: bool) -> None:
    """The root, system trees and (for a directory) anything containing one; gathering dirs themselves."""
    if path == Path("/"):
        raise InvalidArgument(fld, "the root directory / cannot be a resource")
    for tree in sorted(_trees(SYSTEM_TREES)):
        if _within(path, tree):
            raise InvalidArgument(fld, f"{path} is inside the system tree {tree}")
        if container and path in tree.parents:
            raise InvalidArgument(fld, f"{path} contains the system tree {tree}")
    if container and path in _trees(GATHERING):
        raise InvalidArgument(fld, f"{path} holds unrelated trees of many users or mounts; use a directory inside it")


def _homes() -> Iterator[tuple[str, Path]]:
    for user in pwd.getpwall():
        if user.pw_dir and user.pw_dir != "/":
            yield f"user {user.pw_name}", _real(Path(user.pw_dir))
    yield "this daemon's user ($HOME)", _real(Path.home())


def refuse_homes(path: Path, fld: str) -> None:
    """A home directory itself (any user's), or a directory containing one: a project inside one is fine."""
    for whose, home in _homes():
        if path == home:
            raise InvalidArgument(fld, f"{path} is the home directory of {whose}; use a project directory inside it")
        if path in home.parents:
            raise InvalidArgument(fld, f"{path} contains the home directory of {whose} ({home})")


def refuse_inside_state_dir(path: Path, fld: str) -> None:
    """The path, or a directory above it, is marked as a goexd state dir (another daemon's too)."""
    for d in (path, *path.parents):
        if is_state_dir(d):
            where = "is" if d == path else f"is inside {d},"
            raise InvalidArgument(fld, f"{path} {where} the state directory of a goexd ({STATE_MARKER})")


def refuse_containing_state_dir(path: Path, fld: str, max_dirs: int = MAX_SCAN_DIRS) -> None:
    """Walk the tree (links not followed) for a marked state dir; refuse a tree too large to walk.

    A directory goexd cannot read is skipped: it cannot snapshot it either."""
    stack = [path]
    seen = 0
    while stack:
        top = stack.pop()
        seen += 1
        if seen > max_dirs:
            raise InvalidArgument(
                fld,
                f"{path} holds more than {max_dirs} directories; goexd refuses a workspace it cannot "
                "check for the state directory of a goexd",
            )
        try:
            with os.scandir(top) as entries:
                for entry in entries:
                    if entry.name == STATE_MARKER and top != path and is_state_dir(top):
                        raise InvalidArgument(
                            fld, f"{path} contains the state directory {top} of a goexd ({STATE_MARKER})"
                        )
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
        except OSError:
            continue


def file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def daemon_paths(cfg: Config, config_file: Path | None = None, runtime_dirs: Sequence[Path] = ()) -> OwnPaths:
    """Every place a goexd reads at start or writes while serving (what an action must never reach)."""
    return OwnPaths.of(
        dirs=[
            ("state directory", cfg.state_dir),
            ("config directory", (config_file or default_config_file()).parent),
            ("runtime directory", cfg.socket.parent),
            *(("runtime directory", d) for d in runtime_dirs),
            *(("http rule set directory", Path(d)) for d in cfg.http.rules_dirs),
        ],
        files=[
            ("log file", cfg.log_file),
            ("policy file", cfg.policy.file),
            ("vault key file", cfg.vault.key_file),
            ("vault passphrase file", cfg.vault.passphrase_file),
            ("upstream CA file", cfg.egress.upstream_ca_file),
        ],
    )
