"""Packing messages into SendMessageBatch calls within SQS's entry and byte limits."""

from __future__ import annotations

from fanfetch.core.planning import SQS_BATCH_MAX_BYTES, pack_batches


def test_small_messages_go_ten_to_a_call_in_order():
    batches = pack_batches(["m"] * 95)
    assert [len(b) for b in batches] == [10] * 9 + [5]
    assert [i for b in batches for i in b] == list(range(95))


def test_a_call_never_carries_more_than_256_kib_in_total():
    # GIVEN messages of 100 KB each: at most two fit in one call
    bodies = ["x" * 100_000] * 5
    batches = pack_batches(bodies)
    assert [len(b) for b in batches] == [2, 2, 1]
    assert all(sum(len(bodies[i]) for i in b) <= SQS_BATCH_MAX_BYTES for b in batches)


def test_nothing_to_send_means_no_calls():
    assert pack_batches([]) == []
