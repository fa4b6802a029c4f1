"""goexd and goex-client ship as two wheels, but goexd imports the client's generated stubs: it pins the
client release it was built with, which must be the client's own version."""

from __future__ import annotations

import tomllib
from pathlib import Path

from goex._version import __version__ as client_version

ROOT = Path(__file__).resolve().parents[2]


def test_goexd_pins_the_client_release_of_this_tree() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [d for d in project["dependencies"] if d.split("=")[0].split(">")[0].strip() == "goex-client"]
    assert pins == [f"goex-client=={client_version}"], pins
    assert project["version"] == client_version, "goexd and goex-client are released together"
