"""What the escape tests share: probe code that runs inside actions, and host-side fixtures
(victim files, listening sockets, counting servers) that the probes try to reach."""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

# --- paths ------------------------------------------------------------------------------------

# A shell probe over paths: VISIBLE when the path exists at all (even unreadable), READ when its
# content could be read. Each path is tried separately, so one failure does not hide the others.
_VISIBILITY_SH = """
for p in "$@"; do
  if [ -e "$p" ] || [ -L "$p" ]; then echo "VISIBLE $p"; fi
  if cat "$p" >/dev/null 2>&1; then echo "READ $p"; cat "$p" 2>/dev/null | head -c 4096; echo; fi
done
"""


def visibility_script(paths: Sequence[str | Path]) -> str:
    """A shell script that reports, for each path, whether the sandbox sees and can read it."""
    args = " ".join(shlex.quote(str(p)) for p in paths)
    return f"set -- {args}\n{_VISIBILITY_SH}"


def visible(out: str) -> set[str]:
    return {line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("VISIBLE ")}


def readable(out: str) -> set[str]:
    return {line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("READ ")}


def tag() -> str:
    return f"goex-sec-{secrets.token_hex(6)}"


@contextlib.contextmanager
def host_secret_dir(parent: Path, *, uid: int = 0, gid: int = 0, dir_mode: int = 0o755) -> Iterator[tuple[Path, str]]:
    """A fresh dir `parent/goex-sec-*` holding `secret` (0600, owned by uid:gid) with a random
    value; yields (the secret file, its value). The dir is searchable (0755) by default, so
    whether an unprivileged sandbox sees the file depends on its view, not on permissions."""
    value = f"SECRET-{secrets.token_hex(12)}"
    d = parent / tag()
    d.mkdir(mode=dir_mode)
    d.chmod(dir_mode)
    f = d / "secret"
    f.write_text(value + "\n")
    f.chmod(0o600)
    os.chown(f, uid, gid)
    os.chown(d, uid, gid)
    try:
        yield f, value
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- syscalls from python actions ------------------------------------------------------------

# Raw syscalls through ctypes (x86_64 numbers). `probe(name, nr, *args)` prints
# "SYSCALL name ret errname" (errname "OK" on success).
SYSCALL_PRELUDE = r"""
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    conv = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *conv)
    return r, ctypes.get_errno()
def probe(name, nr, *args):
    r, e = sc(nr, *args)
    print("SYSCALL", name, r, "OK" if r != -1 else errno.errorcode.get(e, str(e)), flush=True)
    return r
"""

REFUSALS = frozenset({"EPERM", "EACCES", "ENOSYS", "EROFS"})


def syscall_results(out: str) -> dict[str, tuple[int, str]]:
    res: dict[str, tuple[int, str]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "SYSCALL":
            res[parts[1]] = (int(parts[2]), parts[3])
    return res


def assert_refused(out: str, *names: str, refusals: frozenset[str] = REFUSALS) -> None:
    """Each named probe ran and was refused (returned -1 with a permission-type errno: not, say,
    EINVAL or EBADF, which would mean the kernel got past the permission check)."""
    results = syscall_results(out)
    for name in names:
        assert name in results, f"probe {name} did not run:\n{out}"
        ret, err = results[name]
        assert ret == -1 and err in refusals, f"{name} was not refused: returned {ret} ({err})\n{out}"


def run_on_host(
    code: str, uid: int | None = None, gid: int | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run python `code` on the host (as uid:gid via setpriv if given): the controls."""
    argv = ["/usr/bin/python3", "-c", code]
    if uid is not None:
        gid = uid if gid is None else gid
        argv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


# --- listeners --------------------------------------------------------------------------------


class Listener:
    """A host socket that accepts and counts connections on a thread (it never answers)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.accepted = 0
        self._stop = False
        sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


@contextlib.contextmanager
def unix_listener(path: Path | str, mode: int = 0o777) -> Iterator[Listener]:
    """A Unix socket bound at `path` (or an abstract one for "@name"), world-connectable."""
    s = socket.socket(socket.AF_UNIX)
    name = str(path)
    if name.startswith("@"):
        s.bind("\0" + name[1:])
    else:
        s.bind(name)
        os.chmod(name, mode)
    s.listen(16)
    listener = Listener(s)
    try:
        yield listener
    finally:
        listener.close()
        if not name.startswith("@"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)


def connects_from_host(path: Path | str, uid: int | None = None, gid: int | None = None) -> bool:
    """Control: whether a host process (as uid:gid) can connect to the socket at `path` ("@name": abstract)."""
    target = "\0" + str(path)[1:] if str(path).startswith("@") else str(path)
    code = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({target!r}); print('CONNECTED')"
    return "CONNECTED" in run_on_host(code, uid, gid).stdout


# The probe an action runs against sockets: "CONNECTED target" or "refused target why".
CONNECT_PY = """
import socket, sys, time
def connect(target):
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(target.replace("@", "\\0", 1))
        s.close()
        print("CONNECTED", target, flush=True)
    except OSError as e:
        print("refused", target, e, flush=True)
"""


def connect_script(targets: Sequence[str], wait_for: str = "") -> str:
    """Python code connecting to each target; first waits (up to 20 s) for `wait_for` to exist."""
    wait = ""
    if wait_for:
        wait = (
            "deadline = time.time() + 20\n"
            f"while not __import__('os').path.exists({wait_for!r}) and time.time() < deadline:\n"
            "    time.sleep(0.02)\n"
        )
    calls = "".join(f"connect({t!r})\n" for t in targets)
    return CONNECT_PY + wait + calls


def connected(out: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("CONNECTED ")]


# --- set-id files -------------------------------------------------------------------------------


def setid_files(root: Path) -> list[str]:
    """Set-uid / set-gid files, device nodes and files with a capability under root. (Not set-gid
    directories: they only pass their group on to new entries, which grants nothing.)"""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                continue
            if st.st_mode & (stat.S_ISUID | stat.S_ISGID) and not stat.S_ISDIR(st.st_mode):
                found.append(f"{p} mode {stat.filemode(st.st_mode)} uid {st.st_uid}")
            if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode):
                found.append(f"{p} device node")
            with contextlib.suppress(OSError):
                if "security.capability" in os.listxattr(p, follow_symlinks=False):
                    found.append(f"{p} has security.capability")
    return found


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
