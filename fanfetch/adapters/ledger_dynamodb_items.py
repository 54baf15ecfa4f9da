"""The DynamoDB ledger's item layout: its keys (single-table design), the table as the stack creates it, counter
shards, and the codecs between ledger records and DynamoDB items (validators packed, zlib when big).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

from fanfetch.core.ledger import GroupRecord, JobRecord, Validator

__all__ = [
    # keys and layout
    "PARTITION_KEY", "SORT_KEY", "JOB_SK", "GROUP_PREFIX", "SHARD_PREFIX", "OUT_SK", "LISTED", "COUNTERS",
    "job_pk", "shards_pk", "shard_sk", "out_pk", "job_key", "create_ledger_table",
    # counter shards
    "MAX_SHARDS", "GROUPS_PER_SHARD", "shard_count", "shard_of", "share_of", "zero_sums",
    # items <-> records
    "verdict_transaction", "group_item", "group_from_item", "job_from_item", "unpack_validators",
    "str_value", "num_value", "int_of", "opt_str_of",
]

# Item layout (pk, sk):
#   ("JOB#<job>", "JOB")             the job: totals, shards, started_at, finished_at, announce_until, announced_at
#   ("SHARDS#<job>", "SHARD#<k:04d>") counter shard k: expected (groups hashed to it), done, ok, failed, files, ...
#   ("JOB#<job>", "GROUP#<group>")   one group's final verdict: the first, or an ok that replaced a failed
#   ("OUT#<key>", "OUT")             the last stored output at <key>: sha256 + source validators
PARTITION_KEY = "pk"
SORT_KEY = "sk"
JOB_SK = "JOB"
GROUP_PREFIX = "GROUP#"
SHARD_PREFIX = "SHARD#"
OUT_SK = "OUT"
MAX_SHARDS = 256  # counter shards per job: one per GROUPS_PER_SHARD groups, at most this many (docs/ledger.md)
GROUPS_PER_SHARD = 1
_MAX_ERROR_CHARS = 2000  # the error text is for humans; an item must stay far below 400 KB
_COMPRESS_VALIDATORS_OVER_BYTES = 32 * 1024  # big groups: zlib keeps the validators well inside 400 KB
# What the results manifest needs of a group item: never the validators (the bulk of a big group's item).
LISTED = ("job_id", "group_id", "status", "key", "files", "bytes", "sha256", "attempts", "error",
          "started_at", "finished_at", "change", "missing")
COUNTERS = ("ok", "failed", "files", "bytes", "changed", "unchanged")


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


def verdict_transaction(
    table_name: str, record: GroupRecord, shard: int, *, replaced: GroupRecord | None = None
) -> list[dict[str, Any]]:
    """Group item + its counter shard (+ the output's validators for an ok). A first verdict puts the group
    item if absent and counts one more group done on the shard; an upgrade puts it only while the stored
    verdict is still "failed" and moves the ``replaced`` verdict's share to the new one (``done`` stays)."""
    new, old = share_of(record), share_of(replaced)
    increments = {name: new[name] - old[name] for name in COUNTERS}
    if replaced is None:
        increments["done"] = 1
    names = {f"#{name}": name for name in increments}
    names["#sk"] = SORT_KEY
    group_put: dict[str, Any] = {"TableName": table_name, "Item": group_item(record)}
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
            ExpressionAttributeValues={":failed": str_value("failed")},
        )
    items: list[dict[str, Any]] = [
        {"Put": group_put},
        {
            "Update": {
                "TableName": table_name,
                "Key": {PARTITION_KEY: str_value(shards_pk(record.job_id)), SORT_KEY: str_value(shard_sk(shard))},
                "UpdateExpression": "ADD " + ", ".join(f"#{name} :{name}" for name in increments),
                "ConditionExpression": "attribute_exists(#sk)",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {f":{name}": num_value(value) for name, value in increments.items()},
            }
        },
    ]
    if record.status == "ok":
        # Inside the transaction, so only the counted verdict overwrites what incremental runs compare.
        items.append({"Put": {"TableName": table_name, "Item": _out_item(record)}})
    return items


def job_pk(job_id: str) -> str:
    return f"JOB#{job_id}"


def shards_pk(job_id: str) -> str:
    return f"SHARDS#{job_id}"


def out_pk(key: str) -> str:
    return f"OUT#{key}"


def job_key(job_id: str) -> dict[str, Any]:
    return {PARTITION_KEY: str_value(job_pk(job_id)), SORT_KEY: str_value(JOB_SK)}


def group_item(record: GroupRecord) -> dict[str, Any]:
    """A verdict as the ledger stores it (public for benches that fill a ledger directly)."""
    item: dict[str, Any] = {
        PARTITION_KEY: str_value(job_pk(record.job_id)),
        SORT_KEY: str_value(GROUP_PREFIX + record.group_id),
        "job_id": str_value(record.job_id),
        "group_id": str_value(record.group_id),
        "status": str_value(record.status),
        "key": str_value(record.key),
        "files": num_value(record.files),
        "bytes": num_value(record.bytes),
        "attempts": num_value(record.attempts),
        "started_at": num_value(record.started_at),
        "finished_at": num_value(record.finished_at),
    }
    if record.sha256 is not None:
        item["sha256"] = str_value(record.sha256)
    if record.error is not None:
        item["error"] = str_value(record.error[:_MAX_ERROR_CHARS])
    if record.change is not None:
        item["change"] = str_value(record.change)
    if record.validators:
        item["validators"] = _pack_validators(record.validators)
    if record.missing:  # on_missing=skip: the URLs left out (404/410)
        item["missing"] = {"L": [str_value(url) for url in record.missing]}
    return item


def _out_item(record: GroupRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        PARTITION_KEY: str_value(out_pk(record.key)),
        SORT_KEY: str_value(OUT_SK),
        "key": str_value(record.key),
        "job_id": str_value(record.job_id),
        "group_id": str_value(record.group_id),
        "updated_at": num_value(record.finished_at),
        "validators": _pack_validators(record.validators),
    }
    if record.sha256 is not None:
        item["sha256"] = str_value(record.sha256)
    return item


def share_of(record: GroupRecord | None) -> dict[str, int]:
    """A verdict's part of its job's counters (all zeros for no verdict)."""
    if record is None:
        return dict.fromkeys(COUNTERS, 0)
    ok = record.status == "ok"
    return {
        "ok": int(ok),
        "failed": int(not ok),
        "files": record.files,
        "bytes": record.bytes,
        "changed": int(record.change in ("changed", "new")),  # written by a refresh run
        "unchanged": int(record.change == "unchanged"),
    }


def job_from_item(item: Mapping[str, Any], sums: Mapping[str, int]) -> JobRecord:
    finished_at, announced_at = item.get("finished_at"), item.get("announced_at")
    return JobRecord(
        job_id=str(item["job_id"]["S"]),
        total_groups=int_of(item, "total_groups"),
        total_files=int_of(item, "total_files"),
        **{name: int(sums.get(name, 0)) for name in COUNTERS},  # type: ignore[arg-type]
        started_at=float(item["started_at"]["N"]) if "started_at" in item else 0.0,
        finished_at=None if finished_at is None else float(finished_at["N"]),
        results_location=opt_str_of(item, "results_location") or "",
        announced_at=None if announced_at is None else float(announced_at["N"]),
    )


def zero_sums() -> dict[str, int]:
    return dict.fromkeys((*COUNTERS, "done"), 0)


def shard_sk(shard: int) -> str:
    return f"{SHARD_PREFIX}{shard:04d}"


def group_from_item(item: Mapping[str, Any]) -> GroupRecord:
    return GroupRecord(
        job_id=str(item["job_id"]["S"]),
        group_id=str(item["group_id"]["S"]),
        status=str(item["status"]["S"]),
        key=str(item["key"]["S"]),
        files=int_of(item, "files"),
        bytes=int_of(item, "bytes"),
        sha256=opt_str_of(item, "sha256"),
        attempts=int_of(item, "attempts"),
        error=opt_str_of(item, "error"),
        started_at=float(item["started_at"]["N"]) if "started_at" in item else 0.0,
        finished_at=float(item["finished_at"]["N"]) if "finished_at" in item else 0.0,
        change=opt_str_of(item, "change"),
        validators=unpack_validators(item.get("validators")),
        missing=tuple(str(entry["S"]) for entry in item.get("missing", {}).get("L", [])),
    )


def _pack_validators(validators: tuple[Validator, ...]) -> dict[str, Any]:
    """Validators as compact JSON (``[[url, etag, last_modified], ...]``); zlib-compressed when big."""
    text = json.dumps([[v.url, v.etag, v.last_modified] for v in validators], separators=(",", ":"))
    if len(text) > _COMPRESS_VALIDATORS_OVER_BYTES:
        return {"B": zlib.compress(text.encode(), 6)}
    return {"S": text}


def unpack_validators(value: Mapping[str, Any] | None) -> tuple[Validator, ...]:
    if not value:
        return ()
    text = zlib.decompress(value["B"]).decode() if "B" in value else str(value["S"])
    return tuple(Validator(url=url, etag=etag, last_modified=modified) for url, etag, modified in json.loads(text))


def str_value(value: str) -> dict[str, str]:
    return {"S": value}


def num_value(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(int(value))}


def int_of(item: Mapping[str, Any], name: str) -> int:
    value = item.get(name)
    return int(value["N"]) if value else 0


def opt_str_of(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value["S"])
