"""`fanfetch run` into a local folder must not pay for boto3's import (~60 ms of every start)."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_imports_without_boto3():
    # WHEN the command's module is imported in a fresh interpreter
    probe = ("import sys, fanfetch.cli.main; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    # THEN no AWS SDK module was loaded: S3/SQS/DynamoDB adapters are imported where they are built
    assert out.strip() == "[]"
