"""AWS CDK app for fanfetch: one stack composing one construct per concern, with Docker-free bundling."""

from __future__ import annotations

from stacks.fanfetch_stack import FanfetchStack
from stacks.settings import ContextError, StackSettings

__all__ = ["ContextError", "FanfetchStack", "StackSettings"]
