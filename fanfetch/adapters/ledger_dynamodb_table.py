"""Reading the DynamoDB ledger's table: strongly consistent gets, paged queries (a job's counter sums, its shards
still short, its groups), and botocore errors translated into ``fanfetch.errors.LedgerError`` by error code.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fanfetch.adapters.aws_errors import AWS_PERMANENT_CODES, classify_by_code, error_code
from fanfetch.adapters.ledger_dynamodb_items import (
    GROUP_PREFIX,
    JOB_SK,
    LISTED,
    PARTITION_KEY,
    SHARD_PREFIX,
    SORT_KEY,
    group_from_item,
    int_of,
    job_pk,
    shards_pk,
    str_value,
    zero_sums,
)
from fanfetch.core.ledger import GroupRecord
from fanfetch.errors import LedgerError, PermanentLedgerError, RetryableLedgerError

__all__ = ["classify_ledger_error", "error_code", "LedgerTable"]

_PERMANENT_CODES = AWS_PERMANENT_CODES | {
    "ItemCollectionSizeLimitExceededException",
    "SerializationException",
    "IdempotentParameterMismatchException",
}


def classify_ledger_error(exc: BaseException, what: str) -> LedgerError:
    """Translate a botocore error into our tree, by error code (never by message text)."""
    return classify_by_code(exc, what, permanent_codes=_PERMANENT_CODES, permanent=PermanentLedgerError,
                            retryable=RetryableLedgerError)


class LedgerTable:
    """The ledger table's reads, each strongly consistent (a finish or a results manifest follows a verdict)."""

    def __init__(self, client: Any, table_name: str, *, page_size: int | None = None):
        self._client = client
        self.table_name = table_name
        self._page_size = page_size  # Query Limit (tests: force pagination); None: DynamoDB's 1 MB pages

    def get_item(self, pk: str, sk: str, what: str) -> dict[str, Any] | None:
        try:
            response = self._client.get_item(
                TableName=self.table_name, Key={PARTITION_KEY: str_value(pk), SORT_KEY: str_value(sk)},
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as exc:
            raise classify_ledger_error(exc, f"{what} in {self.table_name}") from exc
        item = response.get("Item")
        return dict(item) if item else None

    def get_job_item(self, job_id: str) -> dict[str, Any] | None:
        return self.get_item(job_pk(job_id), JOB_SK, f"read job {job_id!r}")

    def query(self, params: dict[str, Any], what: str) -> Iterator[dict[str, Any]]:
        for page in self._pages(params, f"{what} in {self.table_name}"):
            yield from page.get("Items", [])

    def _pages(self, params: dict[str, Any], what: str) -> Iterator[dict[str, Any]]:
        """The Query's pages, one request each (``LastEvaluatedKey`` carried over)."""
        start: Mapping[str, Any] | None = None
        while True:
            page_params = dict(params, ExclusiveStartKey=start) if start else params
            try:
                page = self._client.query(**page_params)
            except (ClientError, BotoCoreError) as exc:
                raise classify_ledger_error(exc, what) from exc
            yield page
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def sums(self, job_id: str) -> dict[str, int]:
        """The job's counters: the sum over its shards (one strongly consistent Query)."""
        sums = zero_sums()
        params = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
            "ExpressionAttributeNames": {"#pk": PARTITION_KEY, "#sk": SORT_KEY},
            "ExpressionAttributeValues": {":pk": str_value(shards_pk(job_id)), ":prefix": str_value(SHARD_PREFIX)},
            "ConsistentRead": True,
        }
        for item in self.query(params, f"read the counters of job {job_id!r}"):
            for name in sums:
                sums[name] += int_of(item, name)
        return sums

    def shards_short(self, job_id: str) -> int:
        """How many of the job's shards have fewer verdicts than they expect (a count, no items returned)."""
        params = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
            "FilterExpression": "#done < #expected",
            "ExpressionAttributeNames": {"#pk": PARTITION_KEY, "#sk": SORT_KEY, "#done": "done",
                                         "#expected": "expected"},
            "ExpressionAttributeValues": {":pk": str_value(shards_pk(job_id)), ":prefix": str_value(SHARD_PREFIX)},
            "ConsistentRead": True,
            "Select": "COUNT",
        }
        pages = self._pages(params, f"count the open shards of job {job_id!r}")
        return sum(int(page.get("Count", 0)) for page in pages)

    def groups(self, job_id: str, *, status: str | None, projected: bool) -> Iterator[GroupRecord]:
        names = {"#pk": PARTITION_KEY, "#sk": SORT_KEY}
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":pk": str_value(job_pk(job_id)), ":prefix": str_value(GROUP_PREFIX)},
            # Strongly consistent: the results manifest is written right after the last verdict.
            "ConsistentRead": True,
        }
        if self._page_size:
            params["Limit"] = self._page_size
        if status is not None:
            params["FilterExpression"] = "#status = :status"
            names["#status"] = "status"
            params["ExpressionAttributeValues"][":status"] = str_value(status)
        if projected:
            names.update({f"#a{i}": name for i, name in enumerate(LISTED)})
            params["ProjectionExpression"] = ", ".join(f"#a{i}" for i in range(len(LISTED)))
        return (group_from_item(item) for item in self.query(params, f"list groups of job {job_id!r}"))
