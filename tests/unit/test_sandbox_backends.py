"""sandbox/backends.py: the configured backend by name; an unknown name stops the start naming the known ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from goexd import config
from goexd.domain.errors import SetupError
from goexd.sandbox.backends import BACKENDS, SandboxHost, open_sandbox
from goexd.sandbox.bwrap import BwrapSandbox


def test_the_configured_backend_is_built_and_usable(tmp_path: Path) -> None:
    f = tmp_path / "goexd.toml"
    f.write_text('[sandbox]\nbackend = "bwrap"\n')
    cfg = config.load(f, environ={})
    assert cfg.sandbox.backend == "bwrap"
    sandbox = open_sandbox(cfg.sandbox.backend, SandboxHost(cfg, [tmp_path / "own"]))
    assert isinstance(sandbox, BwrapSandbox)
    sandbox.check()  # the real bwrap answers


def test_an_unknown_backend_stops_the_start_naming_the_known_ones(tmp_path: Path) -> None:
    f = tmp_path / "goexd.toml"
    f.write_text('[sandbox]\nbackend = "firecracker"\n')
    cfg = config.load(f, environ={})
    with pytest.raises(SetupError) as e:
        open_sandbox(cfg.sandbox.backend, SandboxHost(cfg, []))
    assert "'firecracker' is not a sandbox backend" in str(e.value)
    assert all(name in str(e.value) for name in BACKENDS)
