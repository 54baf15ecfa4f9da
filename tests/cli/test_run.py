"""cli/run.py's process settings for a run."""

from __future__ import annotations

import gc

import pytest

from fanfetch.cli.run import GC_YOUNG_THRESHOLD, collect_cycles_less_often


@pytest.fixture
def thresholds():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_a_run_collects_cycles_less_often_leaving_the_older_generations_alone(thresholds):
    # GIVEN the interpreter's default thresholds
    gc.set_threshold(700, 10, 10)
    # WHEN a run sets up
    collect_cycles_less_often()
    # THEN the young generation is collected after GC_YOUNG_THRESHOLD allocations, the others as before
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)


def test_a_higher_threshold_already_set_is_kept(thresholds):
    # GIVEN a process that collects even less often
    gc.set_threshold(50_000, 20, 5)
    # WHEN a run sets up
    collect_cycles_less_often()
    # THEN its setting stands
    assert gc.get_threshold() == (50_000, 20, 5)
