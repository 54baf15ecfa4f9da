"""Infra test helpers: synthesize ``FanfetchStack`` with cdk.json's feature flags and chosen context.

Fast tests skip bundling (``aws:cdk:bundling-stacks: []``); only tests marked slow run pip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# jsii starts node on the first aws_cdk import; Node 20 otherwise prints an end-of-life banner per process.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from stacks import FanfetchStack  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
NO_BUNDLING = {"aws:cdk:bundling-stacks": []}


def load_cdk_json_context() -> dict[str, Any]:
    """The feature flags the CLI synthesizes with, so tests see the template that is deployed."""
    return dict(json.loads((REPO_ROOT / "cdk.json").read_text())["context"])


def build_stack(
    context: dict[str, Any] | None = None, *, bundle: bool = False, outdir: str | None = None
) -> FanfetchStack:
    """A FanfetchStack in a fresh App whose context is cdk.json's plus ``context``."""
    full = {**load_cdk_json_context(), **(context or {})}
    if not bundle:
        full.update(NO_BUNDLING)
    app = cdk.App(context=full, outdir=outdir)
    return FanfetchStack(app, "FanfetchTest")


def synth_template(context: dict[str, Any] | None = None) -> Template:
    return Template.from_stack(build_stack(context))


def logical_id(stack: cdk.Stack, construct: Any) -> str:
    """The logical ID CDK gave ``construct`` (its L1 child), looked up rather than hard-coded."""
    cfn = construct if isinstance(construct, cdk.CfnElement) else construct.node.default_child
    return str(stack.resolve(stack.get_logical_id(cfn)))


@pytest.fixture(scope="module")
def default_stack() -> FanfetchStack:
    return build_stack()


@pytest.fixture(scope="module")
def template(default_stack: FanfetchStack) -> Template:
    return Template.from_stack(default_stack)


@pytest.fixture
def synth() -> Callable[..., Template]:
    return synth_template
