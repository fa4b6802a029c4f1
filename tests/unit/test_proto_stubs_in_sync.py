"""The checked-in generated stubs must match what `make proto` produces from the .proto files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_match_the_proto_files(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto" / "goex" / "v1").glob("*.proto"))
    assert protos, "no .proto files found"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'proto'}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *protos,
        ],
        check=True,
        cwd=ROOT / "proto",
    )
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "goex" / "v1").iterdir()}
    checked_in_dir = ROOT / "clients" / "python" / "goex" / "v1"
    checked_in = {
        p.relative_to(ROOT / "clients" / "python"): p.read_bytes()
        for p in checked_in_dir.iterdir()
        if p.name != "__init__.py" and p.suffix in (".py", ".pyi")
    }
    assert set(fresh) == set(checked_in), "stub files differ: run `make proto`"
    stale = [str(name) for name, data in fresh.items() if checked_in[name] != data]
    assert not stale, f"stale generated stubs (run `make proto`): {stale}"
