"""CI smoke of the benchmark suite: every scenario at a tiny size, so ``bench/`` cannot rot.

It checks the scenarios run and verify their outputs (no lost file, right bytes); it measures
nothing. nginx and aria2c are used when installed; without nginx a Python origin stands in.
"""

from __future__ import annotations

import pytest

from bench.common import ScenarioFailed
from bench.run import SCENARIOS, main, run_scenarios

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_scenario_runs_at_smoke_size_and_reports_a_side_by_side_table(name, tmp_path):
    # GIVEN a scenario at its smoke size
    # WHEN it runs (it raises ScenarioFailed if an output is missing or wrong)
    (table,) = run_scenarios([name], smoke=True, workdir=str(tmp_path))
    # THEN it reports its targets, and (but for the memory scenario, which has no peer) a table with
    # fanfetch beside a baseline, a peer or the limit
    text = table.markdown()
    labels = [str(row[0]) + " " + str(row[1]) for row in table.rows]
    if name == "memory":
        assert "peak RSS MiB" in table.columns and len(table.rows) >= 2
    else:
        assert any("fanfetch" in label for label in labels)
        assert any("limit" in label for label in labels)
    assert table.targets and "| " in text


def test_the_small_files_scenario_runs_on_the_python_fallback_origin(tmp_path):
    # GIVEN no nginx (forced): the Python origin stands in
    (table,) = run_scenarios(["small"], smoke=True, workdir=str(tmp_path), prefer_origin="python")
    # THEN the scenario still runs and says which origin served it
    assert "origin: python" in table.notes


def test_a_lost_output_fails_the_scenario(tmp_path, monkeypatch):
    # GIVEN a fanfetch run that silently stores nothing
    import bench.full_scale as full_scale
    from bench.common import ChildRun

    def run_that_stores_nothing(manifest, out, **kw):
        return ChildRun(("fanfetch", "run", manifest), 0, 0.1, 1.0, "", "")

    monkeypatch.setattr(full_scale, "run_fanfetch", run_that_stores_nothing)
    # WHEN the full-scale scenario checks its outputs
    # THEN it fails instead of reporting a number
    with pytest.raises(ScenarioFailed, match="output missing"):
        run_scenarios(["full"], smoke=True, workdir=str(tmp_path))


def test_the_runner_writes_every_table_to_a_file(tmp_path):
    out = tmp_path / "bench.md"
    assert main(["--smoke", "--only", "small,producer", "--out", str(out), "--workdir", str(tmp_path)]) == 0
    text = out.read_text()
    assert text.startswith("Machine: ") and "Small files" in text and "Producer" in text
