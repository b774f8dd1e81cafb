"""``python -m bench.replay``: replayed studies through the real orchestrator, results in the agreed JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.synthetic_curves import write_curve_table

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_replay_benchmark_writes_the_comparison(tmp_path):
    table = write_curve_table(tmp_path / "curves.parquet", methods=("proposed",))
    out = tmp_path / "replay.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.replay", "--seeds", "2", "--trials", "6", "--strategies", "moasha+tpe,random",
         "--table", str(table), "--out", str(out), "--figure", str(tmp_path / "hv.png")],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["reference"] == "grid" and result["seeds"] == 2 and result["default"] in result["strategies"]
    for name in ("grid", "moasha+tpe", "random"):
        s = result["strategies"][name]
        assert set(s) >= {"median_hv_fraction", "iqr_hv_fraction", "median_epoch_fraction"}
        assert 0 <= s["median_hv_fraction"] <= 1 and 0 < s["median_epoch_fraction"] <= 1
        assert s["iqr_hv_fraction"][0] <= s["median_hv_fraction"] <= s["iqr_hv_fraction"][1]
    configurations = {a["configurations"] for a in result["grid"].values()}
    assert configurations == {72}  # 4 x 3 x 3 x 2 per condition
    # 6 trials of 72 configurations run at most 6 x 6 epochs of the grid's 72 x 6, and at least 6 x 5 (no
    # trial is stopped before stage 2's first epoch, the 5th); unpruned random runs 0.9 x 6 trials,
    # rounded to 5, in full
    assert 6 * 5 / (72 * 6) - 1e-4 <= result["strategies"]["moasha+tpe"]["median_epoch_fraction"] <= 6 / 72 + 1e-4
    random_fraction = result["strategies"]["random"]["median_epoch_fraction"]
    assert random_fraction == pytest.approx(5 / 72, abs=1e-4)  # written to 4 decimals
    # why a search misses the front: the table's noise and how early epochs rank the front's members
    assert set(result["table_noise"]) == set(result["grid"])
    assert all(0 < a["accuracy_standard_error"] < 1 for a in result["table_noise"].values())
    for arm, by_epoch in result["front_foresight"].items():
        assert sorted(map(int, by_epoch)) == list(range(1, 7))
        assert all(0 < share <= 1 for shares in by_epoch.values() for share in shares)
        assert all(share == pytest.approx(min(by_epoch["6"])) for share in by_epoch["6"])  # the front ranks first
    assert (tmp_path / "hv.png").stat().st_size > 1000
    assert "moasha+tpe (default)" in proc.stdout
