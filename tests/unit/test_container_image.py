"""goexd's offline image (sandbox/container_image.py): which packages, which files, which tag; without an
engine (the import into a real one is what tests/services/container_engine.py does for every test session)."""

from __future__ import annotations

import io
import tarfile

import pytest

from goexd.sandbox import container_image as ci


def test_the_closure_holds_what_python_and_a_shell_need_and_the_key_follows_it() -> None:
    packages = ci.closure(ci.DEFAULT_PACKAGES)
    names = {p.name for p in packages}
    assert {"dash", "coreutils", "python3", "libc6", "curl"} <= names
    assert any(n.startswith("libpython3.") and n.endswith("-stdlib") for n in names)
    assert not names & ci.LEFT_OUT_PACKAGES
    assert ci.key(packages) == ci.key(list(packages))  # the same packages, the same tag
    bumped = [ci.Package(p.name, p.version + ("+1" if p.name == "dash" else "")) for p in packages]
    assert ci.key(bumped) != ci.key(packages)  # a package's new version is a new image


def test_a_package_that_is_not_installed_is_named() -> None:
    with pytest.raises(ci.ImageError, match="no-such-package-here"):
        ci.closure(["no-such-package-here"])


def test_the_tar_is_a_root_file_system_without_documentation_or_set_id_bits() -> None:
    buf = io.BytesIO()
    count = ci.write_tar(ci.closure(["dash", "coreutils"]), buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert count == len(members)
    assert members["usr/bin/sh"].issym() and members["usr/bin/sh"].linkname == "dash"
    assert members["usr/bin/dash"].isfile() and members["usr/bin/cat"].isfile()
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"  # merged /usr, as the host has it
    assert members["tmp"].mode == 0o1777 and "workspace" not in members  # /workspace: the run's bind only
    assert b"nobody" in tar_file(buf, "etc/passwd")
    assert not [n for n in members if n.startswith("usr/share/doc/")]
    assert not [n for n, m in members.items() if m.mode & 0o6000]


def tar_file(buf: io.BytesIO, name: str) -> bytes:
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()
