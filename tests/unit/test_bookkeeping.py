"""Names inside ``_jobs/``: job ids checked, group and message ids encoded so they never form a path."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanfetch.adapters.local_store import LocalStore
from fanfetch.app.jobs import results_key_for
from fanfetch.app.services import GroupContext
from fanfetch.app.worker import run_batch
from fanfetch.core.bookkeeping import encode_component, failure_record_key, is_valid_job_id, job_dir_name
from fanfetch.core.fingerprint import fingerprint_group
from fanfetch.core.messages import decode_message, encode_message
from fanfetch.core.models import Group, MergeMode, Source
from fanfetch.errors import MessageError, PermanentFetchError
from tests.fakes import FakeClock, FakeFetcher


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


class _RecordingDeadLetters:
    def __init__(self):
        self.reasons: list[dict] = []

    def dead_letter(self, body, reason):
        self.reasons.append(dict(reason))


def test_a_group_id_shaped_like_a_path_cannot_overwrite_another_groups_output(tmp_path) -> None:
    # GIVEN a local destination holding the output of group "victim"
    store = LocalStore(str(tmp_path))
    victim = Group(group_id="victim", sources=(Source("https://h.example/v"),), key="stations/victim.json",
                   merge=MergeMode.CONCAT)
    spooled = tmp_path / "v"
    spooled.write_bytes(b"precious\n")
    store.put_file(victim.key, str(spooled), sha256="s", fingerprint=fingerprint_group(victim))
    # AND a message whose group id climbs out of the failure-record folder, and fails permanently
    url = "https://h.example/404"
    attacker = Group(group_id="../../../stations/victim", sources=(Source(url),), key="x.csv", merge=MergeMode.CONCAT)
    record = {"messageId": "m1", "body": encode_message("job7", attacker), "attributes": {}}
    dead_letters = _RecordingDeadLetters()
    with ThreadPoolExecutor(max_workers=2) as files:
        ctx = GroupContext(fetcher=FakeFetcher({url: PermanentFetchError(url, "HTTP 404", status=404)}), store=store,
                           files=files, clock=FakeClock(), spool_dir=store.ensure_tmp_dir())
        outcome = run_batch([record], ctx, groups_in_flight=1, deadline=None, dead_letters=dead_letters)
    # WHEN its failure record is written
    # THEN the victim's output is untouched, and the record sits in the job's failed/ folder under an encoded name
    assert outcome.verdicts["m1"].dead_lettered
    assert (tmp_path / "stations" / "victim.json").read_bytes() == b"precious\n"
    key = failure_record_key("job7", attacker.group_id)
    assert key == "_jobs/job7/failed/%2E%2E%2F%2E%2E%2F%2E%2E%2Fstations%2Fvictim.json"
    assert (tmp_path / key).is_file() and dead_letters.reasons[0]["fanfetch-failure-record"] == key
