#!/usr/bin/env python3
"""CDK entry point: only deployment choices (stack name, account/region, tags); see stacks/ for resources."""

from __future__ import annotations

import os
import sys

# Node 20 is end-of-life for jsii, which prints a boxed warning on every synth; the CLI pins are tested on it.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

import aws_cdk as cdk  # noqa: E402  (jsii reads the variables above when it starts)

from stacks import FanfetchStack  # noqa: E402
from stacks.settings import ContextError  # noqa: E402


def main() -> None:
    app = cdk.App()
    stack_name = app.node.try_get_context("stackName") or "FanfetchStack"
    try:
        _stack(app, stack_name)
    except ContextError as exc:  # every bad -c value named at once, one per line; no traceback
        sys.stderr.write(f"{exc}\n")
        sys.exit(2)
    cdk.Tags.of(app).add("project", "fanfetch")
    app.synth()


def _stack(app: cdk.App, stack_name: str) -> FanfetchStack:
    return FanfetchStack(
        app,
        stack_name,
        description="fanfetch: fan out HTTP downloads into S3 (producer Lambda -> SQS -> worker Lambda)",
        # Whatever account/region the CLI resolved (none without credentials: the stack is then
        # account-agnostic). Nothing in the stack needs a context lookup, so synth works offline.
        env=cdk.Environment(
            account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
        ),
    )


if __name__ == "__main__":
    main()
