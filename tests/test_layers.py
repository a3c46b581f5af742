"""The packages are layers: every import runs down (README, Layout), none sideways between engines or tools."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "xsplice_emu"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("text", "suggest", "layout", "platform"),
    ("errors",),
    ("files", "duration"),
    ("arch",),
    ("image",),
    ("provision",),
    ("tracing",),
    ("machine",),
    ("livepatch",),
    ("engines",),
    ("engines.controller", "engines.xen"),
    ("control",),
    ("scenario",),
    ("authoring", "explore", "reference", "server", "viewer"),
    ("cli", "pytest_plugin", ""),
)
"""Bottom first. A unit imports only units of lower layers (and itself); units in one layer never import each
other. `engines` is the surface both engines implement; "" is the package's own __init__."""

RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    """The layer unit of a dotted module name below xsplice_emu (the engines count one by one)."""
    parts = module.split(".")[1:]
    if parts[:1] == ["engines"] and len(parts) > 1 and parts[1] in ("controller", "xen"):
        return ".".join(parts[:2])
    return parts[0] if parts else ""


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The xsplice_emu modules `path` imports, type-checking imports included."""
    module = _module(path).split(".")
    package = module if path.name == "__init__.py" else module[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "xsplice_emu" or name.startswith("xsplice_emu.")}


def _upward_imports() -> list[str]:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit(_module(path))
        for target in sorted(_imports(path)):
            other = _unit(target)
            if other != unit and not RANK[other] < RANK[unit]:
                wrong.append(f"{path.relative_to(PACKAGE)}: {unit or 'xsplice_emu'} imports {target}")
    return wrong


def test_every_unit_has_a_layer():
    """A new top-level module or package is given its place in LAYERS."""
    units = {_unit(_module(path)) for path in PACKAGE.rglob("*.py")}
    assert units - RANK.keys() == set()


def test_imports_run_down_the_layers():
    """No module imports a package above its own or beside it (the engines not each other, the tools not each other)."""
    assert _upward_imports() == []


def test_an_upward_import_is_caught(tmp_path, monkeypatch):
    """The check is not vacuous: the machine importing the session is reported."""
    copy = tmp_path / "xsplice_emu"
    for path in PACKAGE.rglob("*.py"):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    (copy / "machine" / "core.py").write_text("from ..control.session import Session\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", copy)
    assert _upward_imports() == ["machine/core.py: machine imports xsplice_emu.control.session"]
