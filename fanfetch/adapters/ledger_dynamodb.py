"""The job ledger in one DynamoDB table (single-table design) with no hot item: per-group verdict items and
write-sharded job counters, each verdict counted exactly once, each job finished (and announced) once.

A verdict is one TransactWriteItems over two items nobody else writes at that moment: the group's item (put if
absent; an upgrade: put while still "failed") and one of the job's counter shards (chosen by the group id's
hash). Only when a shard reaches its expected count is the job's total read (one strongly consistent Query of
the shards) and the finish claimed (one conditional UpdateItem that exactly one caller wins). docs/ledger.md has
the design. botocore errors become ``fanfetch.errors.LedgerError``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fanfetch.adapters.backoff import Backoff
from fanfetch.adapters.clock import SystemClock
from fanfetch.adapters.ledger_dynamodb_items import (
    COUNTERS,
    GROUP_PREFIX,
    JOB_SK,
    MAX_SHARDS,
    OUT_SK,
    PARTITION_KEY,
    SORT_KEY,
    group_from_item,
    int_of,
    job_from_item,
    job_key,
    job_pk,
    num_value,
    opt_str_of,
    out_pk,
    shard_count,
    shard_of,
    shard_sk,
    shards_pk,
    str_value,
    unpack_validators,
    verdict_transaction,
    zero_sums,
)
from fanfetch.adapters.ledger_dynamodb_table import LedgerTable, classify_ledger_error, error_code
from fanfetch.core.ledger import GroupRecord, JobRecord, RecordOutcome, Validator
from fanfetch.errors import JobNotOpen, PermanentLedgerError, RetryableLedgerError
from fanfetch.ports import Clock

__all__ = ["DynamoDBLedger"]


_TRANSACTION_ITEMS = 100  # TransactWriteItems' limit of actions per call

# Per-item reasons in a TransactionCanceledException that another attempt may clear.
_RETRYABLE_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)


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
        self._table = LedgerTable(client, table_name, page_size=page_size)
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
        existing = self._table.get_job_item(job_id)
        if existing is not None:  # an older job (re-invoked producer): keep it
            return self._job_from(existing)
        shards = shard_count(total_groups, self._max_shards)
        expected = Counter(shard_of(g, shards) for g in group_ids) if group_ids else None
        self._put_shards(job_id, shards, expected, what)
        item = {
            PARTITION_KEY: str_value(job_pk(job_id)),
            SORT_KEY: str_value(JOB_SK),
            "job_id": str_value(job_id),
            "total_groups": num_value(total_groups),
            "total_files": num_value(total_files),
            "shards": num_value(shards),
            "started_at": num_value(now),
            "results_location": str_value(results_location),
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
            if error_code(exc) != "ConditionalCheckFailedException":
                raise classify_ledger_error(exc, what) from exc
            existing = exc.response.get("Item") or self._table.get_job_item(job_id)  # opened concurrently: keep it
            if existing is None:
                raise RetryableLedgerError(f"{what}: the job exists but could not be read back") from exc
            return self._job_from(existing)
        except BotoCoreError as exc:
            raise classify_ledger_error(exc, what) from exc
        with self._shards_lock:
            self._shards[job_id] = shards
        return job_from_item(item, zero_sums())

    def record_group(self, record: GroupRecord) -> RecordOutcome:
        shards = self._shard_count(record.job_id)
        shard = shard_of(record.group_id, shards)
        counted, stored = self._count(record, shard)
        upgraded = False
        if not counted and record.status == "ok":
            if stored is None:  # the cancellation did not carry the item (it should): read it
                stored = self._table.get_item(job_pk(record.job_id), GROUP_PREFIX + record.group_id,
                                        f"read group {record.group_id!r} of job {record.job_id!r}")
            if stored is not None and opt_str_of(stored, "status") == "failed":
                upgraded = self._upgrade(record, group_from_item(stored), shard)
        # After duplicates and upgrades too: if the delivery that counted a shard's last verdict died before
        # claiming the finish, its redelivery (a duplicate now) claims it instead.
        finished, job = self._settle(record, shard, with_job=upgraded)
        pending = job is not None and job.finished_at is not None and job.announced_at is None and not finished
        return RecordOutcome(counted=counted or upgraded, job_finished=finished, job=job, upgraded=upgraded,
                             announce_pending=pending)

    def get_job(self, job_id: str) -> JobRecord | None:
        item = self._table.get_job_item(job_id)
        return None if item is None else self._job_from(item)

    def list_groups(self, job_id: str, *, status: str | None = None) -> list[GroupRecord]:
        return list(self._table.groups(job_id, status=status, projected=False))

    def iter_groups(self, job_id: str, *, status: str | None = None) -> Iterator[GroupRecord]:
        """Page by page (Query pagination), in group id order, without validators: bounded memory."""
        return self._table.groups(job_id, status=status, projected=True)

    def last_validators(self, key: str) -> tuple[str | None, tuple[Validator, ...]]:
        item = self._table.get_item(out_pk(key), OUT_SK, f"read validators of {key!r}")
        if item is None:
            return None, ()
        return opt_str_of(item, "sha256"), unpack_validators(item.get("validators"))

    def claim_announcement(self, job_id: str, *, now: float, lease_s: float) -> JobRecord | None:
        """Take the right to announce a finished, unannounced job for ``lease_s`` (one holder at a time)."""
        return self._update_job(
            job_id, "SET #until = :until",
            "attribute_exists(#finished) AND attribute_not_exists(#announced) "
            "AND (attribute_not_exists(#until) OR #until < :now)",
            {"#until": "announce_until", "#finished": "finished_at", "#announced": "announced_at"},
            {":until": num_value(float(now + lease_s)), ":now": num_value(float(now))},
            f"claim the announcement of job {job_id!r}")

    def mark_announced(self, job_id: str, *, now: float) -> None:
        """Results, summary and event are out: record it (``announced_at``), so nobody announces again."""
        self._update_job(job_id, "SET #announced = :now REMOVE #until", "attribute_exists(#sk)",
                         {"#announced": "announced_at", "#until": "announce_until", "#sk": SORT_KEY},
                         {":now": num_value(float(now))}, f"mark job {job_id!r} announced")

    def release_announcement(self, job_id: str) -> None:
        """Give a claimed announcement back (finishing deferred or failed): the next delivery takes it."""
        self._update_job(job_id, "REMOVE #until", "attribute_not_exists(#announced)",
                         {"#until": "announce_until", "#announced": "announced_at"}, None,
                         f"release the announcement of job {job_id!r}")

    # --- steps -------------------------------------------------------------------------------------

    def _count(self, record: GroupRecord, shard: int) -> tuple[bool, dict[str, Any] | None]:
        """The verdict transaction; ``(False, stored group item)`` when the group was recorded before."""
        what = f"record group {record.group_id!r} of job {record.job_id!r}"
        return self._transact(verdict_transaction(self.table_name, record, shard), what, record, upgrade=False)

    def _upgrade(self, record: GroupRecord, replaced: GroupRecord, shard: int) -> bool:
        """Replace a "failed" verdict by ``record`` (an "ok"); False if another call upgraded it first."""
        what = f"upgrade group {record.group_id!r} of job {record.job_id!r} from failed to ok"
        upgraded, _ = self._transact(verdict_transaction(self.table_name, record, shard, replaced=replaced), what,
                                     record, upgrade=True)
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
                if error_code(exc) != "TransactionCanceledException":
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
                stored = self._table.get_item(job_pk(record.job_id), GROUP_PREFIX + record.group_id, what)
                if stored is not None and (not upgrade or opt_str_of(stored, "status") != "failed"):
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
        item = self._table.get_item(shards_pk(job_id), shard_sk(shard), f"read shard {shard} of job {job_id!r}")
        expected = item is not None and "expected" in item
        full = not expected or int_of(item or {}, "done") >= int_of(item or {}, "expected")
        if not full and not with_job:
            return False, None
        job_item = self._table.get_job_item(job_id)
        if job_item is None:
            raise JobNotOpen(f"finish job {job_id!r}: the ledger has no such job")
        if "finished_at" in job_item:  # finished already: the job matters only to upgrades and to announcing
            if not with_job and "announced_at" in job_item:
                return False, None
            if with_job or job_id not in self._finished_sums:  # duplicates of a finished job: one Query
                self._finished_sums[job_id] = self._table.sums(job_id)
            return False, job_from_item(job_item, self._finished_sums[job_id])
        if not full or (expected and self._table.shards_short(job_id) > 0):
            return False, job_from_item(job_item, self._table.sums(job_id)) if with_job else None
        sums = self._table.sums(job_id)
        if sums["done"] < int_of(job_item, "total_groups"):
            return False, job_from_item(job_item, sums) if with_job else None
        return self._claim_finish(job_id, record.finished_at or self._wall(), sums)

    def _claim_finish(self, job_id: str, now: float, sums: Mapping[str, int]) -> tuple[bool, JobRecord | None]:
        """Set ``finished_at``: exactly one caller's condition holds (it then claims the announcement)."""
        what = f"finish job {job_id!r}"
        for attempt in self._backoff.attempts():
            try:
                response = self._client.update_item(
                    TableName=self.table_name,
                    Key=job_key(job_id),
                    UpdateExpression="SET #finished_at = :now",
                    ConditionExpression="attribute_not_exists(#finished_at)",
                    ExpressionAttributeNames={"#finished_at": "finished_at"},
                    ExpressionAttributeValues={":now": num_value(now)},
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                break
            except ClientError as exc:
                code = error_code(exc)
                if code == "ConditionalCheckFailedException":
                    current = exc.response.get("Item") or self._table.get_job_item(job_id)
                    return False, None if current is None else job_from_item(current, sums)
                if code != "TransactionConflictException" or self._backoff.is_last(attempt):
                    raise classify_ledger_error(exc, what) from exc
            except BotoCoreError as exc:
                raise classify_ledger_error(exc, what) from exc
            self._backoff.pause(attempt)
        return True, job_from_item(response["Attributes"], sums)

    def _update_job(self, job_id: str, update: str, condition: str, names: dict[str, str],
                    values: dict[str, Any] | None, what: str) -> JobRecord | None:
        """A conditional UpdateItem of the job item; the job after it, or None when the condition failed."""
        params: dict[str, Any] = {
            "TableName": self.table_name, "Key": job_key(job_id), "UpdateExpression": update,
            "ConditionExpression": condition, "ExpressionAttributeNames": names, "ReturnValues": "ALL_NEW",
        }
        if values:
            params["ExpressionAttributeValues"] = values
        for attempt in self._backoff.attempts():
            try:
                response = self._client.update_item(**params)
                return job_from_item(response["Attributes"], self._table.sums(job_id))
            except ClientError as exc:
                code = error_code(exc)
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
            item = {PARTITION_KEY: str_value(shards_pk(job_id)), SORT_KEY: str_value(shard_sk(k)),
                    "job_id": str_value(job_id), "shard": num_value(k), "done": num_value(0),
                    **{name: num_value(0) for name in COUNTERS}}
            if expected is not None:
                item["expected"] = num_value(expected.get(k, 0))
            items.append({"Put": {"TableName": self.table_name, "Item": item,
                                  "ConditionExpression": "attribute_not_exists(#sk)",
                                  "ExpressionAttributeNames": {"#sk": SORT_KEY}}})
        for start in range(0, len(items), _TRANSACTION_ITEMS):
            try:
                self._client.transact_write_items(TransactItems=items[start:start + _TRANSACTION_ITEMS])
            except ClientError as exc:
                reasons = [str(r.get("Code") or "None") for r in exc.response.get("CancellationReasons", [])]
                if error_code(exc) != "TransactionCanceledException" or "ConditionalCheckFailed" not in reasons:
                    raise classify_ledger_error(exc, what) from exc
                # Some shards of this chunk exist already (an earlier open died midway): create the rest one by one.
                for action in items[start:start + _TRANSACTION_ITEMS]:
                    try:
                        self._client.put_item(**action["Put"])
                    except ClientError as one:
                        if error_code(one) != "ConditionalCheckFailedException":
                            raise classify_ledger_error(one, what) from one
                    except BotoCoreError as one:
                        raise classify_ledger_error(one, what) from one
            except BotoCoreError as exc:
                raise classify_ledger_error(exc, what) from exc

    def _shard_count(self, job_id: str) -> int:
        with self._shards_lock:
            known = self._shards.get(job_id)
        if known is not None:
            return known
        item = self._table.get_job_item(job_id)
        if item is None:
            raise JobNotOpen(f"record a verdict of job {job_id!r}: the ledger has no such job")
        shards = int_of(item, "shards") or 1
        with self._shards_lock:
            self._shards[job_id] = shards
        return shards

    def _job_from(self, job_item: Mapping[str, Any]) -> JobRecord:
        return job_from_item(job_item, self._table.sums(str(job_item["job_id"]["S"])))
