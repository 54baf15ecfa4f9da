"""Docker-free bundling: the asset layout and pip call (fast, with a stand-in pip), one real bundle whose
handlers import from the asset alone (slow), and a real ``cdk synth`` through the pinned CLI (slow)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

from stacks.bundling import RUNTIME_REQUIREMENTS, BundlingError, PipLocalBundling
from tests.infra.conftest import REPO_ROOT, build_stack, logical_id

# What the Lambda Python runtime provides beside the standard library (and so is never bundled).
_RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "dateutil", "six", "urllib3")  # what the runtime ships
_MAX_ZIPPED_BYTES = 15 * 2**20  # today ~1.8 MiB; Lambda's own limit is 50 MiB zipped
_MAX_UNZIPPED_BYTES = 60 * 2**20  # today ~7 MiB; Lambda's limit is 250 MiB


def _fake_pip(tmp_path: Path, *, exit_code: int = 0) -> Path:
    """A stand-in for ``python -m pip`` that records its argv and installs one fake wheel (or fails)."""
    script = tmp_path / "fake-python"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import json, os, sys
            args = sys.argv[1:]
            open({str(tmp_path / "argv.json")!r}, "w").write(json.dumps(args))
            if {exit_code}:
                sys.stderr.write("ERROR: Could not find a version that satisfies the requirement\\n")
                sys.exit({exit_code})
            target = args[args.index("--target") + 1]
            os.makedirs(os.path.join(target, "somedep"))
            open(os.path.join(target, "somedep", "__init__.py"), "w").write("")
            os.makedirs(os.path.join(target, "bin"))
            open(os.path.join(target, "bin", "normalizer"), "w").write("#!/this/machine/python")
            """
        )
    )
    script.chmod(0o755)
    return script


def _source_tree(tmp_path: Path) -> tuple[Path, Path]:
    package = tmp_path / "src" / "fanfetch"
    (package / "core" / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "core" / "models.py").write_text("X = 1\n")
    (package / "core" / "__pycache__" / "models.cpython-311.pyc").write_bytes(b"stale")
    handler_dir = tmp_path / "src" / "lambdas" / "worker"
    handler_dir.mkdir(parents=True)
    (handler_dir / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    return package, handler_dir


def _bundler(package: Path, handler_dir: Path, python: Path) -> PipLocalBundling:
    return PipLocalBundling(
        handler_dir=handler_dir, package_dir=package, python_version="3.14", python_executable=str(python)
    )


def test_asset_holds_wheels_package_and_handler_at_its_root(tmp_path: Path) -> None:
    # GIVEN a source tree and a pip stand-in
    package, handler_dir = _source_tree(tmp_path)
    out = tmp_path / "asset"
    out.mkdir()
    # WHEN the asset is bundled
    assert _bundler(package, handler_dir, _fake_pip(tmp_path)).try_bundle(str(out), None) is True  # type: ignore[arg-type]
    # THEN the handler, the package (without bytecode) and the dependencies sit at the asset root
    assert (out / "handler.py").is_file()
    assert (out / "fanfetch" / "core" / "models.py").read_text() == "X = 1\n"
    assert not list(out.rglob("__pycache__"))
    assert (out / "somedep" / "__init__.py").is_file()
    # AND pip's console scripts (which name this machine's interpreter) are gone
    assert not (out / "bin").exists()


def test_pip_targets_linux_wheels_for_the_lambda_runtime(tmp_path: Path) -> None:
    package, handler_dir = _source_tree(tmp_path)
    out = tmp_path / "asset"
    out.mkdir()
    _bundler(package, handler_dir, _fake_pip(tmp_path)).try_bundle(str(out), None)  # type: ignore[arg-type]
    argv = json.loads((tmp_path / "argv.json").read_text())
    command = " ".join(argv)
    assert argv[:3] == ["-m", "pip", "install"]
    for expected in (
        "--platform manylinux_2_28_x86_64",
        "--only-binary=:all:",
        "--implementation cp",
        "--python-version 3.14",
        f"--target {out}",
        "--no-compile",
    ):
        assert expected in command
    assert argv[-len(RUNTIME_REQUIREMENTS) :] == list(RUNTIME_REQUIREMENTS)
    assert not [a for a in argv if a.startswith(("boto3", "botocore"))]


def test_pip_failure_is_an_error_with_pip_output_not_a_docker_fallback(tmp_path: Path) -> None:
    package, handler_dir = _source_tree(tmp_path)
    bundler = _bundler(package, handler_dir, _fake_pip(tmp_path, exit_code=1))
    with pytest.raises(
        BundlingError, match=r"(?s)pip install for the worker asset failed \(exit 1\).*satisfies"
    ):
        bundler.try_bundle(str(tmp_path), None)  # type: ignore[arg-type]


def test_missing_handler_is_an_error(tmp_path: Path) -> None:
    package, handler_dir = _source_tree(tmp_path)
    (handler_dir / "handler.py").unlink()
    with pytest.raises(BundlingError, match="Lambda handler not found"):
        _bundler(package, handler_dir, _fake_pip(tmp_path)).try_bundle(str(tmp_path), None)  # type: ignore[arg-type]


def test_asset_hash_follows_sources_but_not_bytecode(tmp_path: Path) -> None:
    # GIVEN a bundler and its fingerprint
    package, handler_dir = _source_tree(tmp_path)
    bundler = _bundler(package, handler_dir, Path(sys.executable))
    before = bundler.fingerprint()
    # WHEN only bytecode changes THEN the asset is unchanged
    (package / "core" / "__pycache__" / "models.cpython-311.pyc").write_bytes(b"other")
    assert bundler.fingerprint() == before
    # WHEN the shared package changes THEN the asset changes (a handler-only hash would deploy stale code)
    (package / "core" / "models.py").write_text("X = 2\n")
    assert bundler.fingerprint() != before


def test_bundled_requirements_match_pyproject() -> None:
    # GIVEN pyproject's runtime dependencies and the `lambda` extra
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["lambda"]]
    # THEN every bundled requirement is declared with the same lower bound
    for requirement in RUNTIME_REQUIREMENTS:
        assert requirement in declared, f"{requirement} differs from pyproject.toml {declared}"


def _runtime_provided_dir(tmp_path: Path) -> Path:
    """Stand-in for the Lambda runtime's own site-packages: boto3 and what it needs, nothing else."""
    runtime = tmp_path / "lambda-runtime"
    runtime.mkdir()
    for name in _RUNTIME_PROVIDED:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (runtime / source.name).symlink_to(source)
    return runtime


_IMPORT_CHECK = """
import sys
asset, runtime = sys.argv[1], sys.argv[2]
sys.path[:0] = [asset]      # /var/task first, as on Lambda
sys.path.append(runtime)    # then the runtime's boto3
import handler
assert callable(handler.handler), "handler.handler is not callable"
for name in ("fanfetch", "certifi", "aws_lambda_powertools"):
    module = sys.modules.get(name)
    if module is not None:
        assert module.__file__.startswith(asset), (name, module.__file__)
print("ok")
"""


@pytest.mark.slow
def test_real_bundle_is_self_contained_and_small(tmp_path: Path) -> None:
    # GIVEN the real stack, bundled for real with pip into a fresh cloud assembly
    # (no skip: a missing handler or a pip failure fails this test)
    outdir = tmp_path / "cdk.out"
    stack = build_stack(bundle=True, outdir=str(outdir))
    stack.node.root.synth()  # type: ignore[attr-defined]
    template = json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
    runtime = _runtime_provided_dir(tmp_path)
    for function in (stack.producer.function, stack.worker.function):
        s3_key = template["Resources"][logical_id(stack, function)]["Properties"]["Code"]["S3Key"]
        asset = outdir / f"asset.{s3_key.removesuffix('.zip')}"
        # THEN the runtime's boto3 is not bundled, nor bytecode from this machine's Python
        assert not (asset / "boto3").exists() and not (asset / "botocore").exists()
        assert not list(asset.rglob("*.pyc"))
        # AND the handler imports with only the asset, the standard library and the runtime's boto3
        result = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _IMPORT_CHECK, str(asset), str(runtime)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env={"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1", "LANG": "C.UTF-8"},
        )  # fmt: skip
        assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
        # AND libcurl comes as pycurl's wheel for the runtime's CPython on manylinux_2_28 (AL2023 runs it);
        # this machine's Python cannot load a cp314 extension, so the wheel's tag is what is checked here
        tags = [line for wheel in asset.glob("pycurl-*.dist-info/WHEEL") for line in wheel.read_text().splitlines()
                if line.startswith("Tag: ")]
        assert tags and all(t.endswith("-manylinux_2_28_x86_64") and "cp314" in t for t in tags), tags
        assert list(asset.glob("pycurl*.so")) or list(asset.glob("pycurl/*.so")), "pycurl's extension missing"
        # AND the zipped asset stays far below Lambda's limits
        unzipped = sum(p.stat().st_size for p in asset.rglob("*") if p.is_file())
        archive = shutil.make_archive(str(tmp_path / asset.name), "zip", asset)
        assert Path(archive).stat().st_size < _MAX_ZIPPED_BYTES
        assert unzipped < _MAX_UNZIPPED_BYTES
        with zipfile.ZipFile(archive) as zipped:
            assert "handler.py" in zipped.namelist()


@pytest.mark.slow
@pytest.mark.skipif(not (REPO_ROOT / "node_modules" / ".bin" / "cdk").exists(), reason="run `npm ci` first")
def test_pinned_cdk_cli_synthesizes_the_app(tmp_path: Path) -> None:
    # GIVEN the pinned CLI and this interpreter's directory first on PATH (cdk.json runs `python3 app.py`)
    # AND no way for the CLI to find AWS credentials: it looks up a default account before synthesizing
    # (STS with any credentials it finds, else the instance metadata service), and this test stays offline.
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        CDK_DISABLE_CLI_TELEMETRY="true",
    )
    # WHEN the app is synthesized with real bundling, as `cdk deploy` would
    result = subprocess.run(
        ["npx", "cdk", "synth", "--no-notices", "-q", "-o", str(tmp_path / "cdk.out")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    # THEN it succeeds and writes the stack's template
    assert result.returncode == 0, result.stderr[-3000:]
    template = json.loads((tmp_path / "cdk.out" / "FanfetchStack.template.json").read_text())
    assert len([r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]) == 2
