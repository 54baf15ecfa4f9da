"""AWS Lambda as an ``Invoker``: a synchronous (RequestResponse) invoke that runs the function at most once.
A function error becomes ``InvocationFailed`` carrying the remote ``errorType``; no answer after the request
went out becomes ``InvocationOutcomeUnknown`` (it may still be running: never invoked again)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectionClosedError, ReadTimeoutError

from fanfetch.errors import FanfetchError, InputError
from fanfetch.ports import InvocationFailed, InvocationOutcomeUnknown

__all__ = ["LambdaInvoker", "LambdaFunctions", "INVOKE_MARGIN_S", "FALLBACK_TIMEOUT_S"]

_MISSING_CODES = frozenset({"ResourceNotFoundException"})
INVOKE_MARGIN_S = 60.0  # the answer of a function that ran to its timeout still arrives within this
FALLBACK_TIMEOUT_S = 900  # Lambda's longest timeout: used when the function's own cannot be read


class LambdaInvoker:
    """Implements ``fanfetch.ports.Invoker`` with boto3 Lambda clients.

    ``invoke_client_for(read_timeout_s)`` builds the client of one invoke (``bootstrap.aws.lambda_invoke_client``:
    one attempt, keep-alive); the read timeout is the function's configured timeout (read with ``client``'s
    ``GetFunctionConfiguration``) plus ``margin_s``. Without it, ``client`` invokes as it is configured.
    """

    def __init__(self, client: Any, *, invoke_client_for: Callable[[float], Any] | None = None,
                 margin_s: float = INVOKE_MARGIN_S):
        self._client = client
        self._invoke_client_for = invoke_client_for
        self._margin_s = margin_s

    def function_timeout_s(self, function_name: str) -> float:
        """The function's configured timeout; Lambda's maximum when it cannot be read (e.g. no permission)."""
        try:
            timeout = self._client.get_function_configuration(FunctionName=function_name).get("Timeout")
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING_CODES:
                raise InputError(f"function {function_name!r} not found") from None
            return FALLBACK_TIMEOUT_S
        except BotoCoreError:
            return FALLBACK_TIMEOUT_S
        return float(timeout) if isinstance(timeout, int | float) and timeout > 0 else FALLBACK_TIMEOUT_S

    def invoke(self, function_name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        client, wait_s = self._client, None
        if self._invoke_client_for is not None:
            wait_s = self.function_timeout_s(function_name) + self._margin_s
            client = self._invoke_client_for(wait_s)
        try:
            response = client.invoke(FunctionName=function_name, InvocationType="RequestResponse",
                                     Payload=json.dumps(payload).encode())
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "ClientError"))
            if code in _MISSING_CODES:
                raise InputError(f"function {function_name!r} not found") from None
            raise InvocationFailed(function_name, code, "the invoke call failed") from exc
        except (ReadTimeoutError, ConnectionClosedError) as exc:  # the request went out: it may be running
            raise InvocationOutcomeUnknown(function_name, f"{type(exc).__name__}", wait_s) from exc
        except BotoCoreError as exc:  # not connected: it never ran
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


class LambdaFunctions:
    """Reads a deployed function's configuration (``GetFunctionConfiguration``), e.g. a variable the stack's outputs
    do not carry."""

    def __init__(self, client: Any):
        self._client = client

    def variables(self, function_name: str) -> dict[str, str]:
        """The function's environment variables; InputError when it does not exist, FanfetchError when it cannot be
        read (each message: the error's class and botocore's text)."""
        try:
            config = self._client.get_function_configuration(FunctionName=function_name)
        except ClientError as exc:
            kind = InputError if str(exc.response.get("Error", {}).get("Code")) in _MISSING_CODES else FanfetchError
            raise kind(f"{type(exc).__name__}: {exc}") from exc
        except BotoCoreError as exc:
            raise FanfetchError(f"{type(exc).__name__}: {exc}") from exc
        return {str(k): str(v) for k, v in config.get("Environment", {}).get("Variables", {}).items()}
