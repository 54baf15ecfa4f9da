"""The Lambda invoker against a loopback stand-in for the Lambda Invoke API whose function runs longer
than a client's read timeout: the producer must run exactly once (count the POSTs), never be re-invoked;
and its answers and errors against botocore's Stubber."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from fanfetch.adapters.lambda_invoke import LambdaFunctions, LambdaInvoker
from fanfetch.bootstrap.aws import aws_client, aws_config, lambda_invoke_client
from fanfetch.errors import FanfetchError, InputError
from fanfetch.ports import InvocationFailed, InvocationOutcomeUnknown

ANSWER = {"job_id": "j-1", "groups": 3, "messages": 3}


class SlowLambda:
    """``GET …/functions/<name>/configuration`` answers ``{"Timeout": timeout_s}``; ``POST …/invocations``
    counts the call and answers ``ANSWER`` after ``run_s`` seconds (the function's run time)."""

    def __init__(self, *, run_s: float, timeout_s: float):
        self.run_s, self.timeout_s = run_s, timeout_s
        self.posts = 0
        self.released = threading.Event()  # set at teardown: unanswered runs end at once
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                if self.path.endswith("/configuration"):
                    self._send(200, {"FunctionName": "producer", "Timeout": stub.timeout_s})
                else:
                    self._send(404, {"Type": "User", "message": "no route"})

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with stub._lock:
                    stub.posts += 1
                stub.released.wait(stub.run_s)  # the producer at work
                try:
                    self._send(200, ANSWER)
                except OSError:  # the client gave up waiting
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> SlowLambda:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_lambda(request, aws_env) -> Iterator[SlowLambda]:
    run_s, timeout_s = request.param
    with SlowLambda(run_s=run_s, timeout_s=timeout_s) as stub:
        yield stub


def _invoker(stub: SlowLambda, *, margin_s: float, built: list | None = None) -> LambdaInvoker:
    """Built as ``fanfetch submit`` builds it (ops_cli._lambda_invoker), with a test-sized margin; ``built``
    collects the invoke clients."""

    def invoke_client_for(read_timeout_s: float):
        client = lambda_invoke_client(read_timeout_s, endpoint_url=stub.url)
        (built if built is not None else []).append(client)
        return client

    return LambdaInvoker(aws_client("lambda", endpoint_url=stub.url), invoke_client_for=invoke_client_for,
                         margin_s=margin_s)


@pytest.mark.parametrize("slow_lambda", [(1.5, 3)], indirect=True)
def test_a_producer_running_longer_than_a_clients_read_timeout_is_invoked_exactly_once(slow_lambda):
    # GIVEN a producer that takes 1.5 s (timeout 3 s); a client with an ordinary retrying config and a
    # 0.5 s read timeout (botocore's 60 s default, scaled down) gives up and invokes it again and again
    general = aws_client("lambda", endpoint_url=slow_lambda.url, config=aws_config(read_timeout_s=0.5))
    with pytest.raises(Exception, match="Read timeout"):
        general.invoke(FunctionName="producer", InvocationType="RequestResponse", Payload=b"{}")
    assert slow_lambda.posts == 3  # every attempt ran the producer again
    slow_lambda.posts = 0
    # WHEN fanfetch's invoker runs it
    answer = _invoker(slow_lambda, margin_s=0.5).invoke("producer", {"manifest": "s3://b/k"})
    # THEN it waited for the answer: one POST, the producer's own answer
    assert answer == ANSWER
    assert slow_lambda.posts == 1


@pytest.mark.parametrize("slow_lambda", [(60, 1)], indirect=True)
def test_no_answer_within_the_functions_timeout_is_reported_never_retried(slow_lambda):
    # GIVEN a producer whose answer does not come within its timeout (1 s) plus the margin (0.5 s)
    invoker = _invoker(slow_lambda, margin_s=0.5)
    # WHEN invoked / THEN the outcome is reported unknown, after exactly one POST
    with pytest.raises(InvocationOutcomeUnknown) as unknown:
        invoker.invoke("producer", {"manifest": "s3://b/k"})
    assert slow_lambda.posts == 1
    assert unknown.value.waited_s == pytest.approx(1.5)
    assert "may still be running" in str(unknown.value) and "not invoked again" in str(unknown.value)


@pytest.mark.parametrize("slow_lambda", [(0, 900)], indirect=True)
def test_the_invoke_client_waits_past_the_functions_timeout_with_one_attempt_and_keepalive(slow_lambda):
    # GIVEN the producer's configured timeout (900 s) read from the function
    built: list = []
    invoker = _invoker(slow_lambda, margin_s=60, built=built)
    # WHEN it is invoked
    assert invoker.invoke("producer", {}) == ANSWER
    # THEN the invoke client never retries, waits longer than the function may run, and keeps the connection alive
    config = built[0].meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert config.read_timeout == 960 and config.tcp_keepalive is True


def _client(service: str):
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def _payload(value: object) -> StreamingBody:
    raw = json.dumps(value).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def test_the_invoker_returns_the_functions_json_answer():
    client = _client("lambda")
    with Stubber(client) as stub:
        stub.add_response("invoke", {"StatusCode": 200, "Payload": _payload({"job_id": "J", "groups": 3})},
                          {"FunctionName": "producer", "InvocationType": "RequestResponse",
                           "Payload": json.dumps({"manifest": "s3://b/k"}).encode()})
        assert LambdaInvoker(client).invoke("producer", {"manifest": "s3://b/k"}) == {"job_id": "J", "groups": 3}


def test_a_function_error_becomes_invocation_failed_with_the_remote_error_type():
    # GIVEN a producer that raised ManifestError (Lambda: 200, FunctionError=Unhandled, error document)
    client = _client("lambda")
    with Stubber(client) as stub:
        stub.add_response("invoke", {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": _payload(
            {"errorMessage": "s3://b/k:2: urls: bad", "errorType": "ManifestError", "stackTrace": []})}, None)
        # WHEN invoked / THEN the error carries type and message, and counts as the user's input
        with pytest.raises(InvocationFailed) as failure:
            LambdaInvoker(client).invoke("producer", {})
    assert (failure.value.error_type, failure.value.message) == ("ManifestError", "s3://b/k:2: urls: bad")
    assert failure.value.is_input_error


def test_a_missing_function_is_an_input_error():
    client = _client("lambda")
    with Stubber(client) as stub:
        stub.add_client_error("invoke", service_error_code="ResourceNotFoundException", http_status_code=404)
        with pytest.raises(InputError, match="not found"):
            LambdaInvoker(client).invoke("gone", {})


def test_a_functions_variables_are_read_from_its_configuration(aws_env):
    # GIVEN a deployed function with an environment (moto) and one without
    with mock_aws():
        role = boto3.client("iam").create_role(RoleName="w", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        client = boto3.client("lambda")
        for name, variables in (("worker", {"OUTPUT_PREFIX": "out", "CONCURRENCY": "8"}), ("bare", None)):
            client.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="h.handler",
                                   Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
                                   **({"Environment": {"Variables": variables}} if variables else {}))
        # WHEN their variables are read / THEN the worker's come back, the bare one has none
        functions = LambdaFunctions(client)
        assert functions.variables("worker") == {"OUTPUT_PREFIX": "out", "CONCURRENCY": "8"}
        assert functions.variables("bare") == {}
        # AND a function that does not exist is an input error naming botocore's error
        missing = r"^ResourceNotFoundException: An error occurred \(ResourceNotFoundException\)"
        with pytest.raises(InputError, match=missing):
            functions.variables("gone")


def test_a_configuration_that_cannot_be_read_is_an_error_in_botocores_words():
    # GIVEN Lambda refusing the read (no permission) / WHEN the variables are read
    client = _client("lambda")
    with Stubber(client) as stub:
        stub.add_client_error("get_function_configuration", service_error_code="AccessDeniedException",
                              http_status_code=403, service_message="not allowed")
        with pytest.raises(FanfetchError) as caught:
            LambdaFunctions(client).variables("worker")
    # THEN it is not an input error, and its one line is the error's class and botocore's text
    assert not isinstance(caught.value, InputError)
    assert str(caught.value) == ("ClientError: An error occurred (AccessDeniedException) when calling the "
                                 "GetFunctionConfiguration operation: not allowed")
