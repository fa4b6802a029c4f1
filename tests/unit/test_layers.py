"""goexd's layers, read from its imports (ast): a lower layer never imports a higher one.

The order is written here once (and drawn in docs/architecture.md "Layers"): the domain at the bottom; it
imports nothing of goexd but itself. (The rest of the order lands with the packages of issue 18.)
"""

from __future__ import annotations

import ast
from pathlib import Path

DAEMON = Path(__file__).resolve().parents[2] / "daemon"
DOMAIN = "goexd.domain"


def _module(path: Path) -> str:
    rel = path.relative_to(DAEMON).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every goexd module `path` imports, TYPE_CHECKING blocks and function-level imports included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("goexd"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("goexd") and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_domain_imports_nothing_above_it() -> None:
    domain = sorted((DAEMON / "goexd" / "domain").rglob("*.py"))
    assert len(domain) >= 8, domain  # control: the layer is where this test looks
    wrong = {_module(p): sorted(n for n in _imports(p) if not _under(n, DOMAIN) and n != "goexd") for p in domain}
    assert {m: names for m, names in wrong.items() if names} == {}


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """Control: the reader finds an import inside a TYPE_CHECKING block and inside a function."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from goexd.engine.engine import Engine\n"
        "def f():\n    import goexd.server.app\n"
    )
    assert {"goexd.engine.engine", "goexd.server.app"} <= _imports(bad)
