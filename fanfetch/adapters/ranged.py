"""The parts of one large file over several connections: at most N at once, a failed part retried alone,
everything stopped at the first failure that is not the part's own (issue 4 point 3).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future

from fanfetch.adapters.offset_sink import OffsetSink, PartsCancelled
from fanfetch.core.ranges import Part
from fanfetch.errors import RetryableFetchError


def download_parts(
    parts: tuple[Part, ...],
    *,
    sink: OffsetSink,
    connections: int,
    executor: Executor,
    first: Callable[[Part], None],
    fetch_part: Callable[[Part], None],
    back_off: Callable[[RetryableFetchError, int], None],
    max_attempts: int,
    requests_made: list[int],
) -> None:
    """Fetch every part with up to ``connections`` at once; ``requests_made[0]`` counts the
    requests made for parts beyond the probe (also when this raises).

    ``first(parts[0])`` reads part 0 from the response already open in the calling thread (the
    probe); ``fetch_part(part)`` makes one ranged request for a part and writes it through
    ``sink``. A part that fails with RetryableFetchError is retried alone, through
    ``back_off(error, attempt)`` (which raises when the deadline or budget forbids another try),
    at most ``max_attempts`` times. Any other failure cancels the rest and is re-raised here.
    """
    queue = list(reversed(parts[1:]))  # pop() from the end = lowest offset first
    lock = threading.Lock()
    failures: list[BaseException] = []

    def next_part() -> Part | None:
        with lock:
            return queue.pop() if queue and not sink.cancelled.is_set() else None

    def run_part(part: Part, opener: Callable[[Part], None]) -> None:
        attempt = 0
        while True:
            attempt += 1
            with lock:
                requests_made[0] += 1 if opener is fetch_part else 0
            try:
                opener(part)
                return
            except RetryableFetchError as exc:
                if sink.cancelled.is_set():
                    raise PartsCancelled() from None
                if attempt >= max_attempts:
                    raise
                back_off(exc, attempt)
                opener = fetch_part

    def work(opening: Part | None = None) -> None:
        try:
            if opening is not None:
                run_part(opening, first)
            while (part := next_part()) is not None:
                run_part(part, fetch_part)
        except PartsCancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread below
            with lock:
                failures.append(exc)
            sink.cancelled.set()

    helpers = min(connections, len(parts)) - 1
    futures: list[Future[None]] = [executor.submit(work) for _ in range(helpers)]
    work(parts[0])
    for future in futures:
        future.result()
    if failures:
        raise failures[0]

