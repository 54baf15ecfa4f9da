"""AWS Lambda as an ``Invoker``: a synchronous (RequestResponse) invoke whose function error becomes
``InvocationFailed`` carrying the remote ``errorType``, so callers classify it by type."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fanfetch.errors import FanfetchError, InputError
from fanfetch.ops import InvocationFailed

__all__ = ["LambdaInvoker"]

_MISSING_CODES = frozenset({"ResourceNotFoundException"})


class LambdaInvoker:
    """Implements ``fanfetch.ops.Invoker`` with a boto3 Lambda client."""

    def __init__(self, client: Any):
        self._client = client

    def invoke(self, function_name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        try:
            response = self._client.invoke(FunctionName=function_name, InvocationType="RequestResponse",
                                           Payload=json.dumps(payload).encode())
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "ClientError"))
            if code in _MISSING_CODES:
                raise InputError(f"function {function_name!r} not found") from None
            raise InvocationFailed(function_name, code, "the invoke call failed") from exc
        except BotoCoreError as exc:
            raise FanfetchError(f"cannot invoke {function_name}: {type(exc).__name__}: {exc}") from exc
        raw = response["Payload"].read()
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        if response.get("FunctionError"):
            detail = answer if isinstance(answer, dict) else {}
            raise InvocationFailed(function_name, str(detail.get("errorType") or response["FunctionError"]),
                                   str(detail.get("errorMessage") or raw[:500].decode("utf-8", "replace")))
        if not isinstance(answer, dict):
            raise FanfetchError(f"{function_name}: expected a JSON object, got {raw[:200]!r}")
        return answer
