"""The house rules a redesign pass set (issue 13), kept by a test so that they stay true:
production code does not import the test helpers, and no module grows past 450 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import sound_captions

PACKAGE = Path(sound_captions.__file__).parent
MAX_LINES = 450


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "testing" not in p.relative_to(PACKAGE).parts)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_production_code_does_not_import_the_test_helpers():
    offenders = {str(p.relative_to(PACKAGE)) for p in _modules() if any(n.startswith("sound_captions.testing") for n in _imports(p))}
    assert not offenders, offenders
    assert len(_modules()) > 50  # the scan sees the package


def test_no_module_is_over_450_lines():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in _modules()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}
