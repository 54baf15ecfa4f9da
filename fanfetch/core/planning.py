"""Planning: how messages are packed into SendMessageBatch calls.

SQS takes at most 10 entries and 262,144 bytes of payload per SendMessageBatch call; packing
greedily against both limits keeps a 100,000-group job near 10,000 calls.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["SQS_BATCH_MAX_ENTRIES", "SQS_BATCH_MAX_BYTES", "pack_batches"]

SQS_BATCH_MAX_ENTRIES = 10
SQS_BATCH_MAX_BYTES = 262_144  # summed over the entries of one call


def pack_batches(
    bodies: Sequence[str],
    *,
    max_entries: int = SQS_BATCH_MAX_ENTRIES,
    max_bytes: int = SQS_BATCH_MAX_BYTES,
) -> list[list[int]]:
    """Indices of ``bodies`` grouped into batches, in order, each within both SQS limits.

    A single body larger than ``max_bytes`` gets a batch of its own (the message encoder has
    already refused bodies over the per-message limit, which equals the batch limit).
    """
    if max_entries < 1 or max_bytes < 1:
        raise ValueError("max_entries and max_bytes must be positive")
    batches: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for index, body in enumerate(bodies):
        size = len(body.encode("utf-8"))
        if current and (len(current) >= max_entries or current_bytes + size > max_bytes):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(index)
        current_bytes += size
    if current:
        batches.append(current)
    return batches
