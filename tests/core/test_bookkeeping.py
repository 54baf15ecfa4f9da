"""Names inside ``_jobs/``: job ids checked, group and message ids encoded so they never form a path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanfetch.app.jobs import results_key_for
from fanfetch.core.bookkeeping import encode_component, is_valid_job_id, job_dir_name
from fanfetch.core.messages import decode_message, encode_message
from fanfetch.core.models import Group, MergeMode, Source
from fanfetch.errors import MessageError


@given(st.text(min_size=1, max_size=600))
def test_an_encoded_id_is_one_safe_component_and_distinct_ids_stay_distinct_ignoring_case(text: str) -> None:
    # GIVEN any id (lone surrogates included)
    encoded = encode_component(text)
    # THEN it is a single, non-hidden path component, short enough for any file system
    assert "/" not in encoded and "\\" not in encoded and not encoded.startswith(".")
    assert encoded not in ("", ".", "..") and len(encoded.encode()) <= 200
    assert all(c.isascii() and (c.isalnum() or c in "%_-~") for c in encoded)
    # AND it differs from the encoding of the same text in another case (case-insensitive disks)
    if text.swapcase() != text:
        assert encode_component(text.swapcase()).casefold() != encoded.casefold()


def test_plain_ids_read_as_they_are_and_path_tricks_are_escaped() -> None:
    assert encode_component("50430") == "50430"
    assert encode_component("station_7-b") == "station_7-b"
    assert encode_component("../../../stations/victim") == "%2E%2E%2F%2E%2E%2F%2E%2E%2Fstations%2Fvictim"
    assert encode_component("A") == "%41" and encode_component("a") == "a"
    long = encode_component("x" * 300)
    assert long.startswith("x" * 150 + "~") and long != encode_component("x" * 301)


@pytest.mark.parametrize("job_id", ["0123456789abcdef", "0123456789abcdef-20261203T080000Z", "job-1", "J"])
def test_job_ids_fanfetch_makes_and_operators_use_are_valid(job_id: str) -> None:
    assert is_valid_job_id(job_id) and results_key_for(job_id) == f"_jobs/{job_id}/results.jsonl"


@pytest.mark.parametrize("job_id", ["", "..", "a/../b", "../x", ".hidden", "_poison", "a b", "x" * 129, "a..b"])
def test_other_job_ids_are_invalid_and_their_folder_can_never_be_a_path(job_id: str) -> None:
    assert not is_valid_job_id(job_id)
    assert job_dir_name(job_id).startswith("~") and "/" not in job_dir_name(job_id)


@pytest.mark.parametrize("job_id", ["../../stations", "a/b", "", "_outputs", "x" * 200])
def test_a_message_with_a_job_id_that_is_not_one_is_poison(job_id: str) -> None:
    group = Group(group_id="g", sources=(Source("https://h.example/1"),), key="k.csv", merge=MergeMode.CSV)
    with pytest.raises(MessageError, match="'job' is not a job id"):
        decode_message(encode_message(job_id, group))
