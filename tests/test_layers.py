"""Layers point one way: no module imports a package above its own, at top level or inside a function.

Lowest first: ``errors`` → ``base`` (configs, geometry, network shapes; no torch) → ``io`` (the byte
format) → ``models`` (model families) → ``core`` (the pipeline) → ``store`` (chunked ``.sci.zarr``
stores, Dask) → the applications (``cli``, ``bench``,
the ``napari_sci`` API) → ``_napari`` (the only package that may import napari or Qt).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# (layer name, module prefixes), lowest first; a module belongs to the layer naming it or a package
# above it; the bare package name ``napari_sci`` means its __init__ (the public API) alone
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("errors", ("napari_sci.errors",)),
    ("base", ("napari_sci.base",)),
    ("io", ("napari_sci.io",)),
    ("models", ("napari_sci.models",)),
    ("core", ("napari_sci.core",)),
    ("store", ("napari_sci.store",)),
    ("apps", ("napari_sci.cli", "napari_sci.cli_progress", "napari_sci.cli_store", "napari_sci.cli_batch",
               "napari_sci.bench",
              "napari_sci.__main__", "napari_sci")),
    ("napari", ("napari_sci._napari",)),
)
# third-party packages a low layer may import besides the standard library (None: any)
ALLOWED_THIRD_PARTY: dict[str, frozenset[str] | None] = {
    "errors": frozenset(),
    "base": frozenset({"numpy"}),
    "io": frozenset({"numpy", "constriction"}),
}
GUI = frozenset({"qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "vispy", "superqt"})


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported}: {self.why}"


def layer_of(module: str) -> int:
    """Index of the layer ``module`` belongs to; a module in no layer is an error."""
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or (p != "napari_sci" and module.startswith(p + ".")) for p in prefixes):
            return index
    raise LookupError(f"{module} is in no layer; add it to LAYERS in tests/test_layers.py")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import anywhere in the file, relative ones resolved.

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module of ``root``.
    """
    found: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                as_path = root.joinpath(*candidate.split("."))
                is_module = as_path.with_suffix(".py").exists() or (as_path / "__init__.py").exists()
                found.append((node.lineno, candidate if is_module else base))
    return found


def violations(root: Path, package: str = "napari_sci") -> list[Violation]:
    """Every import in ``root/package`` that runs up the layers or brings a forbidden dependency."""
    stdlib = sys.stdlib_module_names
    found: list[Violation] = []
    for path in sorted((root / package).rglob("*.py")):
        module = module_name(path, root)
        layer = layer_of(module)
        layer_name = LAYERS[layer][0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, imported in imported_modules(tree, module, path.name == "__init__.py", root):
            top = imported.split(".")[0]
            if top == package:
                target = layer_of(imported)
                if target > layer:
                    found.append(Violation(module, line, imported,
                                           f"{layer_name} is below {LAYERS[target][0]}"))
                continue
            if top in stdlib or top == "__future__":
                continue
            allowed = ALLOWED_THIRD_PARTY.get(layer_name)
            if allowed is not None and top not in allowed:
                found.append(Violation(module, line, imported, f"{layer_name} may import only the "
                                       f"standard library and {sorted(allowed)}"))
            elif top in GUI and layer_name != "napari":
                found.append(Violation(module, line, imported, "only _napari may import a GUI"))
    return found


def test_no_import_runs_up_the_layers():
    found = violations(SRC)
    assert not found, "\n".join(str(v) for v in found)


def test_every_module_has_a_layer():
    for path in (SRC / "napari_sci").rglob("*.py"):
        layer_of(module_name(path, SRC))


def _write(root: Path, relative: str, text: str = "") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    """A tiny napari_sci with one clean module per layer."""
    for package in ("napari_sci", "napari_sci/base", "napari_sci/io", "napari_sci/core",
                    "napari_sci/_napari"):
        _write(tmp_path, f"{package}/__init__.py")
    _write(tmp_path, "napari_sci/errors.py")
    _write(tmp_path, "napari_sci/base/shapes.py",
           "import math\nimport numpy\nfrom napari_sci import errors\n")
    _write(tmp_path, "napari_sci/io/format.py", "from napari_sci.base.shapes import x\nfrom . import other\n")
    _write(tmp_path, "napari_sci/io/other.py")
    _write(tmp_path, "napari_sci/core/codec.py", "import torch\nfrom napari_sci.io import format\n")
    _write(tmp_path, "napari_sci/_napari/widget.py", "import qtpy\nfrom napari_sci.core import codec\n")
    return tmp_path


def test_the_checker_passes_a_clean_tree(synthetic):
    assert violations(synthetic) == []


def test_the_checker_finds_an_upward_import_inside_a_function(synthetic):
    _write(synthetic, "napari_sci/io/format.py",
           "def decode():\n    from napari_sci.core.codec import decode_contents\n")
    found = violations(synthetic)
    assert [(v.module, v.line, v.imported) for v in found] == [("napari_sci.io.format", 2,
                                                               "napari_sci.core.codec")]


def test_the_checker_resolves_relative_imports(synthetic):
    _write(synthetic, "napari_sci/base/shapes.py", "from ..io import format\n")
    assert [v.imported for v in violations(synthetic)] == ["napari_sci.io.format"]


def test_the_checker_finds_forbidden_dependencies(synthetic):
    _write(synthetic, "napari_sci/io/format.py", "import torch\n")
    _write(synthetic, "napari_sci/core/codec.py", "def show():\n    import napari\n")
    found = {v.imported: v.why for v in violations(synthetic)}
    assert set(found) == {"torch", "napari"}
    assert "only _napari" in found["napari"]


def test_the_checker_refuses_a_module_in_no_layer(synthetic):
    _write(synthetic, "napari_sci/elsewhere.py")
    with pytest.raises(LookupError, match="no layer"):
        violations(synthetic)
