"""Where a run writes: what a local folder keeps beside its outputs, and an S3 destination not."""

from __future__ import annotations

import os

from fanfetch.bootstrap.destination import build_destination


def test_a_local_destination_keeps_its_ledger_and_spool_beside_the_outputs_and_s3_neither(tmp_path, aws_env):
    # GIVEN a local folder and an S3 destination
    local = build_destination(str(tmp_path / "out"))
    remote = build_destination("s3://bucket/prefix")
    # THEN the folder's ledger is DEST/_jobs/ledger.sqlite, and its spool folder is made only when asked for
    assert local.ledger_path == os.path.join(str(tmp_path / "out"), "_jobs", "ledger.sqlite")
    assert not (tmp_path / "out").exists()
    spool = local.make_spool_dir()
    assert spool is not None and os.path.isdir(spool) and spool.startswith(str(tmp_path / "out"))
    # AND S3 has no default ledger, and downloads spool in the system temp folder
    assert (remote.ledger_path, remote.make_spool_dir()) == (None, None)
