"""Docker-free Lambda asset bundling: pip installs Linux wheels for the Lambda runtime into the asset, then
copies the ``fanfetch`` package and ``lambdas/<name>/`` (the handler) beside them. No Docker engine needed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_

__all__ = [
    "LAMBDA_PLATFORM",
    "LAMBDA_RUNTIME",
    "REPO_ROOT",
    "RUNTIME_REQUIREMENTS",
    "BundlingError",
    "PipLocalBundling",
    "build_lambda_code",
]

# PYTHON_3_14: the newest Lambda Python runtime in aws-cdk-lib 2.275, and every runtime dependency
# (pycurl is the only one with compiled wheels) resolves to a cp314 manylinux wheel.
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_14
# pycurl's wheels (libcurl 8 inside) are manylinux_2_28; the functions are x86_64 and the Python 3.12+
# runtimes run on Amazon Linux 2023 (glibc 2.34), which runs them. pip also takes older manylinux tags.
LAMBDA_PLATFORM = "manylinux_2_28_x86_64"
# What the handlers import at run time. boto3/botocore are NOT bundled: the Lambda runtime provides them.
# Keep the lower bounds in step with pyproject.toml (a test checks they match).
RUNTIME_REQUIREMENTS: tuple[str, ...] = ("pycurl>=7.49", "certifi>=2024.2.2", "aws-lambda-powertools>=3.0")
REPO_ROOT = Path(__file__).resolve().parents[1]  # resolved from this module, never from the cwd

_SKIP_NAMES = ("__pycache__", "*.pyc", "*.pyo")
_PIP_TIMEOUT_S = 600


class BundlingError(RuntimeError):
    """Local bundling failed (missing handler, pip error); the message says what to fix."""


@jsii.implements(ILocalBundling)
class PipLocalBundling:
    """``ILocalBundling`` that builds one function's asset with pip; CDK calls ``try_bundle`` at synth."""

    def __init__(
        self,
        *,
        handler_dir: Path,
        package_dir: Path,
        python_version: str,
        requirements: Sequence[str] = RUNTIME_REQUIREMENTS,
        platform: str = LAMBDA_PLATFORM,
        python_executable: str = sys.executable,
    ) -> None:
        self._handler_dir = handler_dir
        self._package_dir = package_dir
        self._python_version = python_version
        self._requirements = tuple(requirements)
        self._platform = platform
        self._python_executable = python_executable

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        """Fill ``output_dir`` with wheels + package + handler; raise on failure; no Docker fallback."""
        out = Path(output_dir)
        handler = self._handler_dir / "handler.py"
        if not handler.is_file():
            raise BundlingError(f"Lambda handler not found: {handler} (the asset needs handler.handler)")
        self._install_requirements(out)
        shutil.copytree(
            self._package_dir, out / self._package_dir.name, ignore=shutil.ignore_patterns(*_SKIP_NAMES)
        )
        _copy_dir_contents(self._handler_dir, out)
        # pip's console scripts carry this machine's interpreter path and are never run on Lambda.
        shutil.rmtree(out / "bin", ignore_errors=True)
        return True

    def fingerprint(self) -> str:
        """Hash of everything that shapes the asset, so an unchanged source reuses the staged bundle."""
        digest = hashlib.sha256()
        for part in (self._python_version, self._platform, *self._requirements):
            digest.update(part.encode() + b"\0")
        digest.update(Path(__file__).read_bytes())  # a change to how we bundle is a change to the asset
        for root in (self._package_dir, self._handler_dir):
            for path in sorted(_iter_files(root)):
                digest.update(str(path.relative_to(root.parent)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
        return digest.hexdigest()

    def _install_requirements(self, out: Path) -> None:
        command = [
            self._python_executable, "-m", "pip", "install",
            "--quiet", "--disable-pip-version-check", "--no-input",
            # No .pyc: this machine's Python would compile them, not the runtime's, so Lambda ignores them.
            "--no-compile",
            "--platform", self._platform,
            "--only-binary=:all:",
            "--implementation", "cp",
            "--python-version", self._python_version,
            "--target", str(out),
            *self._requirements,
        ]  # fmt: skip
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, check=False, timeout=_PIP_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BundlingError(f"could not run pip for {self._handler_dir.name}: {exc}") from exc
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-20:])
            raise BundlingError(
                f"pip install for the {self._handler_dir.name} asset failed "
                f"(exit {result.returncode}): {' '.join(command)}\n{tail}"
            )


def build_lambda_code(
    name: str, *, runtime: lambda_.Runtime = LAMBDA_RUNTIME, repo_root: Path = REPO_ROOT
) -> lambda_.AssetCode:
    """Asset code for ``lambdas/<name>/handler.py`` plus ``fanfetch/`` and its runtime dependencies."""
    bundler = PipLocalBundling(
        handler_dir=repo_root / "lambdas" / name,
        package_dir=repo_root / "fanfetch",
        python_version=_python_version_of(runtime),
    )
    return lambda_.Code.from_asset(
        str(repo_root / "lambdas" / name),
        asset_hash=bundler.fingerprint(),
        asset_hash_type=AssetHashType.CUSTOM,
        # image is required by the type but never pulled: try_bundle always succeeds or raises.
        bundling=BundlingOptions(image=runtime.bundling_image, local=bundler),
    )


def _python_version_of(runtime: lambda_.Runtime) -> str:
    prefix = "python"
    if not runtime.name.startswith(prefix):
        raise BundlingError(f"not a Python runtime: {runtime.name}")
    return runtime.name[len(prefix) :]


def _iter_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [
        path
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    ]


def _copy_dir_contents(source: Path, target: Path) -> None:
    for item in sorted(source.iterdir()):
        if item.name == "__pycache__" or item.suffix in (".pyc", ".pyo"):
            continue
        if item.is_dir():
            shutil.copytree(item, target / item.name, ignore=shutil.ignore_patterns(*_SKIP_NAMES))
        else:
            shutil.copy2(item, target / item.name)
