"""The core stays pure: no module in ``fanfetch/core`` imports I/O or network libraries."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import fanfetch.core

CORE = Path(fanfetch.core.__file__).parent
FORBIDDEN = {"boto3", "botocore", "requests", "urllib3", "os", "socket", "subprocess", "pathlib", "shutil"}
MODULES = sorted(CORE.glob("*.py"))


def imported_roots(source: str) -> set[str]:
    """Top-level package names a module's source imports, at any depth (functions included)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                roots.add(first.value.split(".")[0])
    return roots


def test_the_scan_catches_every_way_of_importing() -> None:
    # GIVEN sources that import os in different spellings / THEN the scan sees each one
    for source in (
        "import os.path",
        "from os import path",
        "def f():\n    import socket",
        "__import__('boto3')",
    ):
        assert imported_roots(source) & FORBIDDEN, source
    assert not imported_roots("from .os import x\nimport json") & FORBIDDEN


def test_the_core_has_modules_to_check() -> None:
    assert {"manifest.py", "models.py", "validate.py"} <= {path.name for path in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_a_core_module_imports_only_pure_libraries(path: Path) -> None:
    # GIVEN a module of fanfetch/core
    # WHEN its imports are read (and it is imported, so a broken module fails here too)
    importlib.import_module(f"fanfetch.core.{path.stem}" if path.stem != "__init__" else "fanfetch.core")
    bad = imported_roots(path.read_text(encoding="utf-8")) & FORBIDDEN
    # THEN none of them is an I/O or network library
    assert not bad, f"fanfetch/core/{path.name} imports {sorted(bad)}; move that code to fanfetch/adapters"
