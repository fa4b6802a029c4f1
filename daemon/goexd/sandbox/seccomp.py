"""Seccomp filters for sandboxed commands, compiled once with libseccomp (pyseccomp).

Two programs, both "allow unless listed" (a deny list in the spirit of Docker's default
profile, whose allow list leaves out exactly these calls), with any other architecture
(i386 `int 0x80`, x32) killing the process:

- `base`: what an untrusted process never needs. The kernel keyrings (keyctl, add_key,
  request_key: a sandbox read keys from the daemon's session keyring), bpf,
  perf_event_open, userfaultfd, kexec, kernel modules, open_by_handle_at (reads any file
  by handle), ptrace and process_vm_* (the egress forwarder, our code, shares the
  sandbox's uid), io_uring (it runs calls past this filter), every mount and namespace
  call, chroot, reboot, swap, clock and quota changes, acct, syslog; and
  chmod/open/creat/mknod with a set-uid or set-gid bit, so that no set-id file appears
  on the host even for the time an action runs (the daemon also strips any it finds in
  the change set afterwards). openat2 answers ENOSYS: its
  mode hides in a struct a filter cannot read, and libc falls back to openat.
- `unix_sockets`: socket(AF_UNIX, ...) refused. With it no Unix socket of the host can be
  connected to, whatever its path, link or name (the mount plan hides most, this closes
  the rest, a socket a host process binds inside the workspace included). socketpair()
  stays allowed (multiprocessing, subprocess pipes). It also refuses pathname sockets the
  command would bind for itself: use TCP on its own loopback instead.

- `personality`: personality(2) only with the values Docker's profile allows (the others can
  turn off ASLR or make data executable); written by hand, libseccomp cannot say it.

`Network.NONE` runs the command under `full` (base + unix_sockets) and `personality`, which
bwrap stacks (--add-seccomp-fd). `Network.PROXY` runs the egress forwarder under `base` and
`personality` (it must reach the proxy's Unix socket), and the forwarder puts
`unix_sockets` on the command before exec.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import struct
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

import pyseccomp as sc

# Refused with EPERM, as Docker's default profile leaves them out (its allow list) or gates
# them on a capability the sandbox never has. Names unknown to this libseccomp are skipped.
# fmt: off
DENIED: tuple[str, ...] = (
    # kernel keyrings
    "add_key", "keyctl", "request_key",
    # kernel, modules, tracing, performance counters
    "bpf", "perf_event_open", "userfaultfd", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms",
    "lookup_dcookie", "syslog", "acct", "quotactl", "quotactl_fd", "nfsservctl", "uselib", "ustat", "sysfs",
    "_sysctl", "vm86", "vm86old", "iopl", "ioperm", "kcmp",
    # other processes' memory and handles
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd",
    "open_by_handle_at", "name_to_handle_at",
    # mounts, namespaces, root
    "mount", "umount", "umount2", "pivot_root", "chroot", "setns", "unshare",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    # io_uring runs operations this filter would not see
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # the machine
    "reboot", "swapon", "swapoff", "settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "vhangup",
)
# fmt: on
# Answered ENOSYS so that libc falls back to a call this filter can read.
NOT_AVAILABLE: tuple[str, ...] = ("clone3", "openat2")

SETID_BITS = (0o4000, 0o2000)  # S_ISUID, S_ISGID
# (syscall, index of its mode argument)
MODE_ARGS: tuple[tuple[str, int], ...] = (
    ("chmod", 1),
    ("fchmod", 1),
    ("fchmodat", 2),
    ("fchmodat2", 2),
    ("open", 2),
    ("openat", 3),
    ("creat", 1),
    ("mknod", 1),
    ("mknodat", 2),
)
CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)


# personality(2) values allowed, as in Docker's profile: PER_LINUX, PER_LINUX32, UNAME26 and
# their mix, and the query. The rest can set ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, ...
PERSONALITY_MAX = 0x20008
PERSONALITY_QUERY = 0xFFFFFFFF


@dataclass(frozen=True)
class Programs:
    """Compiled classic-BPF programs, as bwrap's --add-seccomp-fd and prctl() take them."""

    base: bytes
    unix_sockets: bytes
    full: bytes  # base + unix_sockets, for a command bwrap executes directly
    personality: bytes  # stacked on both: a rule libseccomp cannot express (see _personality)


@functools.cache
def programs() -> Programs:
    """Compile once per process (about 1 ms each)."""
    return Programs(
        base=_export(_base_rules()),
        unix_sockets=_export(_unix_rules()),
        full=_export([*_base_rules(), *_unix_rules()]),
        personality=_personality(),
    )


def pipe_with(program: bytes) -> int:
    """A pipe's read end holding `program` and then EOF: what bwrap's --seccomp FD reads.

    Programs are a few hundred bytes, far below a pipe's buffer, so the write never blocks.
    """
    r, w = os.pipe()
    try:
        os.write(w, program)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    return r


_Rule = tuple[int, str, tuple[sc.Arg, ...]]


def _base_rules() -> list[_Rule]:
    eperm = sc.ERRNO(errno.EPERM)
    rules: list[_Rule] = [(eperm, name, ()) for name in DENIED]
    rules += [(sc.ERRNO(errno.ENOSYS), name, ()) for name in NOT_AVAILABLE]
    rules += [
        (eperm, name, (sc.Arg(index, sc.MASKED_EQ, bit, bit),)) for name, index in MODE_ARGS for bit in SETID_BITS
    ]
    rules += [(eperm, "clone", (sc.Arg(0, sc.MASKED_EQ, flag, flag),)) for flag in CLONE_NAMESPACE_FLAGS]
    return rules


def _unix_rules() -> list[_Rule]:
    return [(sc.ERRNO(errno.EAFNOSUPPORT), "socket", (sc.Arg(0, sc.EQ, socket.AF_UNIX),))]


def _personality() -> bytes:
    """personality(2) refused unless its argument is one of the allowed values.

    "Deny unless it is the query or at most PERSONALITY_MAX" takes two comparisons of one
    argument in one rule, which libseccomp refuses; so this one is written out by hand.
    The kernel reads the argument as 32 bits: any of the upper 32 set is refused too.
    """
    ld, jeq, jgt, ret = 0x20, 0x15, 0x25, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGT|K, BPF_RET|K
    allow, deny = 0x7FFF0000, 0x00050000 | errno.EPERM  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO
    arch = sc.system_arch()
    nr = sc.resolve_syscall(arch, "personality")
    lo, hi = (16, 20) if sys.byteorder == "little" else (20, 16)  # seccomp_data.args[0]'s halves
    insns = [  # (code, jump if true, jump if false, k); jumps are relative to the next instruction
        (ld, 0, 0, 4),  # 0: A = arch
        (jeq, 0, 7, arch),  # 1: another architecture: the base program kills it; allow here
        (ld, 0, 0, 0),  # 2: A = syscall number
        (jeq, 0, 5, nr),  # 3
        (ld, 0, 0, hi),  # 4: A = the argument's upper half
        (jeq, 0, 4, 0),  # 5: not zero: deny
        (ld, 0, 0, lo),  # 6: A = the argument's lower half
        (jeq, 1, 0, PERSONALITY_QUERY),  # 7: the query: allow
        (jgt, 1, 0, PERSONALITY_MAX),  # 8: above the allowed values: deny
        (ret, 0, 0, allow),  # 9
        (ret, 0, 0, deny),  # 10
    ]
    return b"".join(struct.pack("=HBBI", *i) for i in insns)


def _export(rules: Iterable[_Rule]) -> bytes:
    f = sc.SyscallFilter(defaction=sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for action, name, args in rules:
        try:
            number = sc.resolve_syscall(sc.system_arch(), name)
        except (OSError, ValueError):
            continue  # not a syscall on this architecture (vm86 on x86_64, ...)
        if number < 0:
            continue
        f.add_rule(action, name, *args)
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        return out.read()
