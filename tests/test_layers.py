"""The layering contract (pyproject ``[tool.importlinter]``) holds, and breaks when an arrow points up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}  # the copy's fanfetch, not the installed one
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_package_keeps_its_layers():
    # GIVEN the package as it is WHEN import-linter checks pyproject's contracts THEN every one is kept
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(("module", "line", "arrow"), [
    # an adapter importing a use case, as sqs_redrive once did from ops
    ("fanfetch/adapters/sqs_redrive.py", "from fanfetch.app.ops import read_progress",
     "fanfetch.adapters.sqs_redrive -> fanfetch.app.ops"),
    # an entry point building an adapter itself instead of asking bootstrap, as the long worker once did
    ("fanfetch/cli/worker.py", "from fanfetch.adapters.sqs import SqsQueue",
     "fanfetch.cli.worker -> fanfetch.adapters.sqs"),
    # a Lambda handler doing the same (lambdas/ is a root package of the contracts too)
    ("lambdas/worker/handler.py", "from fanfetch.adapters.sqs import SqsQueue",
     "lambdas.worker.handler -> fanfetch.adapters.sqs"),
])
def test_an_import_pointing_the_wrong_way_breaks_the_contract(tmp_path: Path, module: str, line: str, arrow: str):
    # GIVEN a copy of the package with that one import added
    for package in ("fanfetch", "lambdas"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    source = tmp_path / module
    source.write_text(source.read_text() + f"\n{line}  # noqa: E402\n")
    # WHEN import-linter checks it
    done = _lint(tmp_path)
    # THEN it fails, naming the import that points the wrong way
    assert done.returncode == 1, done.stdout[-3000:]
    assert arrow in done.stdout
