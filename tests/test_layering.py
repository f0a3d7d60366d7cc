"""The library is pure: only ``vol3/`` and ``plugins/`` import volatility3.

Checked two ways: statically, every import statement of every module outside
those two directories (relative imports resolved, so ``from ..vol3 import x``
counts as reaching volatility3 through the front end); and at run time,
importing every library module in a fresh interpreter leaves ``volatility3``
out of ``sys.modules``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import volatility_pkram

PACKAGE = Path(volatility_pkram.__file__).resolve().parent
FRONT_ENDS = ("vol3", "plugins")
#: front-end modules outside vol3/ that may import a vol3 module which itself
#: does not import volatility3: ``python -m volatility_pkram`` edits vol.json
ALLOWED_VOL3_IMPORTS = {("volatility_pkram.__main__", "volatility_pkram.vol3.config")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def library_modules():
    """Every module of the package outside vol3/ and plugins/, as (dotted name, path)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in FRONT_ENDS:
            continue
        yield _module_name(path), path


def _imported(module: str, path: Path, node: ast.AST):
    """The absolute names an import statement brings in."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if node.level:
        base = package.split(".")
        base = base[:len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module
    # "from pkg import sub" may import the submodule pkg.sub
    return [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]


def _violations(module: str, path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        for name in _imported(module, path, node):
            top = name.split(".")
            if top[0] == "volatility3":
                yield f"{path.relative_to(PACKAGE)}:{node.lineno} imports {name}"
            elif top[:2] in (["volatility_pkram", "vol3"], ["volatility_pkram", "plugins"]) \
                    and len(top) > 2 and (module, name) not in ALLOWED_VOL3_IMPORTS:
                yield f"{path.relative_to(PACKAGE)}:{node.lineno} imports the front end {name}"


def test_the_walk_sees_the_library():
    names = {name for name, _path in library_modules()}
    assert {"volatility_pkram.core.physmem", "volatility_pkram.pkram.reader",
            "volatility_pkram.pkram.choose", "volatility_pkram.output.files"} <= names
    assert not any(".vol3" in n or ".plugins" in n for n in names)


def test_no_library_module_imports_volatility3():
    bad = [v for name, path in library_modules() for v in _violations(name, path)]
    assert bad == []


def test_relative_imports_are_resolved():
    """The check itself: a relative import into vol3/ from the library is caught."""
    fake = PACKAGE / "pkram" / "fake.py"
    tree = ast.parse("from ..vol3 import open\nfrom ..vol3.layer import LayerMemory\n"
                     "from . import format\nimport volatility3.framework\n")
    names = [n for node in tree.body for n in _imported("volatility_pkram.pkram.fake", fake, node)]
    assert "volatility_pkram.vol3.open" in names
    assert "volatility_pkram.vol3.layer" in names
    assert "volatility_pkram.pkram.format" in names
    assert "volatility3.framework" in names


def test_importing_the_library_leaves_volatility3_unloaded():
    names = [name for name, _path in library_modules()]
    code = ("import importlib, json, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'volatility3')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(PACKAGE.parent))
    assert json.loads(out.stdout) == []
