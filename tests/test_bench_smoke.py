"""``bench/throughput.py --smoke-test`` runs end to end and writes sane JSON (no wall-clock thresholds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_throughput_smoke_writes_positive_rates(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "throughput.py"), "--smoke-test", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(out.read_text())

    assert res["peak_gflops"]["best"] > 0
    for stage in ("stage1", "stage2"):
        row = res["stages"][stage]
        assert row["flops_per_image"] > 0
        for path in ("ours", "plain"):
            assert row[path]["mean"] > 0, (stage, path)
            assert 0 < row[path]["mfu"] <= 1, (stage, path, row[path]["mfu"])
        assert row["ratio"]["of_means"] > 0
    assert "images/s" in proc.stdout
