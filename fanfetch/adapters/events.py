"""EventBridge as ``JobEvents``: one "Job Finished" event (source ``fanfetch``) whose detail is the job summary.

PutEvents can succeed as a call yet reject the entry (``FailedEntryCount``): a throttled or failed entry is
sent again with backoff, then raised as retryable. The detail carries ``idempotency_key`` (``<job>/finished``):
a job is announced at least once, and consumers dedupe on it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fanfetch.adapters.aws_errors import AWS_PERMANENT_CODES, classify_by_code
from fanfetch.adapters.backoff import Backoff
from fanfetch.adapters.clock import SystemClock
from fanfetch.core.ledger import JobRecord
from fanfetch.errors import PermanentPublishError, PublishError, RetryablePublishError
from fanfetch.ports import Clock

__all__ = ["EventBridgeEvents", "EVENT_SOURCE", "JOB_FINISHED", "DEFAULT_BUS"]

EVENT_SOURCE = "fanfetch"
JOB_FINISHED = "Job Finished"
DEFAULT_BUS = "default"

_PERMANENT_CODES = AWS_PERMANENT_CODES
# Per-entry error codes that will not clear on a retry (the rest — throttling, internal — may).
# (documented in PutEventsResultEntry: InternalFailure and ThrottlingException are the retryable ones).
_PERMANENT_ENTRY_CODES = frozenset(
    {
        "AccessDeniedException",
        "InvalidAccountIdException",
        "InvalidArgument",
        "MalformedDetail",
        "RedactionFailure",
        "NotAuthorizedForSourceException",
        "NotAuthorizedForDetailTypeException",
    }
)


class EventBridgeEvents:
    """Implements ``fanfetch.ports.JobEvents`` on an event bus (``EVENT_BUS_NAME``, default ``default``).

    Rules match ``{"source": ["fanfetch"], "detail-type": ["Job Finished"]}``.
    """

    def __init__(
        self,
        client: Any,
        *,
        bus_name: str = DEFAULT_BUS,
        source: str = EVENT_SOURCE,
        max_attempts: int = 4,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 2.0,
        clock: Clock | None = None,
        rand: Callable[[], float] = random.random,
    ):
        self._client = client
        self.bus_name = bus_name
        self.source = source
        self._backoff = Backoff(max_attempts, backoff_base_s, backoff_max_s, clock or SystemClock(), rand)

    def job_finished(self, job: JobRecord, *, results_location: str) -> None:
        # The job id as an idempotency key: a finisher that died after publishing may publish again.
        detail = dict(job.to_summary(results_location=results_location), idempotency_key=f"{job.job_id}/finished")
        entry = {
            "Source": self.source,
            "DetailType": JOB_FINISHED,
            "Detail": json.dumps(detail, separators=(",", ":")),
            "EventBusName": self.bus_name,
        }
        what = f"publish {JOB_FINISHED!r} for job {job.job_id!r} on bus {self.bus_name!r}"
        for attempt in self._backoff.attempts():
            try:
                response = self._client.put_events(Entries=[entry])
            except (ClientError, BotoCoreError) as exc:
                raise _classify(exc, what) from exc  # botocore already retried throttling and 5xx
            if not response.get("FailedEntryCount", 0):
                return
            failed: dict[str, Any] = next((e for e in response.get("Entries", []) if e.get("ErrorCode")), {})
            code = str(failed.get("ErrorCode", "unknown"))
            reason = f"{what}: entry rejected ({code}: {failed.get('ErrorMessage', '')})"
            if code in _PERMANENT_ENTRY_CODES:
                raise PermanentPublishError(reason)
            if self._backoff.is_last(attempt):
                raise RetryablePublishError(f"{reason} after {attempt} attempts")
            self._backoff.pause(attempt)


def _classify(exc: BaseException, what: str) -> PublishError:
    return classify_by_code(exc, what, permanent_codes=_PERMANENT_CODES, permanent=PermanentPublishError,
                            retryable=RetryablePublishError)
