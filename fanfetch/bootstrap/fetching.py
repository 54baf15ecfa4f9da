"""Downloading: the libcurl fetcher behind the SSRF guard (with the process's URL redaction), the guard's resolver
for pre-flight, the clock, and the context ``process_group`` runs in (file threads, spool budget)."""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from fanfetch.adapters.clock import SystemClock
from fanfetch.adapters.guard import AddressGuard
from fanfetch.adapters.http_settings import HttpSettings
from fanfetch.app.services import GroupContext
from fanfetch.app.spool import SpoolBudget
from fanfetch.core.ledger import Validator
from fanfetch.core.redact import configure_secret_params, parse_secret_params
from fanfetch.ports import Clock, ObjectStore

if TYPE_CHECKING:  # pycurl loads when the fetcher is built, not on import
    from fanfetch.adapters.curl_fetcher import CurlFetcher

__all__ = ["configure_redaction", "build_fetcher", "guard_resolver", "build_clock", "build_group_context"]


def configure_redaction(env: Mapping[str, str] | None = None) -> None:
    """Redact the query parameters FANFETCH_REDACT_PARAMS names too, in every sink of this process (the producer
    calls it for itself; every process that downloads, through ``build_fetcher``)."""
    configure_secret_params(parse_secret_params((os.environ if env is None else env).get("FANFETCH_REDACT_PARAMS",
                                                                                        "")))


def build_fetcher(
    *,
    concurrency: int,
    allow_hosts: tuple[str, ...] = (),
    max_file_bytes: int | None = None,
    per_host_concurrency: int | None = None,
    per_host_rps: float | None = None,
    clock: Clock | None = None,
) -> CurlFetcher:
    """One libcurl fetcher (connections ≥ concurrency) behind the SSRF guard, polite per host when asked."""
    from fanfetch.adapters.curl_fetcher import CurlFetcher

    configure_redaction()  # every process that downloads (CLI, worker) builds its fetcher here
    settings = HttpSettings(pool_size=max(concurrency, 1), per_host_concurrency=per_host_concurrency,
                            per_host_rps=per_host_rps)
    if max_file_bytes is not None:
        settings = dataclasses.replace(settings, max_file_bytes=max_file_bytes)
    return CurlFetcher(settings, clock=clock or SystemClock(), guard=AddressGuard(allow_hosts=allow_hosts))


def guard_resolver(allow_hosts: Sequence[str]) -> Callable[[str, int], object]:
    """``AddressGuard(allow_hosts).resolve``, looking names up through ``socket.getaddrinfo`` at call time."""
    return AddressGuard(allow_hosts=allow_hosts,
                        resolver=lambda *args, **kwargs: socket.getaddrinfo(*args, **kwargs)).resolve


def build_clock() -> Clock:
    """The real clock (monotonic time and sleep)."""
    return SystemClock()


def build_group_context(
    *,
    fetcher: CurlFetcher,
    store: ObjectStore,
    concurrency: int,
    spool_dir: str | None = None,
    previous: Callable[[str], tuple[str | None, tuple[Validator, ...]]] | None = None,
    spool_max_bytes: int | None = None,
    clock: Clock | None = None,
) -> GroupContext:
    """The context of ``process_group``, with a spool budget measured on the disk that holds ``spool_dir``
    (the system temp folder when None: /tmp in a Lambda), capped at ``spool_max_bytes``."""
    spool = SpoolBudget.for_dir(spool_dir or tempfile.gettempdir(), cap_bytes=spool_max_bytes)
    return GroupContext(
        fetcher=fetcher,
        store=store,
        files=ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="file"),
        clock=clock or SystemClock(),
        spool_dir=spool_dir,
        previous=previous,
        spool=spool,
    )
