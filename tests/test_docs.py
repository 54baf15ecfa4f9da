"""docs/reliability.md's fault matrix stays in sync with the tests it cites."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
DOC = TESTS.parent / "docs" / "reliability.md"


def _citations() -> list[tuple[str, str]]:
    """Every `file.py::test_name` in the matrix; a bare `::test_name` refers to the previous file."""
    cited = []
    for line in DOC.read_text().splitlines():
        if not line.startswith("|"):
            continue
        current = None
        for ref in re.findall(r"`([\w/]+\.py)?(?:::(\w+))?`", line):
            path, name = ref
            current = path or current
            if current:
                cited.append((current, name))
    return cited


def test_every_test_the_fault_matrix_cites_exists():
    citations = _citations()
    assert len(citations) > 40
    missing = []
    for path, name in citations:
        source = TESTS / path
        if not source.is_file() or (name and not re.search(rf"^def {name}\(", source.read_text(), re.M)):
            missing.append(f"{path}::{name}")
    assert missing == []
