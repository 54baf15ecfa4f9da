"""CI smoke of the million-group scenario at 2,000 groups: it runs, its loaders agree, every group is stored
and listed in the results manifest; it measures nothing at this size."""

from __future__ import annotations

import pytest

from bench.run import run_scenarios

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("origin", ["auto", "python"])
def test_the_million_scenario_runs_at_smoke_size(tmp_path, origin):
    # GIVEN the scenario at its smoke size / WHEN it runs (ScenarioFailed if a group is missing)
    (table,) = run_scenarios(["million"], smoke=True, workdir=str(tmp_path), prefer_origin=origin)
    # THEN it reports the whole load beside the streamed check and the run, against the limits
    labels = [str(row[0]) for row in table.rows]
    assert labels[0].startswith("load_job") and labels[1].startswith("load_streamed_job")
    assert labels[2].startswith("fanfetch run") and labels[3] == "limit"
    assert len(table.targets) == 2 and table.rows[2][4] == 2_000
