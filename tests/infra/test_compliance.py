"""The synthesized stack passes cdk-nag's AwsSolutions pack and cfn-lint, with every exception justified."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Annotations, Match
from cdk_nag import AwsSolutionsChecks
from cfnlint.api import ManualArgs, lint

from tests.infra.conftest import build_stack

# Context variants that add resources (schedule rule, e-mail subscription, reserved concurrency).
_VARIANTS: list[dict[str, Any]] = [
    {},
    {
        "scheduleExpression": "cron(0 3 * * ? *)",
        "scheduleManifest": "manifests/nightly.csv",
        "alarmEmail": "ops@example.com",
        "workerReservedConcurrency": "60",
    },
]
# W3005: CDK adds DependsOn on a function's role although Role: Fn::GetAtt already orders them; harmless.
_CFN_LINT_IGNORED = ["W3005"]


def _nag_findings(stack: cdk.Stack) -> list[str]:
    cdk.Aspects.of(stack).add(AwsSolutionsChecks(verbose=True))
    annotations = Annotations.from_stack(stack)
    found = [
        *annotations.find_error("*", Match.string_like_regexp("AwsSolutions-.*")),
        *annotations.find_warning("*", Match.string_like_regexp("AwsSolutions-.*")),
    ]
    return [f"{m.id}: {m.entry.data}" for m in found]


def test_nag_harness_reports_a_known_violation() -> None:
    # GIVEN a stack with an unencrypted queue without a DLQ (so a silent harness cannot pass the real test)
    app = cdk.App()
    stack = cdk.Stack(app, "Canary")
    sqs.Queue(stack, "Plain", encryption=sqs.QueueEncryption.UNENCRYPTED)
    # THEN the same check reports it
    findings = "\n".join(_nag_findings(stack))
    assert "AwsSolutions-SQS2" in findings and "AwsSolutions-SQS4" in findings


@pytest.mark.parametrize("context", _VARIANTS, ids=["defaults", "schedule-email-reserved"])
def test_aws_solutions_pack_has_no_unsuppressed_findings(context: dict[str, Any]) -> None:
    assert _nag_findings(build_stack(context)) == []


def test_every_suppression_carries_a_reason() -> None:
    template = cdk.assertions.Template.from_stack(build_stack(_VARIANTS[1]))
    suppressions = [
        rule
        for resource in template.to_json()["Resources"].values()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]
    assert suppressions, "expected the documented suppressions (access-log bucket, object ARNs)"
    for rule in suppressions:
        assert len(rule["reason"]) >= 40, rule
        # IAM5 is only ever waived for named resources, never for the whole rule.
        if rule["id"] == "AwsSolutions-IAM5":
            # (object ARNs of a bucket: every key, or the producer's pre-flight marker under _jobs/)
            objects = (".Arn>/*", ".Arn>/_jobs/*")
            assert rule["applies_to"] and all(a.endswith(objects) for a in rule["applies_to"]), rule


@pytest.mark.parametrize("context", _VARIANTS, ids=["defaults", "schedule-email-reserved"])
def test_cfn_lint_is_clean(context: dict[str, Any]) -> None:
    template = cdk.assertions.Template.from_stack(build_stack(context)).to_json()
    matches = lint(
        json.dumps(template),
        config=ManualArgs(regions=["us-east-1", "eu-central-1"], ignore_checks=_CFN_LINT_IGNORED),
    )
    assert [str(m) for m in matches] == []


def test_cfn_lint_harness_reports_a_known_error() -> None:
    # GIVEN a template with a misspelled property (so a silent linter cannot pass the real test)
    broken = {"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeOut": 30}}}}
    # THEN the same call reports it
    matches = lint(
        json.dumps(broken), config=ManualArgs(regions=["us-east-1"], ignore_checks=_CFN_LINT_IGNORED)
    )
    assert any("VisibilityTimeOut" in str(m) for m in matches)
