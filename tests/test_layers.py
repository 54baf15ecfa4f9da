"""The layering contract (pyproject ``[tool.importlinter]``) holds, and breaks when an arrow points up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_an_adapter_importing_a_use_case_breaks_the_contract(tmp_path: Path):
    # GIVEN a copy of the package where an adapter imports a use case (as sqs_redrive once did from ops)
    shutil.copytree(ROOT / "fanfetch", tmp_path / "fanfetch", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    redrive = tmp_path / "fanfetch" / "adapters" / "sqs_redrive.py"
    redrive.write_text(redrive.read_text() + "\nfrom fanfetch.app.ops import read_progress  # noqa: E402\n")
    # WHEN import-linter checks it
    done = _lint(tmp_path)
    # THEN it fails, naming the import that points the wrong way
    assert done.returncode == 1, done.stdout[-3000:]
    assert "fanfetch.adapters.sqs_redrive -> fanfetch.app.ops" in done.stdout
