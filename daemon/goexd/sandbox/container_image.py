"""The container backend's image, built offline from this machine's own Debian packages.

Nothing can be pulled on an offline machine (or a CI runner without registry access), so goexd can
make a small image itself: the files of a few installed packages (a shell, coreutils, python3, curl...)
and of everything they depend on, read from dpkg's database and put into one tar that the engine
imports (`POST /images/create?fromSrc=-`, what `docker import` does). The image is the same tools the
bubblewrap sandbox shows from the host's /usr, at the same paths.

Words: a *recipe* is the packages asked for; its *closure* the installed packages they need
(Depends and Pre-Depends, the first installed alternative of each); the image's *key* a digest of
the closure's names and versions, the extra files and this builder's format: the tag is
`localhost/goex-sandbox:<key>`, so an image already built from the same packages is found by its tag
and never built twice.

Rules: only installed packages are read (no network, no apt); documentation, manual pages and
locales are left out; the host's merged-/usr links (/bin -> usr/bin ...) are kept as links; the image
gets a minimal /etc/passwd and /etc/group (root, nobody) and empty /tmp, /workspace and /run/goex.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import re
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from goexd.config import ContainerConfig
from goexd.domain.errors import SetupError
from goexd.sandbox.container_endpoint import endpoint_from
from goexd.sandbox.container_engine import EngineUnavailable, connect, engine_errors

log = logging.getLogger(__name__)

REPOSITORY = "localhost/goex-sandbox"
FORMAT = "3"  # bump when what goes into the tar changes: every key changes with it
DEFAULT_PACKAGES = (
    "dash",
    "bash",
    "coreutils",
    "util-linux",
    "findutils",
    "grep",
    "sed",
    "gzip",
    "tar",
    "procps",
    "python3",  # whichever python3.X the machine has, with its standard library
    "curl",
)
# Packages never worth copying into a sandbox image (maintainer-script machinery, data).
LEFT_OUT_PACKAGES = frozenset(
    {"debconf", "perl-base", "dpkg", "init-system-helpers", "debianutils", "tzdata", "readline-common", "libc-bin"}
)
LEFT_OUT_DIRS = ("/usr/share/doc/", "/usr/share/man/", "/usr/share/info/", "/usr/share/locale/", "/usr/share/lintian/")
MERGED_USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
EXTRA_FILES = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
    "etc/hostname": b"goex\n",
}
EMPTY_DIRS = {"tmp": 0o1777, "run": 0o755, "run/goex": 0o755, "root": 0o700, "proc": 0o555}
_DEPENDS_FIELDS = "${Package}\t${Version}\t${Status}\t${Pre-Depends}\t${Depends}\n"


class ImageError(Exception):
    """The image cannot be built here; the message says what is missing."""


class ImageApi(Protocol):
    """The part of docker.APIClient the builder uses (images by name, import)."""

    def images(self, name: str | None = None, quiet: bool = False) -> list[object]: ...

    def import_image(self, src: str | None = None, repository: str | None = None, tag: str | None = None) -> object: ...


@dataclass(frozen=True)
class Package:
    name: str
    version: str


def closure(wanted: Sequence[str]) -> list[Package]:
    """The installed packages `wanted` needs, themselves included, sorted by name."""
    found: dict[str, Package] = {}
    todo = list(wanted)
    while todo:
        name = todo.pop()
        if name in found or name in LEFT_OUT_PACKAGES:
            continue
        info = _installed(name)
        if info is None:
            if name in wanted:
                raise ImageError(f"package {name!r} is not installed here (apt-get install {name})")
            continue
        version, depends = info
        found[name] = Package(name, version)
        for alternatives in _clauses(depends):
            chosen = next((a for a in alternatives if a in found or _installed(a) is not None), None)
            if chosen is not None:
                todo.append(chosen)
    return sorted(found.values(), key=lambda p: p.name)


@functools.cache
def _installed_packages() -> dict[str, tuple[str, str]]:
    """name -> (version, "pre-depends, depends") of every installed package (dpkg's database, read once)."""
    out = subprocess.run(["dpkg-query", "-W", f"-f={_DEPENDS_FIELDS}"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise ImageError(f"cannot read dpkg's database (a Debian-based machine is needed): {out.stderr.strip()}")
    found = {}
    for line in out.stdout.splitlines():
        pkg, version, status, pre, depends = line.split("\t")
        if status.endswith(" installed"):
            found[pkg] = (version, f"{pre}, {depends}")
    return found


def _installed(name: str) -> tuple[str, str] | None:
    return _installed_packages().get(name.split(":", maxsplit=1)[0])


def _clauses(depends: str) -> Iterator[list[str]]:
    for clause in depends.split(","):
        names = [re.split(r"[ (:]", alt.strip(), maxsplit=1)[0] for alt in clause.split("|")]
        if names and names[0]:
            yield names


def key(packages: Iterable[Package]) -> str:
    h = hashlib.sha256(f"goex-sandbox-image:{FORMAT}\n".encode())
    for p in packages:
        h.update(f"{p.name}={p.version}\n".encode())
    for name, content in sorted(EXTRA_FILES.items()):
        h.update(name.encode() + b"\0" + content)
    return h.hexdigest()[:16]


def files_of(packages: Iterable[Package]) -> list[str]:
    """Every path dpkg lists for the packages, minus documentation, sorted."""
    names = [p.name for p in packages]
    out = subprocess.run(["dpkg-query", "-L", *names], capture_output=True, text=True, check=False)
    return sorted(
        {
            line
            for line in out.stdout.splitlines()
            if line.startswith("/") and line != "/." and not line.startswith(LEFT_OUT_DIRS)
        }
    )


def write_tar(packages: Sequence[Package], out: BinaryIO) -> int:
    """The image's root file system as a tar (to `out`); returns how many entries."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        return _fill(tar, packages)


def _fill(tar: tarfile.TarFile, packages: Sequence[Package]) -> int:
    written: set[str] = set()

    def add_dir(name: str, mode: int = 0o755) -> None:
        if name in written or not name:
            return
        parent = os.path.dirname(name)
        add_dir(parent)
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, mode
        tar.addfile(info)
        written.add(name)

    for link in MERGED_USR_LINKS:
        host = Path("/") / link
        if host.is_symlink():
            info = tarfile.TarInfo(link)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(host), 0o777
            tar.addfile(info)
            written.add(link)
    for name, mode in EMPTY_DIRS.items():
        add_dir(name, mode)
    for name, content in EXTRA_FILES.items():
        add_dir(os.path.dirname(name))
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(content), 0o644
        tar.addfile(info, io.BytesIO(content))
        written.add(name)
    for path in files_of(packages):
        name = _in_image(path)
        if name in written:
            continue
        try:
            st = os.lstat(path)
        except OSError:
            continue  # a conffile the admin removed, a diverted path
        add_dir(os.path.dirname(name))
        if stat.S_ISDIR(st.st_mode):
            add_dir(name, stat.S_IMODE(st.st_mode))
            continue
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID)  # no set-id program in a sandbox
        info.mtime = int(st.st_mtime)
        if stat.S_ISLNK(st.st_mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
            tar.addfile(info)
        elif stat.S_ISREG(st.st_mode):
            info.size = st.st_size
            with open(path, "rb") as f:
                tar.addfile(info, f)
        else:
            continue
        written.add(name)
    _add_missing_links(tar, written)
    return len(written)


def _in_image(path: str) -> str:
    """The tar name of a host path: under its real directory (/bin/dash -> usr/bin/dash on merged /usr)."""
    parent = os.path.realpath(os.path.dirname(path))
    return os.path.join(parent, os.path.basename(path)).lstrip("/")


def _add_missing_links(tar: tarfile.TarFile, written: set[str]) -> None:
    """Links that maintainer scripts or alternatives make, not dpkg's lists: /bin/sh, python3."""
    pythons = sorted((n for n in written if re.fullmatch(r"usr/bin/python3\.\d+", n)), key=_version)
    python = os.path.basename(pythons[-1]) if pythons else "python3"
    for name, target in (("usr/bin/sh", "dash"), ("usr/bin/python3", python), ("usr/bin/awk", "mawk")):
        if name not in written and os.path.join(os.path.dirname(name), target) in written:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)
            written.add(name)


def _version(path: str) -> tuple[int, ...]:
    return tuple(int(x) for x in path.rsplit("python", 1)[1].split("."))


def tag_for(packages: Sequence[Package]) -> str:
    return f"{REPOSITORY}:{key(packages)}"


def ensure_image(api: ImageApi, wanted: Sequence[str] = DEFAULT_PACKAGES) -> str:
    """The image built from `wanted`'s closure, imported into the engine unless its tag is there; its tag."""
    packages = closure(wanted)
    tag = tag_for(packages)
    if api.images(name=tag, quiet=True):
        return tag
    with tempfile.TemporaryDirectory(prefix="goex-image-") as scratch:
        path = Path(scratch) / "rootfs.tar"
        with open(path, "wb") as f:
            count = write_tar(packages, f)
        log.info("importing %s: %d entries, %d bytes, from %d packages", tag, count, path.stat().st_size, len(packages))
        # The tag goes with the repository: Podman's compatible API ignores a separate `tag` on an import.
        api.import_image(src=str(path), repository=tag)
    if not api.images(name=tag, quiet=True):
        raise ImageError(f"the engine did not keep the imported image {tag}")
    return tag


def build_image(settings: ContainerConfig, wanted: Sequence[str] = DEFAULT_PACKAGES) -> str:
    """`goexd --build-image`: the image in the configured engine, also tagged `<repository>:latest` (so that
    `[container] image = "localhost/goex-sandbox"` names the newest); its content tag. SetupError when it cannot."""
    endpoint = endpoint_from(settings.endpoint)
    try:
        api = connect(endpoint, settings.api_timeout_s)
        with engine_errors(endpoint, "building goexd's image"):
            tag = ensure_image(api, wanted)
            api.tag(tag, REPOSITORY, "latest")
    except (EngineUnavailable, ImageError) as e:
        raise SetupError(str(e)) from None
    return tag
