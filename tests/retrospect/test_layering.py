"""Data flows one way: the retrospectors and the layers below them never import the rooms above.

``hrrkit.retrospect`` (and ``nn``, ``ops``, ``kernels``) sit below ``models``, ``datasets``,
``train``/``eval``/``bench`` and the command line; an import from those would be an arrow running
back up (issue 23 moved the photo catalogue the retrospector trains on down into ``retrospect``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOWER = ("hrrkit/retrospect", "hrrkit/nn", "hrrkit/ops", "kernels")
UPPER = ("hrrkit.datasets", "hrrkit.models", "hrrkit.train", "hrrkit.eval", "hrrkit.bench", "hrrkit.cli",
         "hrrkit.app", "hrrkit.demo")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


@pytest.mark.parametrize("folder", LOWER)
def test_lower_layers_import_nothing_from_above(folder: str) -> None:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files
    upward = [f"{path.relative_to(ROOT)}: {name}" for path in files for name in _imports(path)
              if any(name == up or name.startswith(up + ".") for up in UPPER)]
    assert upward == []
