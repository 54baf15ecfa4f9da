"""The local folder store: atomic writes, nothing partial visible, keys kept inside the folder."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from fanfetch.adapters.local_store import TMP_DIR_NAME, LocalStore
from fanfetch.errors import PermanentStoreError


def test_put_file_moves_a_spooled_file_into_place_and_head_reports_size_and_hash(tmp_path):
    # GIVEN a file spooled inside the store's temp folder
    store = LocalStore(str(tmp_path))
    spooled = os.path.join(store.ensure_tmp_dir(), "merged")
    with open(spooled, "wb") as handle:
        handle.write(b"a,b\n1,2\n")
    # WHEN it is stored under a nested key
    stored = store.put_file("stations/1.csv", spooled, sha256="given", fingerprint="v1-f")
    # THEN the output is in place, the temp file is gone, and head reports what was recorded with it
    assert (tmp_path / "stations" / "1.csv").read_bytes() == b"a,b\n1,2\n"
    assert stored.size == 8 and not os.path.exists(spooled)
    head = store.head("stations/1.csv")
    assert (head.size, head.sha256, head.fingerprint) == (8, "given", "v1-f")
    assert os.listdir(tmp_path / TMP_DIR_NAME) == []


def test_put_file_from_elsewhere_copies_and_leaves_the_source(tmp_path):
    source = tmp_path / "elsewhere.bin"
    source.write_bytes(b"x" * 10)
    store = LocalStore(str(tmp_path / "out"))
    store.put_file("k.bin", str(source), sha256="s")
    assert source.exists() and (tmp_path / "out" / "k.bin").read_bytes() == b"x" * 10


def test_a_destination_folder_removed_between_writes_is_created_again(tmp_path):
    # GIVEN a store that has written once, then its whole folder is removed (it is opened, not created, per write)
    store = LocalStore(str(tmp_path / "out" / "nested"))
    store.put_bytes("a.txt", b"first")
    shutil.rmtree(tmp_path / "out")
    # WHEN it writes again
    store.put_bytes("b.txt", b"second")
    # THEN the folder is made again and the object is in place
    assert (tmp_path / "out" / "nested" / "b.txt").read_bytes() == b"second"


def test_a_file_where_the_destination_folder_should_be_is_a_permanent_error(tmp_path):
    (tmp_path / "out").write_bytes(b"not a folder")
    with pytest.raises(PermanentStoreError, match="cannot"):
        LocalStore(str(tmp_path / "out")).put_bytes("a.txt", b"x")


def test_head_of_a_missing_key_is_none(tmp_path):
    assert LocalStore(str(tmp_path)).head("nope.csv") is None


def test_a_key_escaping_the_folder_is_refused(tmp_path):
    with pytest.raises(PermanentStoreError):
        LocalStore(str(tmp_path / "out")).put_bytes("../escape.txt", b"x")
    assert not (tmp_path / "escape.txt").exists()


def test_a_folder_in_the_way_is_a_permanent_error(tmp_path):
    (tmp_path / "k.csv").mkdir()
    with pytest.raises(PermanentStoreError):
        LocalStore(str(tmp_path)).put_bytes("k.csv", b"x")


def test_put_file_never_overwrites_an_output_another_writer_stored(tmp_path):
    from fanfetch.errors import OutputExists

    store = LocalStore(str(tmp_path))
    store.put_bytes("k.csv", b"first")
    other = tmp_path / "other"
    other.write_bytes(b"second")
    with pytest.raises(OutputExists):
        store.put_file("k.csv", str(other), sha256="s")
    assert (tmp_path / "k.csv").read_bytes() == b"first"
    assert os.listdir(tmp_path / TMP_DIR_NAME) == []


def _spool(store: LocalStore, data: bytes) -> str:
    path = os.path.join(store.ensure_tmp_dir(), f"part-{hashlib.sha256(data).hexdigest()[:8]}")
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def test_head_reports_a_fingerprint_only_while_the_file_is_the_one_fanfetch_wrote(tmp_path):
    # GIVEN an output stored with its fingerprint, and a file someone else put beside it
    store = LocalStore(str(tmp_path))
    store.put_file("a.csv", _spool(store, b"ours\n"), sha256="s", fingerprint="v1-a")
    (tmp_path / "b.csv").write_bytes(b"theirs\n")
    assert store.head("a.csv").fingerprint == "v1-a"
    # THEN the other file is reported as not ours (no sha256, no fingerprint), with its size
    foreign = store.head("b.csv")
    assert (foreign.size, foreign.sha256, foreign.fingerprint) == (7, None, None)
    # AND once our output is edited in place it is not ours any more either
    with open(tmp_path / "a.csv", "ab") as handle:
        handle.write(b"edited\n")
    assert store.head("a.csv").fingerprint is None


def test_a_conditional_replace_refuses_a_file_changed_since_it_was_seen(tmp_path):
    from fanfetch.errors import OutputExists

    # GIVEN a stale output whose version a writer read, then another writer replaced it
    store = LocalStore(str(tmp_path))
    store.put_file("k.csv", _spool(store, b"old\n"), sha256="o", fingerprint="v1-old")
    seen = store.head("k.csv").version
    store.put_file("k.csv", _spool(store, b"other\n"), sha256="x", overwrite=True, fingerprint="v1-other")
    # WHEN the first writer replaces what it saw, THEN it is refused and the other output stays
    with pytest.raises(OutputExists):
        store.put_file("k.csv", _spool(store, b"new\n"), sha256="n", fingerprint="v1-new", replaces=seen)
    assert (tmp_path / "k.csv").read_bytes() == b"other\n"
    # AND replacing the current version goes through
    store.put_file("k.csv", _spool(store, b"new\n"), sha256="n", fingerprint="v1-new",
                   replaces=store.head("k.csv").version)
    assert (tmp_path / "k.csv").read_bytes() == b"new\n" and store.head("k.csv").fingerprint == "v1-new"


def test_a_symlink_at_the_output_path_is_never_followed(tmp_path):
    # GIVEN a link planted at an output path, pointing at a file outside the destination
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"secret\n")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "k.csv").symlink_to(outside)
    store = LocalStore(str(dest))
    # THEN head does not read through it (not ours: no sha256, no fingerprint)
    head = store.head("k.csv")
    assert (head.sha256, head.fingerprint) == (None, None)
    # AND a create refuses, a replace swaps the link itself for the file; the target is untouched
    from fanfetch.errors import OutputExists

    with pytest.raises(OutputExists):
        store.put_file("k.csv", _spool(store, b"data\n"), sha256="d")
    store.put_file("k.csv", _spool(store, b"data\n"), sha256="d", fingerprint="v1-d", replaces=head.version)
    assert not (dest / "k.csv").is_symlink() and (dest / "k.csv").read_bytes() == b"data\n"
    assert outside.read_bytes() == b"secret\n"


@pytest.mark.parametrize("link", ["stations", "_jobs", TMP_DIR_NAME])
def test_a_symlinked_folder_under_the_destination_is_refused_with_a_reason(tmp_path, link):
    # GIVEN a folder under the destination that is a link to a folder elsewhere
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / link).symlink_to(elsewhere, target_is_directory=True)
    store = LocalStore(str(dest))
    source = tmp_path / "src"
    source.write_bytes(b"data\n")
    # WHEN an output is stored below it (or deciding "already done" looks there)
    # THEN the store refuses, naming the link, and nothing is written outside the destination
    with pytest.raises(PermanentStoreError, match="symbolic link"):
        if link == "stations":
            store.head("stations/1.csv")
        store.put_file("stations/1.csv", str(source), sha256="s")
    assert list(elsewhere.iterdir()) == []


def test_outputs_and_small_objects_follow_the_umask_and_temp_files_stay_private(tmp_path):
    # GIVEN umask 022
    old = os.umask(0o022)
    try:
        store = LocalStore(str(tmp_path))
        spooled = _spool(store, b"x\n")
        os.chmod(spooled, 0o600)  # as tempfile creates it
        # WHEN an output and a results manifest are stored
        store.put_file("out/k.csv", spooled, sha256="s", fingerprint="v1-k")
        store.put_bytes("_jobs/j/results.jsonl", b"{}\n")
    finally:
        os.umask(old)
    # THEN both are 0644, and the temp folder's leftovers (none) would be private
    assert os.stat(tmp_path / "out" / "k.csv").st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "_jobs" / "j" / "results.jsonl").st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path / TMP_DIR_NAME) == []


def test_a_full_disk_while_writing_the_sidecar_leaves_no_output_visible(tmp_path, monkeypatch):
    # GIVEN a store whose disk fills up right after the output is placed, as its sidecar is written
    import errno

    from fanfetch.errors import RetryableStoreError

    store = LocalStore(str(tmp_path))
    source = tmp_path / "merged.bin"
    source.write_bytes(b"x" * 10)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "_write_small", full)
    # WHEN the output is stored
    with pytest.raises(RetryableStoreError, match="No space left"):
        store.put_file("out/k.bin", str(source), sha256="s", fingerprint="v1-f")
    # THEN the store failed as a whole: no output without its sidecar, no temp file left
    assert not (tmp_path / "out" / "k.bin").exists()
    assert os.listdir(tmp_path / TMP_DIR_NAME) == []
