"""Class 1: the sandbox's view of the host is an allow list. Files of other services, of goexd
itself and of users are not there at all (not merely unreadable), /sys, /proc and cgroup files
cannot be written, /dev has no host devices, and /etc's credentials are masked.

Every probe also looks at /workspace/README (the control): a probe that sees nothing at all
would pass vacuously. The secrets are 0600 in searchable (0755) dirs, so an unprivileged
sandbox could still see that they exist if its view held them: "not visible" is a claim about
the view, in both modes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess
from tests.security.conftest import Shared, run
from tests.security.probes import (
    SYSCALL_PRELUDE,
    assert_refused,
    host_secret_dir,
    readable,
    tag,
    visibility_script,
    visible,
)

SEC_BACKENDS = ("bwrap", "container")  # its escape attempts apply to any sandbox: run against both

CONTROL = "/workspace/README"


def assert_hidden(s: Shared, paths: list[Path], values: list[str]) -> None:
    r = run(s.d, s.session, visibility_script([*map(str, paths), CONTROL]))
    assert CONTROL in visible(r.out) and CONTROL in readable(r.out), f"the control failed:\n{r}"
    shown = visible(r.out) - {CONTROL}
    assert not shown, f"the sandbox sees host paths {sorted(shown)}:\n{r.out}"
    for v in values:
        assert v not in r.out, f"a host secret leaked into the sandbox:\n{r.out}"


# --- other services' and users' files --------------------------------------------------------

# Where other services and users keep files: none of it is the sandbox's business.
HOST_DIRS = ["/var/lib", "/srv", "/opt", "/mnt", "/media", "/root", "/run", "/var/tmp", "/tmp", "/var/cache"]


@pytest.mark.parametrize("parent", HOST_DIRS)
def test_a_services_root_only_file_is_not_in_the_view(sec_shared: Shared, parent: str) -> None:
    with host_secret_dir(Path(parent)) as (secret, value):
        assert_hidden(sec_shared, [secret, secret.parent], [value])


def test_another_users_home_is_not_in_the_view(sec_shared: Shared) -> None:
    nobody = pwd.getpwnam("nobody")
    with host_secret_dir(Path("/home"), uid=nobody.pw_uid, gid=nobody.pw_gid) as (secret, value):
        (secret.parent / ".bash_history").write_text(f"export TOKEN={value}\n")
        assert_hidden(sec_shared, [secret, secret.parent / ".bash_history", secret.parent], [value])


# --- goexd's own files and another goexd's ----------------------------------------------------


def test_the_daemons_own_state_is_not_in_the_view(sec_shared: Shared) -> None:
    d = sec_shared.d
    state = d.state_dir
    files = [state / "vault.key", state / "vault.bin", state / "journal.sqlite3", state / "fs", state]
    assert (state / "vault.key").exists() and (state / "journal.sqlite3").exists()
    key = (state / "vault.key").read_bytes()
    assert_hidden(sec_shared, files, [key.hex(), key.decode(errors="replace").strip()])


def test_the_daemons_log_file_config_and_socket_are_not_in_the_view(sec_shared: Shared) -> None:
    d = sec_shared.d
    log_file = d.root / "logs" / "goexd.log"
    assert log_file.exists()
    paths = [log_file, d.log_path, d.root / "goexd.toml", d.socket, d.socket.parent, d.root]
    assert_hidden(sec_shared, paths, ["goexd serving on"])


@pytest.fixture(scope="module")
def other_goexd() -> Iterator[DaemonProcess]:
    """Another goexd on this host (root, state under /var/lib like a system service), with a secret."""
    root = Path("/var/lib") / tag()
    root.mkdir(mode=0o755)
    d = DaemonProcess(root)
    try:
        d.start()
        yield d
    finally:
        if d.proc is not None:
            d.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_another_goexds_state_dir_is_not_in_the_view(sec_shared: Shared, other_goexd: DaemonProcess) -> None:
    state = other_goexd.state_dir
    key = (state / "vault.key").read_bytes()
    paths = [state / "vault.key", state / "vault.bin", state / "journal.sqlite3", state]
    assert_hidden(sec_shared, paths, [key.hex(), key.decode(errors="replace").strip()])


# --- /etc credentials -------------------------------------------------------------------------


@contextlib.contextmanager
def etc_file(path: Path, mode: int) -> Iterator[str]:
    """A credential file at `path` with a random value: the host's own if it has one (its value is
    then a line of it), else one made for the test and removed afterwards."""
    if path.exists():
        yield path.read_text(errors="replace").splitlines()[0]
        return
    created_dir = not path.parent.exists()
    path.parent.mkdir(mode=0o750, exist_ok=True)
    value = f"# {tag()} {os.urandom(8).hex()}"
    path.write_text(value + "\n")
    path.chmod(mode)
    try:
        yield value
    finally:
        path.unlink(missing_ok=True)
        if created_dir:
            path.parent.rmdir()


@pytest.mark.parametrize(
    "name",
    ["shadow", "gshadow", "ssh/ssh_host_ed25519_key", "ssh/ssh_host_rsa_key", "sudoers", "sudoers.d/goex-sec"],
)
def test_etc_credentials_are_masked(sec_shared: Shared, name: str) -> None:
    path = Path("/etc") / name
    with etc_file(path, 0o600 if "ssh" in name else 0o440) as value:
        r = run(sec_shared.d, sec_shared.session, visibility_script([str(path), CONTROL]))
        assert CONTROL in readable(r.out), r
        assert value not in r.out, f"{path} leaked:\n{r.out}"
        # Masked with an empty file or absent; never readable with content.
        if str(path) in readable(r.out):
            assert r.out.split(f"READ {path}\n", 1)[1].split("\n", 1)[0] == "", r.out


# --- /proc of host processes ------------------------------------------------------------------


def test_proc_of_a_host_process_is_not_reachable(sec_shared: Shared) -> None:
    value = f"SECRET-{os.urandom(8).hex()}"
    host = subprocess.Popen(["sleep", "300"], env={"HOST_SECRET": value, "PATH": "/usr/bin:/bin"})
    try:
        pid = host.pid
        paths = [f"/proc/{pid}/environ", f"/proc/{pid}/cmdline", f"/proc/{pid}/root/etc/hostname", f"/proc/{pid}"]
        r = run(sec_shared.d, sec_shared.session, visibility_script([*paths, CONTROL]))
        assert CONTROL in visible(r.out)
        assert value not in r.out
        assert not (visible(r.out) - {CONTROL}), r.out
    finally:
        host.kill()
        host.wait()


# --- writes to /sys, /proc, cgroups -----------------------------------------------------------

# Opening for writing is the probe (nothing is written): a sandbox that can open these can
# change the host's kernel settings.
OPEN_FOR_WRITE = (
    SYSCALL_PRELUDE
    + """
def try_open(path):
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        print("SYSCALL", "open:" + path, -1, errno.errorcode.get(e.errno, str(e.errno)), flush=True)
    else:
        os.close(fd)
        print("SYSCALL", "open:" + path, fd, "OK", flush=True)
for p in sys.argv[1:] if len(sys.argv) > 1 else PATHS:
    try_open(p)
"""
)

SYS_FILES = [
    "/sys/kernel/mm/transparent_hugepage/enabled",
    "/sys/power/state",
    "/sys/kernel/uevent_helper",
    "/proc/sys/kernel/hostname",
    "/proc/sys/kernel/core_pattern",
    "/proc/sys/vm/drop_caches",
    "/proc/sysrq-trigger",
]


def test_kernel_settings_in_sys_and_proc_cannot_be_opened_for_writing(sec_shared: Shared) -> None:
    code = f"PATHS = {SYS_FILES!r}\n" + OPEN_FOR_WRITE
    r = run(sec_shared.d, sec_shared.session, code, python=True)
    # Absent from the view is as good as refused.
    assert_refused(r.out, *(f"open:{p}" for p in SYS_FILES), refusals=frozenset({"EPERM", "EACCES", "EROFS", "ENOENT"}))


CGROUP_ESCAPE = (
    SYSCALL_PRELUDE
    + """
name = sys.argv[1] if len(sys.argv) > 1 else NAME
for controller in ("pids", "memory", "unified", ""):
    base = os.path.join("/sys/fs/cgroup", controller)
    if not os.path.isdir(base):
        continue
    try:
        os.mkdir(os.path.join(base, name))
        print("SYSCALL", "mkdir:" + controller, 0, "OK")
    except OSError as e:
        print("SYSCALL", "mkdir:" + controller, -1, errno.errorcode.get(e.errno, str(e.errno)))
# Move ourselves to the root cgroup, then to our own cgroup's parent: out of the run's limits.
for line in open("/proc/self/cgroup"):
    _, ctrls, path = line.strip().split(":", 2)
    ctrl = "unified" if not ctrls else ctrls.split(",")[0].replace("name=", "")
    for target in ("/", os.path.dirname(path)):
        procs = os.path.join("/sys/fs/cgroup", ctrl, target.lstrip("/"), "cgroup.procs")
        if not os.path.exists(procs):
            continue
        try:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
            print("SYSCALL", "move:" + ctrl + ":" + target, 0, "OK")
        except OSError as e:
            print("SYSCALL", "move:" + ctrl + ":" + target, -1, errno.errorcode.get(e.errno, str(e.errno)))
print("CGROUP", open("/proc/self/cgroup").read().replace(chr(10), " "))
"""
)


def test_cgroups_cannot_be_created_or_left(sec_shared: Shared) -> None:
    name = tag()
    r = run(sec_shared.d, sec_shared.session, f"NAME = {name!r}\n" + CGROUP_ESCAPE, python=True)
    try:
        moved = [line for line in r.out.splitlines() if line.startswith("SYSCALL") and line.endswith(" OK")]
        assert not moved, f"the sandbox changed cgroups:\n{r.out}"
        assert "CGROUP" in r.out, r
        created = list(Path("/sys/fs/cgroup").glob(f"*/{name}"))
        assert created == [], created
    finally:
        for p in Path("/sys/fs/cgroup").glob(f"*/{name}"):
            p.rmdir()


# --- /dev -------------------------------------------------------------------------------------


def host_block_devices() -> list[str]:
    return sorted(str(p) for p in Path("/dev").iterdir() if p.is_block_device())[:4]


def test_no_host_device_can_be_opened(sec_shared: Shared) -> None:
    devices = [*host_block_devices(), "/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/loop-control"]
    assert host_block_devices(), "the host has no block device to try"
    code = (
        SYSCALL_PRELUDE
        + f"""
for p in {devices!r}:
    try:
        fd = os.open(p, os.O_RDONLY)
        os.close(fd)
        print("SYSCALL", "open:" + p, fd, "OK")
    except OSError as e:
        print("SYSCALL", "open:" + p, -1, errno.errorcode.get(e.errno, str(e.errno)))
fd = os.open("/dev/null", os.O_RDONLY)
print("SYSCALL", "control", fd, "OK")
"""
    )
    r = run(sec_shared.d, sec_shared.session, code, python=True)
    assert "SYSCALL control" in r.out, r
    assert_refused(r.out, *(f"open:{p}" for p in devices), refusals=frozenset({"EPERM", "EACCES", "ENOENT", "ENXIO"}))


def test_device_nodes_cannot_be_made(sec_shared: Shared) -> None:
    name = tag()
    vda = os.stat(host_block_devices()[0]).st_rdev
    code = (
        SYSCALL_PRELUDE
        + f"""
import stat
for kind, mode, dev in (("blk", stat.S_IFBLK | 0o666, {vda}), ("chr", stat.S_IFCHR | 0o666, os.makedev(1, 1))):
    try:
        os.mknod("{name}-" + kind, mode, dev)
        print("SYSCALL", "mknod:" + kind, 0, "OK")
    except OSError as e:
        print("SYSCALL", "mknod:" + kind, -1, errno.errorcode.get(e.errno, str(e.errno)))
os.mkfifo("{name}-fifo")
print("SYSCALL", "control", 0, "OK")
"""
    )
    r = run(sec_shared.d, sec_shared.session, code, python=True)
    assert "SYSCALL control" in r.out, r
    assert_refused(r.out, "mknod:blk", "mknod:chr")
    for kind in ("blk", "chr"):
        assert not (sec_shared.ws / f"{name}-{kind}").exists()


# --- writes outside the workspace -------------------------------------------------------------


def test_nothing_outside_the_workspace_can_be_written(sec_shared: Shared) -> None:
    """Not even a world-writable host dir: it is not in the view."""
    with host_secret_dir(Path("/var/lib")) as (secret, _):
        open_dir = secret.parent / "drop"
        open_dir.mkdir(mode=0o777)
        open_dir.chmod(0o777)
        name = tag()
        targets = [open_dir / name, Path("/etc") / name, Path("/usr/local/bin") / name, Path("/var/tmp") / name]
        script = "; ".join(f"echo pwned > {t} 2>/dev/null && echo WROTE {t}" for t in targets)
        r = run(sec_shared.d, sec_shared.session, script + f"; echo ok > {name}; true")
        assert "WROTE" not in r.out, r.out
        assert [t for t in targets if t.exists()] == []
        assert (sec_shared.ws / name).read_text() == "ok\n"  # control


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def store_has(store: Path, blob: str) -> bool:
    argv = ["git", "-c", "safe.directory=*", f"--git-dir={store}", "cat-file", "-e", blob]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def test_snapshots_never_copy_a_host_file_a_symlink_points_to(sec_shared: Shared) -> None:
    """A symlink to /etc/shadow in the workspace is recorded as a link, not as shadow's content."""
    shadow = git_blob_id(Path("/etc/shadow").read_bytes())
    name = tag()
    run(sec_shared.d, sec_shared.session, f"ln -s /etc/shadow {name}-shadow; ln -s /etc {name}-etc")
    assert (sec_shared.ws / f"{name}-shadow").is_symlink()
    stores = list((sec_shared.d.state_dir / "fs").glob("*.git"))
    assert stores, "no snapshot store found"
    readme = git_blob_id((sec_shared.ws / "README").read_bytes())
    assert any(store_has(s, readme) for s in stores), "control: the workspace's README is not in any store"
    assert not [s for s in stores if store_has(s, shadow)], "a snapshot store holds /etc/shadow's content"
