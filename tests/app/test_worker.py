"""The worker's batch: a failing group's record goes into its job's ``failed/`` folder under an encoded name."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fanfetch.adapters.local_store import LocalStore
from fanfetch.app.services import GroupContext
from fanfetch.app.worker import run_batch
from fanfetch.core.bookkeeping import failure_record_key
from fanfetch.core.fingerprint import fingerprint_group
from fanfetch.core.messages import encode_message
from fanfetch.core.models import Group, MergeMode, Source
from fanfetch.errors import PermanentFetchError
from tests.fakes import FakeClock, FakeFetcher


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
