"""CDK context as a newcomer types it: misspelt keys refused naming the nearest known one, every problem named at
once (a bad type never hides the rest), no traceback from ``app.py``; a fleet-wide per-host rate shared out."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from aws_cdk.assertions import Match, Template

from stacks.settings import ContextError, StackSettings, unknown_context_keys
from tests.conftest import REPO
from tests.infra.conftest import build_stack


def test_a_misspelt_key_is_refused_naming_the_nearest_known_key() -> None:
    problems = unknown_context_keys(["workerMemroyMb", "perHostRPS", "@aws-cdk/core:checkSecretUsage",
                                     "cli-telemetry", "stackName", "batchSize"])
    assert problems == ["workerMemroyMb: unknown context key; did you mean 'workerMemoryMb'?",
                        "perHostRPS: unknown context key; did you mean 'perHostRps'?"]


def test_every_problem_is_named_at_once_even_after_a_bad_type() -> None:
    context = {"batchSize": [1, 2], "workerTimeoutS": "5", "perHostRps": "fast", "workerMemroyMb": "2048"}
    with pytest.raises(ContextError) as caught:
        StackSettings.from_context(context.get, all_keys=context)
    problems = caught.value.problems
    assert len(problems) == 4, problems
    assert any(p.startswith("workerMemroyMb: unknown") for p in problems)
    assert any(p.startswith("batchSize=[1, 2]") for p in problems)
    assert any(p.startswith("perHostRps='fast'") for p in problems)
    assert any(p.startswith("workerTimeoutS=5: must be between 30 and 900") for p in problems)


def test_the_fleet_wide_per_host_rate_is_shared_among_the_workers_maximum_concurrency() -> None:
    settings = StackSettings.from_context({"fleetPerHostRps": "10", "workerMaxConcurrency": "40"}.get)
    assert settings.worker_per_host_rps == 0.25
    both = StackSettings.from_context({"fleetPerHostRps": "10", "workerMaxConcurrency": "40",
                                       "perHostRps": "0.1"}.get)
    assert both.worker_per_host_rps == 0.1  # the stricter one
    template = Template.from_stack(build_stack({"fleetPerHostRps": "10", "workerMaxConcurrency": "40"}))
    template.has_resource_properties("AWS::Lambda::Function", {
        "Environment": {"Variables": Match.object_like({"FANFETCH_PER_HOST_RPS": "0.25"})}})


def test_app_py_prints_every_context_problem_without_a_traceback(tmp_path) -> None:
    # GIVEN the app as the CDK CLI runs it, with a misspelt key, a bad type and a value out of range
    context = {"workerMemroyMb": 2048, "batchSize": "ten", "workerTimeoutS": 5}
    env = dict(os.environ, CDK_CONTEXT_JSON=json.dumps(context), CDK_OUTDIR=str(tmp_path / "out"))
    done = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    # THEN exit 2, each problem on its own line, and no traceback
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "  - workerMemroyMb: unknown context key; did you mean 'workerMemoryMb'?" in done.stderr
    assert "  - batchSize='ten': expected an integer" in done.stderr
    assert "  - workerTimeoutS=5: must be between 30 and 900" in done.stderr
