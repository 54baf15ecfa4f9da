"""The job ledger in one DynamoDB table (single-table design) with no hot item: per-group verdict items and
write-sharded job counters, each verdict counted exactly once, each job finished (and announced) once.

A verdict is one TransactWriteItems over two items nobody else writes at that moment: the group's item (put if
absent; an upgrade: put while still "failed") and one of the job's counter shards (chosen by the group id's
hash). Only when a shard reaches its expected count is the job's total read (one strongly consistent Query of
the shards) and the finish claimed (one conditional UpdateItem that exactly one caller wins). docs/ledger.md has
the design. botocore errors become ``fanfetch.errors.LedgerError``.
"""

from __future__ import annotations

import json
import random
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fanfetch.adapters.aws_errors import AWS_PERMANENT_CODES
from fanfetch.adapters.backoff import Backoff
from fanfetch.adapters.clock import SystemClock
from fanfetch.core.ledger import GroupRecord, JobRecord, RecordOutcome, Validator
from fanfetch.errors import JobNotOpen, LedgerError, PermanentLedgerError, RetryableLedgerError
from fanfetch.ports import Clock

__all__ = [
    "DynamoDBLedger",
    "MAX_SHARDS",
    "PARTITION_KEY",
    "SORT_KEY",
    "create_ledger_table",
    "classify_ledger_error",
    "group_item",
    "shard_count",
    "shard_of",
]

# Item layout (pk, sk):
#   ("JOB#<job>", "JOB")             the job: totals, shards, started_at, finished_at, announce_until, announced_at
#   ("SHARDS#<job>", "SHARD#<k:04d>") counter shard k: expected (groups hashed to it), done, ok, failed, files, ...
#   ("JOB#<job>", "GROUP#<group>")   one group's final verdict: the first, or an ok that replaced a failed
#   ("OUT#<key>", "OUT")             the last stored output at <key>: sha256 + source validators
PARTITION_KEY = "pk"
SORT_KEY = "sk"
_JOB_SK = "JOB"
_GROUP_PREFIX = "GROUP#"
_SHARD_PREFIX = "SHARD#"
_OUT_SK = "OUT"
MAX_SHARDS = 256  # counter shards per job: one per GROUPS_PER_SHARD groups, at most this many (docs/ledger.md)
GROUPS_PER_SHARD = 1
_TRANSACTION_ITEMS = 100  # TransactWriteItems' limit of actions per call
_MAX_ERROR_CHARS = 2000  # the error text is for humans; an item must stay far below 400 KB
_COMPRESS_VALIDATORS_OVER_BYTES = 32 * 1024  # big groups: zlib keeps the validators well inside 400 KB
# What the results manifest needs of a group item: never the validators (the bulk of a big group's item).
_LISTED = ("job_id", "group_id", "status", "key", "files", "bytes", "sha256", "attempts", "error",
           "started_at", "finished_at", "change", "missing")

_PERMANENT_CODES = AWS_PERMANENT_CODES | {
    "ItemCollectionSizeLimitExceededException",
    "SerializationException",
    "IdempotentParameterMismatchException",
}
# Per-item reasons in a TransactionCanceledException that another attempt may clear.
_RETRYABLE_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)
_COUNTERS = ("ok", "failed", "files", "bytes", "changed", "unchanged")


def classify_ledger_error(exc: BaseException, what: str) -> LedgerError:
    """Translate a botocore error into our tree, by error code (never by message text)."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _PERMANENT_CODES:
            return PermanentLedgerError(f"{what}: {code}")
        return RetryableLedgerError(f"{what}: {code or 'error'}")
    return RetryableLedgerError(f"{what}: {type(exc).__name__}: {exc}")


def create_ledger_table(client: Any, table_name: str) -> None:
    """Create the ledger table as the stack does (pk/sk strings, on-demand); for tests and local endpoints."""
    client.create_table(
        TableName=table_name,
        AttributeDefinitions=[
            {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": SORT_KEY, "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def shard_count(total_groups: int, max_shards: int = MAX_SHARDS) -> int:
    """How many counter shards a job gets: one per ``GROUPS_PER_SHARD`` groups, at most ``max_shards``."""
    return max(1, min(total_groups // GROUPS_PER_SHARD, max_shards))


def shard_of(group_id: str, shards: int) -> int:
    """The counter shard a group's verdict goes to (stable across processes: crc32, not ``hash``)."""
    return zlib.crc32(group_id.encode("utf-8", "surrogatepass")) % shards


class DynamoDBLedger:
    """Implements ``fanfetch.ports.Ledger`` on one DynamoDB table (``LEDGER_TABLE``).

    No item takes every verdict: a verdict writes its group's item and one of ``min(groups, 256)``
    counter shards. Conflicts that still happen (two deliveries of one group, two groups on one shard at
    the same moment) are retried with jittered backoff — safe, because the group item's condition
    (``attribute_not_exists``; for an upgrade, status still "failed") makes a verdict count at most once.
    """

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        max_attempts: int = 8,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 2.0,
        clock: Clock | None = None,
        rand: Callable[[], float] = random.random,
        wall: Callable[[], float] = time.time,
        max_shards: int = MAX_SHARDS,
        page_size: int | None = None,
    ):
        self._client = client
        self.table_name = table_name
        self._backoff = Backoff(max_attempts, backoff_base_s, backoff_max_s, clock or SystemClock(), rand)
        self._wall = wall
        self._max_shards = max_shards
        self._page_size = page_size  # Query Limit (tests: force pagination); None: DynamoDB's 1 MB pages
        self._shards: dict[str, int] = {}  # job -> shard count (fixed at open_job): one read per job and process
        self._shards_lock = threading.Lock()
        # Counters of finished jobs read for a duplicate's ``announce_pending`` outcome (only a trigger: the
        # announcement itself re-reads them through ``claim_announcement``).
        self._finished_sums: dict[str, dict[str, int]] = {}

    # --- Ledger ------------------------------------------------------------------------------------

    def open_job(
        self, job_id: str, *, total_groups: int, total_files: int, results_location: str, now: float,
        group_ids: Sequence[str] | None = None,
    ) -> JobRecord:
        """Shards first (conditional puts, idempotent), the job item last: it marks the job open. With
        ``group_ids`` each shard knows how many verdicts it expects, so only a full shard checks the total."""
        what = f"open job {job_id!r} in {self.table_name}"
        existing = self._get_job_item(job_id)
        if existing is not None:  # an older job (re-invoked producer): keep it
            return self._job_from(existing)
        shards = shard_count(total_groups, self._max_shards)
        expected = Counter(shard_of(g, shards) for g in group_ids) if group_ids else None
        self._put_shards(job_id, shards, expected, what)
        item = {
            PARTITION_KEY: _s(_job_pk(job_id)),
            SORT_KEY: _s(_JOB_SK),
            "job_id": _s(job_id),
            "total_groups": _n(total_groups),
            "total_files": _n(total_files),
            "shards": _n(shards),
            "started_at": _n(now),
            "results_location": _s(results_location),
        }
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(#sk)",
                ExpressionAttributeNames={"#sk": SORT_KEY},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise classify_ledger_error(exc, what) from exc
            existing = exc.response.get("Item") or self._get_job_item(job_id)  # opened concurrently: keep it
            if existing is None:
                raise RetryableLedgerError(f"{what}: the job exists but could not be read back") from exc
            return self._job_from(existing)
        except BotoCoreError as exc:
            raise classify_ledger_error(exc, what) from exc
        with self._shards_lock:
            self._shards[job_id] = shards
        return _job_from_item(item, _zero_sums())

    def record_group(self, record: GroupRecord) -> RecordOutcome:
        shards = self._shard_count(record.job_id)
        shard = shard_of(record.group_id, shards)
        counted, stored = self._count(record, shard)
        upgraded = False
        if not counted and record.status == "ok":
            if stored is None:  # the cancellation did not carry the item (it should): read it
                stored = self._get_item(_job_pk(record.job_id), _GROUP_PREFIX + record.group_id,
                                        f"read group {record.group_id!r} of job {record.job_id!r}")
            if stored is not None and _opt_s(stored, "status") == "failed":
                upgraded = self._upgrade(record, _group_from_item(stored), shard)
        # After duplicates and upgrades too: if the delivery that counted a shard's last verdict died before
        # claiming the finish, its redelivery (a duplicate now) claims it instead.
        finished, job = self._settle(record, shard, with_job=upgraded)
        pending = job is not None and job.finished_at is not None and job.announced_at is None and not finished
        return RecordOutcome(counted=counted or upgraded, job_finished=finished, job=job, upgraded=upgraded,
                             announce_pending=pending)

    def get_job(self, job_id: str) -> JobRecord | None:
        item = self._get_job_item(job_id)
        return None if item is None else self._job_from(item)

    def list_groups(self, job_id: str, *, status: str | None = None) -> list[GroupRecord]:
        return list(self._groups(job_id, status=status, projected=False))

    def iter_groups(self, job_id: str, *, status: str | None = None) -> Iterator[GroupRecord]:
        """Page by page (Query pagination), in group id order, without validators: bounded memory."""
        return self._groups(job_id, status=status, projected=True)

    def last_validators(self, key: str) -> tuple[str | None, tuple[Validator, ...]]:
        item = self._get_item(_out_pk(key), _OUT_SK, f"read validators of {key!r}")
        if item is None:
            return None, ()
        return _opt_s(item, "sha256"), _unpack_validators(item.get("validators"))

    def claim_announcement(self, job_id: str, *, now: float, lease_s: float) -> JobRecord | None:
        """Take the right to announce a finished, unannounced job for ``lease_s`` (one holder at a time)."""
        return self._update_job(
            job_id, "SET #until = :until",
            "attribute_exists(#finished) AND attribute_not_exists(#announced) "
            "AND (attribute_not_exists(#until) OR #until < :now)",
            {"#until": "announce_until", "#finished": "finished_at", "#announced": "announced_at"},
            {":until": _n(float(now + lease_s)), ":now": _n(float(now))},
            f"claim the announcement of job {job_id!r}")

    def mark_announced(self, job_id: str, *, now: float) -> None:
        """Results, summary and event are out: record it (``announced_at``), so nobody announces again."""
        self._update_job(job_id, "SET #announced = :now REMOVE #until", "attribute_exists(#sk)",
                         {"#announced": "announced_at", "#until": "announce_until", "#sk": SORT_KEY},
                         {":now": _n(float(now))}, f"mark job {job_id!r} announced")

    def release_announcement(self, job_id: str) -> None:
        """Give a claimed announcement back (finishing deferred or failed): the next delivery takes it."""
        self._update_job(job_id, "REMOVE #until", "attribute_not_exists(#announced)",
                         {"#until": "announce_until", "#announced": "announced_at"}, None,
                         f"release the announcement of job {job_id!r}")

    # --- steps -------------------------------------------------------------------------------------

    def _count(self, record: GroupRecord, shard: int) -> tuple[bool, dict[str, Any] | None]:
        """The verdict transaction; ``(False, stored group item)`` when the group was recorded before."""
        what = f"record group {record.group_id!r} of job {record.job_id!r}"
        return self._transact(self._verdict_transaction(record, shard), what, record, upgrade=False)

    def _upgrade(self, record: GroupRecord, replaced: GroupRecord, shard: int) -> bool:
        """Replace a "failed" verdict by ``record`` (an "ok"); False if another call upgraded it first."""
        what = f"upgrade group {record.group_id!r} of job {record.job_id!r} from failed to ok"
        upgraded, _ = self._transact(self._verdict_transaction(record, shard, replaced=replaced), what, record,
                                     upgrade=True)
        return upgraded

    def _transact(self, items: list[dict[str, Any]], what: str, record: GroupRecord, *,
                  upgrade: bool) -> tuple[bool, dict[str, Any] | None]:
        """Run a verdict transaction, retrying conflicts; ``(False, old item or None)`` when the group
        item's condition failed (the first item is always the group's, the second its shard).

        Before retrying a conflict the group item is read: if another delivery recorded (or upgraded) the
        group meanwhile, this attempt is moot and stops there — a burst of duplicates does not keep
        contending for the shard.
        """
        for attempt in self._backoff.attempts():
            try:
                self._client.transact_write_items(TransactItems=items)
                return True, None
            except ClientError as exc:
                if _error_code(exc) != "TransactionCanceledException":
                    raise classify_ledger_error(exc, what) from exc
                cancellations = exc.response.get("CancellationReasons", [])
                reasons = [str(r.get("Code") or "None") for r in cancellations]
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    item = cancellations[0].get("Item")  # ReturnValuesOnConditionCheckFailure=ALL_OLD
                    return False, dict(item) if item else None
                if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                    raise JobNotOpen(f"{what}: the ledger has no such job") from exc
                if not any(r in _RETRYABLE_REASONS for r in reasons):
                    raise PermanentLedgerError(f"{what}: transaction cancelled ({', '.join(reasons)})") from exc
                stored = self._get_item(_job_pk(record.job_id), _GROUP_PREFIX + record.group_id, what)
                if stored is not None and (not upgrade or _opt_s(stored, "status") != "failed"):
                    return False, stored
                if self._backoff.is_last(attempt):
                    raise RetryableLedgerError(
                        f"{what}: transaction cancelled {attempt} times ({', '.join(reasons)})"
                    ) from exc
            except BotoCoreError as exc:
                raise classify_ledger_error(exc, what) from exc
            self._backoff.pause(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _settle(self, record: GroupRecord, shard: int, *, with_job: bool) -> tuple[bool, JobRecord | None]:
        """Claim the finish if this verdict's shard is full and so are all the others.

        Reads cost little and never conflict: the shard (1 strongly consistent read) on every verdict; the
        job item and a count of the shards still short of their expected total (a Query returning only a
        count) only when this shard is full — once per shard and job; the job's sums once, to finish it.
        """
        job_id = record.job_id
        item = self._get_item(_shards_pk(job_id), _shard_sk(shard), f"read shard {shard} of job {job_id!r}")
        expected = item is not None and "expected" in item
        full = not expected or _int(item or {}, "done") >= _int(item or {}, "expected")
        if not full and not with_job:
            return False, None
        job_item = self._get_job_item(job_id)
        if job_item is None:
            raise JobNotOpen(f"finish job {job_id!r}: the ledger has no such job")
        if "finished_at" in job_item:  # finished already: the job matters only to upgrades and to announcing
            if not with_job and "announced_at" in job_item:
                return False, None
            if with_job or job_id not in self._finished_sums:  # duplicates of a finished job: one Query
                self._finished_sums[job_id] = self._sums(job_id)
            return False, _job_from_item(job_item, self._finished_sums[job_id])
        if not full or (expected and self._shards_short(job_id) > 0):
            return False, _job_from_item(job_item, self._sums(job_id)) if with_job else None
        sums = self._sums(job_id)
        if sums["done"] < _int(job_item, "total_groups"):
            return False, _job_from_item(job_item, sums) if with_job else None
        return self._claim_finish(job_id, record.finished_at or self._wall(), sums)

    def _claim_finish(self, job_id: str, now: float, sums: Mapping[str, int]) -> tuple[bool, JobRecord | None]:
        """Set ``finished_at``: exactly one caller's condition holds (it then claims the announcement)."""
        what = f"finish job {job_id!r}"
        for attempt in self._backoff.attempts():
            try:
                response = self._client.update_item(
                    TableName=self.table_name,
                    Key=_job_key(job_id),
                    UpdateExpression="SET #finished_at = :now",
                    ConditionExpression="attribute_not_exists(#finished_at)",
                    ExpressionAttributeNames={"#finished_at": "finished_at"},
                    ExpressionAttributeValues={":now": _n(now)},
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                break
            except ClientError as exc:
                code = _error_code(exc)
                if code == "ConditionalCheckFailedException":
                    current = exc.response.get("Item") or self._get_job_item(job_id)
                    return False, None if current is None else _job_from_item(current, sums)
                if code != "TransactionConflictException" or self._backoff.is_last(attempt):
                    raise classify_ledger_error(exc, what) from exc
            except BotoCoreError as exc:
                raise classify_ledger_error(exc, what) from exc
            self._backoff.pause(attempt)
        return True, _job_from_item(response["Attributes"], sums)

    def _update_job(self, job_id: str, update: str, condition: str, names: dict[str, str],
                    values: dict[str, Any] | None, what: str) -> JobRecord | None:
        """A conditional UpdateItem of the job item; the job after it, or None when the condition failed."""
        params: dict[str, Any] = {
            "TableName": self.table_name, "Key": _job_key(job_id), "UpdateExpression": update,
            "ConditionExpression": condition, "ExpressionAttributeNames": names, "ReturnValues": "ALL_NEW",
        }
        if values:
            params["ExpressionAttributeValues"] = values
        for attempt in self._backoff.attempts():
            try:
                response = self._client.update_item(**params)
                return _job_from_item(response["Attributes"], self._sums(job_id))
            except ClientError as exc:
                code = _error_code(exc)
                if code == "ConditionalCheckFailedException":
                    return None
                if code != "TransactionConflictException" or self._backoff.is_last(attempt):
                    raise classify_ledger_error(exc, what) from exc
            except BotoCoreError as exc:
                raise classify_ledger_error(exc, what) from exc
            self._backoff.pause(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _put_shards(self, job_id: str, shards: int, expected: Counter[int] | None, what: str) -> None:
        """Create the job's counter shards, 100 per transaction, each only if absent (a re-open keeps counts)."""
        items = []
        for k in range(shards):
            item = {PARTITION_KEY: _s(_shards_pk(job_id)), SORT_KEY: _s(_shard_sk(k)), "job_id": _s(job_id),
                    "shard": _n(k), "done": _n(0), **{name: _n(0) for name in _COUNTERS}}
            if expected is not None:
                item["expected"] = _n(expected.get(k, 0))
            items.append({"Put": {"TableName": self.table_name, "Item": item,
                                  "ConditionExpression": "attribute_not_exists(#sk)",
                                  "ExpressionAttributeNames": {"#sk": SORT_KEY}}})
        for start in range(0, len(items), _TRANSACTION_ITEMS):
            try:
                self._client.transact_write_items(TransactItems=items[start:start + _TRANSACTION_ITEMS])
            except ClientError as exc:
                reasons = [str(r.get("Code") or "None") for r in exc.response.get("CancellationReasons", [])]
                if _error_code(exc) != "TransactionCanceledException" or "ConditionalCheckFailed" not in reasons:
                    raise classify_ledger_error(exc, what) from exc
                # Some shards of this chunk exist already (an earlier open died midway): create the rest one by one.
                for action in items[start:start + _TRANSACTION_ITEMS]:
                    try:
                        self._client.put_item(**action["Put"])
                    except ClientError as one:
                        if _error_code(one) != "ConditionalCheckFailedException":
                            raise classify_ledger_error(one, what) from one
                    except BotoCoreError as one:
                        raise classify_ledger_error(one, what) from one
            except BotoCoreError as exc:
                raise classify_ledger_error(exc, what) from exc

    def _verdict_transaction(
        self, record: GroupRecord, shard: int, *, replaced: GroupRecord | None = None
    ) -> list[dict[str, Any]]:
        """Group item + its counter shard (+ the output's validators for an ok). A first verdict puts the group
        item if absent and counts one more group done on the shard; an upgrade puts it only while the stored
        verdict is still "failed" and moves the ``replaced`` verdict's share to the new one (``done`` stays)."""
        new, old = _share(record), _share(replaced)
        increments = {name: new[name] - old[name] for name in _COUNTERS}
        if replaced is None:
            increments["done"] = 1
        names = {f"#{name}": name for name in increments}
        names["#sk"] = SORT_KEY
        group_put: dict[str, Any] = {"TableName": self.table_name, "Item": group_item(record)}
        if replaced is None:
            group_put.update(
                ConditionExpression="attribute_not_exists(#sk)",
                ExpressionAttributeNames={"#sk": SORT_KEY},
                # A duplicate's cancellation then carries the stored verdict: an upgrade needs no extra read.
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        else:
            # Only while still "failed": of two concurrent upgrades the second is cancelled, so it counts once.
            group_put.update(
                ConditionExpression="#status = :failed",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":failed": _s("failed")},
            )
        items: list[dict[str, Any]] = [
            {"Put": group_put},
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": {PARTITION_KEY: _s(_shards_pk(record.job_id)), SORT_KEY: _s(_shard_sk(shard))},
                    "UpdateExpression": "ADD " + ", ".join(f"#{name} :{name}" for name in increments),
                    "ConditionExpression": "attribute_exists(#sk)",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": {f":{name}": _n(value) for name, value in increments.items()},
                }
            },
        ]
        if record.status == "ok":
            # Inside the transaction, so only the counted verdict overwrites what incremental runs compare.
            items.append({"Put": {"TableName": self.table_name, "Item": _out_item(record)}})
        return items

    def _shard_count(self, job_id: str) -> int:
        with self._shards_lock:
            known = self._shards.get(job_id)
        if known is not None:
            return known
        item = self._get_job_item(job_id)
        if item is None:
            raise JobNotOpen(f"record a verdict of job {job_id!r}: the ledger has no such job")
        shards = _int(item, "shards") or 1
        with self._shards_lock:
            self._shards[job_id] = shards
        return shards

    def _sums(self, job_id: str) -> dict[str, int]:
        """The job's counters: the sum over its shards (one strongly consistent Query)."""
        sums = _zero_sums()
        params = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
            "ExpressionAttributeNames": {"#pk": PARTITION_KEY, "#sk": SORT_KEY},
            "ExpressionAttributeValues": {":pk": _s(_shards_pk(job_id)), ":prefix": _s(_SHARD_PREFIX)},
            "ConsistentRead": True,
        }
        for item in self._query(params, f"read the counters of job {job_id!r}"):
            for name in sums:
                sums[name] += _int(item, name)
        return sums

    def _shards_short(self, job_id: str) -> int:
        """How many of the job's shards have fewer verdicts than they expect (a count, no items returned)."""
        params = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
            "FilterExpression": "#done < #expected",
            "ExpressionAttributeNames": {"#pk": PARTITION_KEY, "#sk": SORT_KEY, "#done": "done",
                                         "#expected": "expected"},
            "ExpressionAttributeValues": {":pk": _s(_shards_pk(job_id)), ":prefix": _s(_SHARD_PREFIX)},
            "ConsistentRead": True,
            "Select": "COUNT",
        }
        short, start = 0, None
        while True:
            page_params = dict(params, ExclusiveStartKey=start) if start else params
            try:
                page = self._client.query(**page_params)
            except (ClientError, BotoCoreError) as exc:
                raise classify_ledger_error(exc, f"count the open shards of job {job_id!r}") from exc
            short += int(page.get("Count", 0))
            start = page.get("LastEvaluatedKey")
            if not start:
                return short

    def _job_from(self, job_item: Mapping[str, Any]) -> JobRecord:
        return _job_from_item(job_item, self._sums(str(job_item["job_id"]["S"])))

    def _groups(self, job_id: str, *, status: str | None, projected: bool) -> Iterator[GroupRecord]:
        names = {"#pk": PARTITION_KEY, "#sk": SORT_KEY}
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":pk": _s(_job_pk(job_id)), ":prefix": _s(_GROUP_PREFIX)},
            # Strongly consistent: the results manifest is written right after the last verdict.
            "ConsistentRead": True,
        }
        if self._page_size:
            params["Limit"] = self._page_size
        if status is not None:
            params["FilterExpression"] = "#status = :status"
            names["#status"] = "status"
            params["ExpressionAttributeValues"][":status"] = _s(status)
        if projected:
            names.update({f"#a{i}": name for i, name in enumerate(_LISTED)})
            params["ProjectionExpression"] = ", ".join(f"#a{i}" for i in range(len(_LISTED)))
        return (_group_from_item(item) for item in self._query(params, f"list groups of job {job_id!r}"))

    # --- reads -------------------------------------------------------------------------------------

    def _get_job_item(self, job_id: str) -> dict[str, Any] | None:
        return self._get_item(_job_pk(job_id), _JOB_SK, f"read job {job_id!r}")

    def _get_item(self, pk: str, sk: str, what: str) -> dict[str, Any] | None:
        try:
            response = self._client.get_item(
                TableName=self.table_name, Key={PARTITION_KEY: _s(pk), SORT_KEY: _s(sk)}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise classify_ledger_error(exc, f"{what} in {self.table_name}") from exc
        item = response.get("Item")
        return dict(item) if item else None

    def _query(self, params: dict[str, Any], what: str) -> Iterator[dict[str, Any]]:
        start: Mapping[str, Any] | None = None
        while True:
            page_params = dict(params, ExclusiveStartKey=start) if start else params
            try:
                page = self._client.query(**page_params)
            except (ClientError, BotoCoreError) as exc:
                raise classify_ledger_error(exc, f"{what} in {self.table_name}") from exc
            yield from page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return


# --- item codecs -------------------------------------------------------------------------------------


def _job_pk(job_id: str) -> str:
    return f"JOB#{job_id}"


def _shards_pk(job_id: str) -> str:
    return f"SHARDS#{job_id}"


def _out_pk(key: str) -> str:
    return f"OUT#{key}"


def _job_key(job_id: str) -> dict[str, Any]:
    return {PARTITION_KEY: _s(_job_pk(job_id)), SORT_KEY: _s(_JOB_SK)}


def group_item(record: GroupRecord) -> dict[str, Any]:
    """A verdict as the ledger stores it (public for benches that fill a ledger directly)."""
    item: dict[str, Any] = {
        PARTITION_KEY: _s(_job_pk(record.job_id)),
        SORT_KEY: _s(_GROUP_PREFIX + record.group_id),
        "job_id": _s(record.job_id),
        "group_id": _s(record.group_id),
        "status": _s(record.status),
        "key": _s(record.key),
        "files": _n(record.files),
        "bytes": _n(record.bytes),
        "attempts": _n(record.attempts),
        "started_at": _n(record.started_at),
        "finished_at": _n(record.finished_at),
    }
    if record.sha256 is not None:
        item["sha256"] = _s(record.sha256)
    if record.error is not None:
        item["error"] = _s(record.error[:_MAX_ERROR_CHARS])
    if record.change is not None:
        item["change"] = _s(record.change)
    if record.validators:
        item["validators"] = _pack_validators(record.validators)
    if record.missing:  # on_missing=skip: the URLs left out (404/410)
        item["missing"] = {"L": [_s(url) for url in record.missing]}
    return item


def _out_item(record: GroupRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        PARTITION_KEY: _s(_out_pk(record.key)),
        SORT_KEY: _s(_OUT_SK),
        "key": _s(record.key),
        "job_id": _s(record.job_id),
        "group_id": _s(record.group_id),
        "updated_at": _n(record.finished_at),
        "validators": _pack_validators(record.validators),
    }
    if record.sha256 is not None:
        item["sha256"] = _s(record.sha256)
    return item


def _share(record: GroupRecord | None) -> dict[str, int]:
    """A verdict's part of its job's counters (all zeros for no verdict)."""
    if record is None:
        return dict.fromkeys(_COUNTERS, 0)
    ok = record.status == "ok"
    return {
        "ok": int(ok),
        "failed": int(not ok),
        "files": record.files,
        "bytes": record.bytes,
        "changed": int(record.change in ("changed", "new")),  # written by a refresh run
        "unchanged": int(record.change == "unchanged"),
    }


def _job_from_item(item: Mapping[str, Any], sums: Mapping[str, int]) -> JobRecord:
    finished_at, announced_at = item.get("finished_at"), item.get("announced_at")
    return JobRecord(
        job_id=str(item["job_id"]["S"]),
        total_groups=_int(item, "total_groups"),
        total_files=_int(item, "total_files"),
        **{name: int(sums.get(name, 0)) for name in _COUNTERS},  # type: ignore[arg-type]
        started_at=float(item["started_at"]["N"]) if "started_at" in item else 0.0,
        finished_at=None if finished_at is None else float(finished_at["N"]),
        results_location=_opt_s(item, "results_location") or "",
        announced_at=None if announced_at is None else float(announced_at["N"]),
    )


def _zero_sums() -> dict[str, int]:
    return dict.fromkeys((*_COUNTERS, "done"), 0)


def _shard_sk(shard: int) -> str:
    return f"{_SHARD_PREFIX}{shard:04d}"


def _group_from_item(item: Mapping[str, Any]) -> GroupRecord:
    return GroupRecord(
        job_id=str(item["job_id"]["S"]),
        group_id=str(item["group_id"]["S"]),
        status=str(item["status"]["S"]),
        key=str(item["key"]["S"]),
        files=_int(item, "files"),
        bytes=_int(item, "bytes"),
        sha256=_opt_s(item, "sha256"),
        attempts=_int(item, "attempts"),
        error=_opt_s(item, "error"),
        started_at=float(item["started_at"]["N"]) if "started_at" in item else 0.0,
        finished_at=float(item["finished_at"]["N"]) if "finished_at" in item else 0.0,
        change=_opt_s(item, "change"),
        validators=_unpack_validators(item.get("validators")),
        missing=tuple(str(entry["S"]) for entry in item.get("missing", {}).get("L", [])),
    )


def _pack_validators(validators: tuple[Validator, ...]) -> dict[str, Any]:
    """Validators as compact JSON (``[[url, etag, last_modified], ...]``); zlib-compressed when big."""
    text = json.dumps([[v.url, v.etag, v.last_modified] for v in validators], separators=(",", ":"))
    if len(text) > _COMPRESS_VALIDATORS_OVER_BYTES:
        return {"B": zlib.compress(text.encode(), 6)}
    return {"S": text}


def _unpack_validators(value: Mapping[str, Any] | None) -> tuple[Validator, ...]:
    if not value:
        return ()
    text = zlib.decompress(value["B"]).decode() if "B" in value else str(value["S"])
    return tuple(Validator(url=url, etag=etag, last_modified=modified) for url, etag, modified in json.loads(text))


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(int(value))}


def _int(item: Mapping[str, Any], name: str) -> int:
    value = item.get(name)
    return int(value["N"]) if value else 0


def _opt_s(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value["S"])


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
