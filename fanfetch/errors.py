"""The one error tree of fanfetch: every failure says whether trying again can help.

Callers classify failures by *type* (``isinstance(e, Retryable)``), never by message text.
Library errors (libcurl, botocore) are translated into this tree at the adapter
boundary, so services and handlers never see a foreign exception::

    FanfetchError
    ├── InputError                 bad manifest / spec / flag: exit 2, nothing enqueued   (permanent)
    │   └── ManifestError          names source, line and field
    │       └── ManifestProblems   the first 20 problems of one manifest, one line each
    ├── MessageError               a queue message we cannot act on (poison)              (permanent)
    ├── FetchError                 one URL could not be downloaded; carries url, attempts, status
    │   ├── RetryableFetchError    connection refused/reset, timeouts, 429, 5xx, short body
    │   │   └── RetryAfterTooLong  the server asked us to wait past our deadline
    │   └── PermanentFetchError    404/403/410 and other 4xx, too large, too many redirects,
    │       └── BlockedAddressError    a host that resolves to a non-public address (SSRF guard)
    ├── MergeError                 csv parts that do not fit together (a header differs); names the URL (permanent)
    ├── EnqueueError               some messages could not be sent after retries (counts sent/failed)
    ├── StoreError                 writing the output failed
    │   ├── RetryableStoreError    throttling, 5xx, network trouble talking to S3 / the disk
    │   ├── OutputExists           a conditional write lost: another delivery already stored this key
    │   └── PermanentStoreError    access denied, no such bucket
    ├── LedgerError                recording or reading job progress failed
    │   ├── RetryableLedgerError   throttling, transaction conflicts, 5xx, network, a busy database
    │   │   └── JobNotOpen         a verdict for a job the ledger does not know (yet)
    │   └── PermanentLedgerError   access denied, no such table, invalid request, corrupt database
    ├── PublishError               announcing "job finished" failed
    │   ├── RetryablePublishError  the bus rejected the entry (FailedEntryCount), throttling, network
    │   └── PermanentPublishError  access denied, no such event bus, invalid request
    ├── DeadlineExceeded           the Lambda's time ran short before the group could finish  (retryable)
    ├── DiskFull                   the spool disk ran out of space (ENOSPC) while a group was spooled (retryable)
    ├── TooLargeForSpool           a group needs more temp space than the worker's whole spool budget (permanent)
    └── GroupFailed                a worker's verdict on one group (message), carrying the reason

``Retryable`` and ``Permanent`` are mixins so that one ``isinstance`` check answers
"may a later delivery succeed?" for any member of the tree.
"""

from __future__ import annotations

from fanfetch.core.redact import redact_text, redact_url

__all__ = [
    "FanfetchError",
    "QueueError",
    "Retryable",
    "Permanent",
    "InputError",
    "ManifestError",
    "ManifestProblems",
    "MessageError",
    "FetchError",
    "RetryableFetchError",
    "RetryAfterTooLong",
    "PermanentFetchError",
    "BlockedAddressError",
    "MergeError",
    "EnqueueError",
    "StoreError",
    "RetryableStoreError",
    "PermanentStoreError",
    "OutputExists",
    "LedgerError",
    "RetryableLedgerError",
    "PermanentLedgerError",
    "JobNotOpen",
    "FinishDeferred",
    "PublishError",
    "RetryablePublishError",
    "PermanentPublishError",
    "DeadlineExceeded",
    "DiskFull",
    "TooLargeForSpool",
    "GroupFailed",
    "is_retryable",
]


class FanfetchError(Exception):
    """Base of every error fanfetch raises on purpose. ``str()`` is redacted (``fanfetch.core.redact``):
    URL passwords and signature/token query values never reach a log, a results line or a DLQ attribute."""

    def __str__(self) -> str:
        return redact_text(super().__str__())


class Retryable:
    """Mixin: a later attempt (or a redelivery of the message) may succeed."""


class Permanent:
    """Mixin: trying again with the same input will fail the same way."""


class InputError(FanfetchError, Permanent):
    """The user's input (manifest, job spec, command-line flag, event) is invalid."""


class ManifestError(InputError):
    """A manifest or job spec is invalid; ``str()`` is one line naming where and what."""

    def __init__(self, source: str, problem: str, *, line: int | None = None, field: str | None = None):
        self.source = source
        self.line = line
        self.field = field
        self.problem = problem
        where = source if line is None else f"{source}:{line}"
        what = problem if field is None else f"{field}: {problem}"
        super().__init__(f"{where}: {what}")


class ManifestProblems(ManifestError):
    """Several problems found in one pass over a manifest; ``str()`` has one ``file:line: field: problem``
    line each (``truncated``: the pass stopped at the limit, more may follow)."""

    def __init__(self, problems: list[ManifestError], *, truncated: bool):
        first = problems[0]
        super().__init__(first.source, first.problem, line=first.line, field=first.field)
        self.problems = tuple(problems)
        self.truncated = truncated
        lines = [str(p) for p in problems]
        if truncated:
            lines.append(f"{first.source}: stopped after the first {len(problems)} problems; fix these and run again")
        self.args = ("\n".join(lines),)


class MessageError(FanfetchError, Permanent):
    """A queue message is not a valid fanfetch message (poison): retrying cannot help."""


class FetchError(FanfetchError):
    """Downloading one URL failed."""

    def __init__(self, url: str, reason: str, *, status: int | None = None, attempts: int = 1):
        self.url = redact_url(url)  # errors carry only the redacted URL: it is what every sink records
        self.reason = redact_text(reason)
        self.status = status
        self.attempts = attempts
        super().__init__(f"{self.url}: {self.reason}" + (f" (after {attempts} attempts)" if attempts > 1 else ""))

    def with_attempts(self, attempts: int) -> FetchError:
        """Return the same error recording how many attempts were made in total."""
        self.attempts = attempts
        self.args = (f"{self.url}: {self.reason}" + (f" (after {attempts} attempts)" if attempts > 1 else ""),)
        return self


class RetryableFetchError(FetchError, Retryable):
    """A transient failure: connection trouble, timeout, 429, 5xx, a body cut short."""

    def __init__(
        self,
        url: str,
        reason: str,
        *,
        status: int | None = None,
        attempts: int = 1,
        retry_after_s: float | None = None,
    ):
        super().__init__(url, reason, status=status, attempts=attempts)
        self.retry_after_s = retry_after_s


class RetryAfterTooLong(RetryableFetchError):
    """The origin asked us to come back later than our deadline allows: give the work back."""


class PermanentFetchError(FetchError, Permanent):
    """A failure that repeats on every attempt: 4xx (but 408/429), too large, redirect loop."""


class BlockedAddressError(PermanentFetchError):
    """The URL's host is (or resolves to) an address downloads may not reach."""


class MergeError(FanfetchError, Permanent):
    """A group's parts cannot be merged as asked (strict csv: a part's header differs from the first's)."""


class EnqueueError(FanfetchError):
    """Some messages could not be sent; ``sent`` of ``total`` made it (those are not undone)."""

    def __init__(self, message: str, *, sent: int, failed: int):
        self.sent = sent
        self.failed = failed
        super().__init__(f"{message} ({sent} sent, {failed} failed)")


class QueueError(FanfetchError, Retryable):
    """SQS could not receive, delete or change the visibility of messages; the message is SQS's error code (the next
    poll or beat tries again)."""


class StoreError(FanfetchError):
    """Storing an output failed."""


class RetryableStoreError(StoreError, Retryable):
    """Throttling, 5xx or network trouble while storing."""


class PermanentStoreError(StoreError, Permanent):
    """Access denied, missing bucket, invalid key: retrying cannot help."""


class OutputExists(StoreError, Permanent):
    """The output was already written (by an earlier or concurrent delivery): the group is done.

    Raised by conditional writes (S3 ``If-None-Match: *`` → 412; a hard link locally), so two
    deliveries of one message can never both write, and neither overwrites a finished output.
    """


class LedgerError(FanfetchError):
    """Recording or reading job progress in the ledger failed."""


class RetryableLedgerError(LedgerError, Retryable):
    """Throttling, a transaction conflict, 5xx, network trouble, a busy database: try again."""


class JobNotOpen(RetryableLedgerError):
    """A group's verdict arrived for a job the ledger does not know: the producer opens jobs before
    enqueueing, so this is a race or a missing ``open_job``; a redelivery may find the job."""


class FinishDeferred(RetryableLedgerError):
    """Too little time left to finish a job now: the next delivery (or ``fanfetch finish``) completes it."""


class PermanentLedgerError(LedgerError, Permanent):
    """Access denied, no such table, an invalid request, a corrupt database: retrying cannot help."""


class PublishError(FanfetchError):
    """Announcing "job finished" (EventBridge) failed."""


class RetryablePublishError(PublishError, Retryable):
    """The bus rejected the entry (``FailedEntryCount``), throttling or network trouble."""


class PermanentPublishError(PublishError, Permanent):
    """Access denied, no such event bus, an invalid request: retrying cannot help."""


class DeadlineExceeded(FanfetchError, Retryable):
    """Not enough time left to start or finish a group; a later delivery will do it."""


class DiskFull(FanfetchError, Retryable):
    """The local disk (the spool folder, or a local destination) had no space left (``ENOSPC``): the
    group is failed cleanly, its temp files removed; a later delivery or re-run with room may succeed."""


class TooLargeForSpool(FanfetchError, Permanent):
    """A group needs more temp space than the worker's whole spool budget: no delivery to this worker
    can hold it. The message names the sizes (what the group needs, what the budget is)."""


class GroupFailed(FanfetchError):
    """One group (one queue message) failed; raised per record so the batch reports it."""

    def __init__(self, group_id: str, reason: str, *, retryable: bool):
        self.group_id = group_id
        self.reason = reason
        self.retryable = retryable
        super().__init__(f"group {group_id!r} failed: {reason}")


def is_retryable(error: BaseException) -> bool:
    """True when a later attempt may succeed. Unknown (non-fanfetch) errors count as retryable:
    losing work to a bug we did not foresee is worse than one more delivery, and the DLQ bounds it."""
    if isinstance(error, Permanent):
        return False
    return True
