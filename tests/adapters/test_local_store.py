"""The local folder store: atomic writes, nothing partial visible, keys kept inside the folder."""

from __future__ import annotations

import hashlib
import os

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
    stored = store.put_file("stations/1.csv", spooled, sha256="given")
    # THEN the output is in place, the temp file is gone, and head hashes the real bytes
    assert (tmp_path / "stations" / "1.csv").read_bytes() == b"a,b\n1,2\n"
    assert stored.size == 8 and not os.path.exists(spooled)
    assert store.head("stations/1.csv").sha256 == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert os.listdir(tmp_path / TMP_DIR_NAME) == []


def test_put_file_from_elsewhere_copies_and_leaves_the_source(tmp_path):
    source = tmp_path / "elsewhere.bin"
    source.write_bytes(b"x" * 10)
    store = LocalStore(str(tmp_path / "out"))
    store.put_file("k.bin", str(source), sha256="s")
    assert source.exists() and (tmp_path / "out" / "k.bin").read_bytes() == b"x" * 10


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
