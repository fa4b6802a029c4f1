"""goexd's layers, read from its imports (ast): a lower layer never imports a higher one.

The order is written here once (and drawn in docs/architecture.md "Layers"): the domain at the bottom, it
imports nothing of goexd but itself; every module belongs to exactly one layer and imports only its own layer
and those below; the resource kind packages never import one another (what two kinds share lives in the
shared resources layer).
"""

from __future__ import annotations

import ast
from pathlib import Path

DAEMON = Path(__file__).resolve().parents[2] / "daemon"
DOMAIN = "goexd.domain"
KINDS = ("goexd.resources.fs", "goexd.resources.sqlite", "goexd.resources.postgres", "goexd.resources.http")
# Lowest first. A name is a package or module; a module belongs to the longest name it falls under.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("goexd.domain",),
    ("goexd.config", "goexd.diskspace", "goexd.faults", "goexd.tomlcheck", "goexd.sd_notify"),
    ("goexd.sql", "goexd.snapshots", "goexd.sandbox", "goexd.vault"),
    ("goexd.dbinspect", "goexd.policy", "goexd.egress"),
    (
        "goexd.resources",
        "goexd.resources.registry",
        "goexd.resources.host_paths",
        "goexd.resources.outcomes",
        "goexd.resources.sql_reads",
    ),
    KINDS,
    ("goexd.resources.kinds",),
    ("goexd.planner",),
    ("goexd.engine",),
    ("goexd.stop_control",),
    ("goexd.admin",),
    ("goexd.server",),
    ("goexd.main", "goexd.startup", "goexd.launcher", "goexd"),
)


def _module(path: Path) -> str:
    rel = path.relative_to(DAEMON).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path, module: str | None = None) -> set[str]:
    """Every goexd module `path` (the module `module`, by default found from its path) imports, TYPE_CHECKING
    blocks, function-level and relative imports included (a relative one is resolved against its package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("goexd"))
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("goexd")):
            base = node.module or ""
            if node.level:
                package = (module or _module(path)).split(".")
                package = package if path.name == "__init__.py" else package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
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


def test_the_check_resolves_a_relative_import(tmp_path: Path) -> None:
    """Control: `from ..postgres import clone` in a sqlite module is the kind-to-kind import it is."""
    bad = tmp_path / "snapshot.py"
    bad.write_text("from ..postgres import clone\nfrom . import run\n")
    found = _imports(bad, "goexd.resources.sqlite.snapshot")
    assert {"goexd.resources.postgres.clone", "goexd.resources.sqlite.run"} <= found
    assert _kind("goexd.resources.postgres.clone") != _kind("goexd.resources.sqlite.snapshot")


def _layer(name: str) -> tuple[int, str]:
    """(layer index, the layer name it falls under) for a goexd module or imported name."""
    best: tuple[int, str] | None = None
    for i, names in enumerate(LAYERS):
        for n in names:
            if _under(name, n) and (best is None or len(n) > len(best[1])):
                best = (i, n)
    if best is None:
        raise AssertionError(f"{name} is in no layer: add it to LAYERS (and to docs/architecture.md)")
    return best


def _kind(name: str) -> str | None:
    return next((k for k in KINDS if _under(name, k)), None)


def test_every_module_imports_only_its_layer_and_below() -> None:
    modules = sorted((DAEMON / "goexd").rglob("*.py"))
    assert len(modules) > 150, len(modules)  # control: the whole daemon is read
    wrong: dict[str, list[str]] = {}
    for path in modules:
        me = _module(path)
        mine, _ = _layer(me)
        for name in sorted(_imports(path)):
            if name in ("goexd", "goexd.__version__"):  # the package's own metadata, which imports nothing
                continue
            theirs, _ = _layer(name)
            other_kind = _kind(name) not in (None, _kind(me))
            if theirs > mine or (_kind(me) is not None and other_kind):
                wrong.setdefault(me, []).append(name)
    assert wrong == {}


def test_the_layer_check_sees_a_kind_importing_another_and_a_layer_importing_up() -> None:
    """Control: the ordering and the sibling rule both find what they are there for."""
    assert _layer("goexd.resources.sqlite.inverse")[0] > _layer("goexd.resources.sql_reads")[0]
    assert _layer("goexd.engine.journal")[0] > _layer("goexd.resources.kinds")[0]
    assert _layer("goexd.snapshots.git_store")[0] < _layer("goexd.engine.engine")[0]
    assert _kind("goexd.resources.http.send") != _kind("goexd.resources.fs.trial")
    assert _kind("goexd.resources.sql_reads") is None
