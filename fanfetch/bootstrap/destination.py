"""Where a run writes: a local folder or ``s3://bucket/prefix``, and a local run's SQLite ledger file beside its
outputs (``fanfetch run`` opens it, ``fanfetch report`` reads it)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fanfetch.adapters.local_store import LocalStore
from fanfetch.bootstrap.aws import aws_client
from fanfetch.core.locations import parse_s3_uri
from fanfetch.ports import ObjectStore

if TYPE_CHECKING:  # adapters are imported where they are built (sqlite3 and boto3 only when used)
    from fanfetch.adapters.ledger_sqlite import SqliteLedger

__all__ = ["build_store", "Destination", "build_destination", "local_ledger_path", "open_local_ledger",
           "open_ledger_file"]


def build_store(dest: str, *, endpoint_url: str | None = None) -> ObjectStore:
    """A local folder, or ``s3://bucket/prefix`` (real AWS or any S3-compatible endpoint)."""
    if dest.startswith("s3://"):
        from fanfetch.adapters.s3 import S3Store

        bucket, prefix = parse_s3_uri(dest)
        return S3Store(aws_client("s3", endpoint_url=endpoint_url), bucket, prefix)
    return LocalStore(dest)


@dataclass(frozen=True)
class Destination:
    """Where a run writes: its store and, for a local folder, its own ledger file and a spool folder beside the
    outputs (an S3 destination has neither: no ledger by default, downloads spool in the system temp folder)."""

    store: ObjectStore
    ledger_path: str | None = None  # a local run's ledger: DEST/_jobs/ledger.sqlite
    make_spool_dir: Callable[[], str | None] = lambda: None  # made when asked (after pre-flight), not at build


def build_destination(dest: str, *, endpoint_url: str | None = None) -> Destination:
    """The store of ``dest`` (``build_store``) with what a local folder keeps beside it."""
    store = build_store(dest, endpoint_url=endpoint_url)
    if isinstance(store, LocalStore):
        return Destination(store, ledger_path=local_ledger_path(dest), make_spool_dir=store.ensure_tmp_dir)
    return Destination(store)


def local_ledger_path(dest: str) -> str:
    """Where a local run into the folder ``dest`` keeps its ledger: ``DEST/_jobs/ledger.sqlite``."""
    from fanfetch.adapters.ledger_sqlite import default_ledger_path

    return default_ledger_path(dest)


def open_local_ledger(path: str | None) -> tuple[SqliteLedger | None, list[str]]:
    """A local run's SQLite ledger at ``path`` (its folder made), or None and the one-line problem when it does
    not open (pre-flight names it); (None, []) without a path."""
    from fanfetch.adapters.ledger_sqlite import SqliteLedger
    from fanfetch.errors import FanfetchError

    if path is None:
        return None, []
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return SqliteLedger(path), []
    except (FanfetchError, OSError) as exc:
        return None, [f"ledger {path} does not open: {exc}"]


def open_ledger_file(path: str) -> SqliteLedger:
    """An existing SQLite ledger at ``path``, for reading (raises LedgerError when it does not open)."""
    from fanfetch.adapters.ledger_sqlite import SqliteLedger

    return SqliteLedger(path)
