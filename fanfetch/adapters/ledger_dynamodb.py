"""The job ledger in one DynamoDB table (single-table design), counting each group's verdict exactly once.

A verdict is one TransactWriteItems (group item put if absent + job counters); an "ok" over a "failed" is
another (group item put if still "failed" + counters moved), so it counts once; "job finished" is one conditional
UpdateItem that exactly one caller wins. botocore errors become ``fanfetch.errors.LedgerError``.
"""

from __future__ import annotations

import json
import random
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
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
    "PARTITION_KEY",
    "SORT_KEY",
    "create_ledger_table",
    "classify_ledger_error",
]

# Item layout (pk, sk):
#   ("JOB#<job>", "JOB")            the job: totals, counters, remaining, started_at, finished_at
#   ("JOB#<job>", "GROUP#<group>")  one group's final verdict: the first, or an ok that replaced a failed
#   ("OUT#<key>", "OUT")            the last stored output at <key>: sha256 + source validators
PARTITION_KEY = "pk"
SORT_KEY = "sk"
_JOB_SK = "JOB"
_GROUP_PREFIX = "GROUP#"
_OUT_SK = "OUT"
_MAX_ERROR_CHARS = 2000  # the error text is for humans; an item must stay far below 400 KB
_COMPRESS_VALIDATORS_OVER_BYTES = 32 * 1024  # big groups: zlib keeps the validators well inside 400 KB

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


class DynamoDBLedger:
    """Implements ``fanfetch.ports.Ledger`` on one DynamoDB table (``LEDGER_TABLE``).

    Every job counter lives on one item, so concurrent workers' transactions can conflict
    (``TransactionConflict``); those are retried here with jittered backoff — safe, because the
    group item's condition (``attribute_not_exists``; for an upgrade, status still "failed") makes a
    verdict count at most once.
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
    ):
        self._client = client
        self.table_name = table_name
        self._backoff = Backoff(max_attempts, backoff_base_s, backoff_max_s, clock or SystemClock(), rand)
        self._wall = wall

    # --- Ledger ------------------------------------------------------------------------------------

    def open_job(
        self, job_id: str, *, total_groups: int, total_files: int, results_location: str, now: float
    ) -> JobRecord:
        item = {
            PARTITION_KEY: _s(_job_pk(job_id)),
            SORT_KEY: _s(_JOB_SK),
            "job_id": _s(job_id),
            "total_groups": _n(total_groups),
            "total_files": _n(total_files),
            "remaining": _n(total_groups),
            "started_at": _n(now),
            "results_location": _s(results_location),
            **{name: _n(0) for name in _COUNTERS},
        }
        what = f"open job {job_id!r} in {self.table_name}"
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
            existing = exc.response.get("Item") or self._get_job_item(job_id)  # an older job: keep it
            if existing is None:
                raise RetryableLedgerError(f"{what}: the job exists but could not be read back") from exc
            return _job_from_item(existing)
        except BotoCoreError as exc:
            raise classify_ledger_error(exc, what) from exc
        return _job_from_item(item)

    def record_group(self, record: GroupRecord) -> RecordOutcome:
        counted, stored = self._count(record)
        upgraded = False
        if not counted and record.status == "ok":
            if stored is None:  # the cancellation did not carry the item (it should): read it
                stored = self._get_item(_job_pk(record.job_id), _GROUP_PREFIX + record.group_id,
                                        f"read group {record.group_id!r} of job {record.job_id!r}")
            if stored is not None and _opt_s(stored, "status") == "failed":
                upgraded = self._upgrade(record, _group_from_item(stored))
        # After an upgrade too: ``remaining`` did not move, so this only finishes a job whose finishing
        # step died earlier (as for a duplicate); otherwise it reads back the job with the new counters.
        finished, job = self._try_finish(record)
        return RecordOutcome(counted=counted or upgraded, job_finished=finished, job=job, upgraded=upgraded)

    def get_job(self, job_id: str) -> JobRecord | None:
        item = self._get_job_item(job_id)
        return None if item is None else _job_from_item(item)

    def list_groups(self, job_id: str, *, status: str | None = None) -> list[GroupRecord]:
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
            "ExpressionAttributeNames": {"#pk": PARTITION_KEY, "#sk": SORT_KEY},
            "ExpressionAttributeValues": {":pk": _s(_job_pk(job_id)), ":prefix": _s(_GROUP_PREFIX)},
            # Strongly consistent: the results manifest is written right after the last verdict.
            "ConsistentRead": True,
        }
        if status is not None:
            params["FilterExpression"] = "#status = :status"
            params["ExpressionAttributeNames"]["#status"] = "status"
            params["ExpressionAttributeValues"][":status"] = _s(status)
        return [_group_from_item(item) for item in self._query(params, f"list groups of job {job_id!r}")]

    def last_validators(self, key: str) -> tuple[str | None, tuple[Validator, ...]]:
        item = self._get_item(_out_pk(key), _OUT_SK, f"read validators of {key!r}")
        if item is None:
            return None, ()
        return _opt_s(item, "sha256"), _unpack_validators(item.get("validators"))

    # --- steps -------------------------------------------------------------------------------------

    def _count(self, record: GroupRecord) -> tuple[bool, dict[str, Any] | None]:
        """The verdict transaction; ``(False, stored group item)`` when the group was recorded before."""
        what = f"record group {record.group_id!r} of job {record.job_id!r}"
        return self._transact(self._verdict_transaction(record), what)

    def _upgrade(self, record: GroupRecord, replaced: GroupRecord) -> bool:
        """Replace a "failed" verdict by ``record`` (an "ok"); False if another call upgraded it first."""
        what = f"upgrade group {record.group_id!r} of job {record.job_id!r} from failed to ok"
        upgraded, _ = self._transact(self._verdict_transaction(record, replaced=replaced), what)
        return upgraded

    def _transact(self, items: list[dict[str, Any]], what: str) -> tuple[bool, dict[str, Any] | None]:
        """Run a verdict transaction, retrying conflicts; ``(False, old item or None)`` when the group
        item's condition failed (the first item is always the group's)."""
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
                if self._backoff.is_last(attempt):
                    raise RetryableLedgerError(
                        f"{what}: transaction cancelled {attempt} times ({', '.join(reasons)})"
                    ) from exc
            except BotoCoreError as exc:
                raise classify_ledger_error(exc, what) from exc
            self._backoff.pause(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _try_finish(self, record: GroupRecord) -> tuple[bool, JobRecord | None]:
        """Set ``finished_at`` if nothing remains; exactly one caller's condition holds.

        Tried after duplicates too: if the delivery that counted the last group died before this
        step, its redelivery finishes the job instead of leaving it unfinished forever.
        """
        what = f"finish job {record.job_id!r}"
        now = record.finished_at or self._wall()
        for attempt in self._backoff.attempts():
            try:
                response = self._client.update_item(
                    TableName=self.table_name,
                    Key=_job_key(record.job_id),
                    UpdateExpression="SET #finished_at = :now",
                    ConditionExpression="#remaining = :zero AND attribute_not_exists(#finished_at)",
                    ExpressionAttributeNames={"#finished_at": "finished_at", "#remaining": "remaining"},
                    ExpressionAttributeValues={":now": _n(now), ":zero": _n(0)},
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                break
            except ClientError as exc:
                code = _error_code(exc)
                if code == "ConditionalCheckFailedException":
                    current = exc.response.get("Item") or self._get_job_item(record.job_id)
                    return False, None if current is None else _job_from_item(current)
                # Another worker's verdict transaction holds the job item (botocore does not retry this).
                if code != "TransactionConflictException" or self._backoff.is_last(attempt):
                    raise classify_ledger_error(exc, what) from exc
            except BotoCoreError as exc:
                raise classify_ledger_error(exc, what) from exc
            self._backoff.pause(attempt)
        return True, _job_from_item(response["Attributes"])

    def _verdict_transaction(self, record: GroupRecord, *, replaced: GroupRecord | None = None) -> list[dict[str, Any]]:
        """Group item + job counters (+ the output's validators for an ok). A first verdict puts the group
        item if absent and counts one more group done; an upgrade puts it only while the stored verdict is
        still "failed" and moves the ``replaced`` verdict's share to the new one (``remaining`` stays)."""
        new, old = _share(record), _share(replaced)
        increments = {name: new[name] - old[name] for name in _COUNTERS}
        if replaced is None:
            increments["remaining"] = -1
        names = {f"#{name}": name for name in increments}
        names["#sk"] = SORT_KEY
        group_put: dict[str, Any] = {"TableName": self.table_name, "Item": _group_item(record)}
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
                    "Key": _job_key(record.job_id),
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


def _out_pk(key: str) -> str:
    return f"OUT#{key}"


def _job_key(job_id: str) -> dict[str, Any]:
    return {PARTITION_KEY: _s(_job_pk(job_id)), SORT_KEY: _s(_JOB_SK)}


def _group_item(record: GroupRecord) -> dict[str, Any]:
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


def _job_from_item(item: Mapping[str, Any]) -> JobRecord:
    finished_at = item.get("finished_at")
    return JobRecord(
        job_id=str(item["job_id"]["S"]),
        total_groups=_int(item, "total_groups"),
        total_files=_int(item, "total_files"),
        **{name: _int(item, name) for name in _COUNTERS},  # type: ignore[arg-type]
        started_at=float(item["started_at"]["N"]) if "started_at" in item else 0.0,
        finished_at=None if finished_at is None else float(finished_at["N"]),
        results_location=_opt_s(item, "results_location") or "",
    )


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
