"""Runs the installed ``fanfetch`` console script as a user does: a subprocess, real exit code and output."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

FANFETCH = str(Path(sys.executable).parent / "fanfetch")  # .venv/bin/fanfetch, installed by pip -e
_NO_AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
           "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "FANFETCH_ALLOW_HOSTS")


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def run_cli(*args: str, env: dict[str, str] | None = None, keep_aws: bool = True, cwd: str | None = None,
            timeout: float = 120, columns: int = 200) -> Ran:
    """``fanfetch ARGS`` in a subprocess. ``keep_aws=False`` drops every AWS setting of the test process
    (credentials, region, endpoint), as on a machine with no AWS configuration; instance metadata is
    never asked (``AWS_EC2_METADATA_DISABLED``), and no config file is read."""
    base = dict(os.environ)
    if not keep_aws:
        for name in _NO_AWS:
            base.pop(name, None)
        base.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    base.update(AWS_EC2_METADATA_DISABLED="true", COLUMNS=str(columns), PYTHONUNBUFFERED="1")
    base.pop("FANFETCH_DEBUG", None)
    base.update(env or {})
    done = subprocess.run([FANFETCH, *args], capture_output=True, text=True, env=base, cwd=cwd, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return Ran(done.returncode, done.stdout, done.stderr)


def assert_one_line_error(ran: Ran, *needles: str, code: int = 2) -> str:
    """Exit ``code``, exactly one line on stderr, no traceback, containing every needle."""
    assert ran.code == code, (ran.code, ran.out, ran.err)
    assert "Traceback" not in ran.err and "Traceback" not in ran.out, ran.err
    assert len(ran.err_lines) == 1, ran.err
    line = ran.err_lines[0]
    for needle in needles:
        assert needle in line, (needle, line)
    return line
