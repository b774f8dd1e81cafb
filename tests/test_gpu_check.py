"""``bench/gpu_check.sh``: its CPU dry run end to end, and the pieces that decide what the GPU run does.

The GPU run itself happens only on a lent machine (bench/README.md); these tests make sure it gets
there with a script that works: every part runs here on CPU, tiny, on synthetic data.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


@pytest.mark.slow
def test_dry_run_runs_every_part_and_writes_the_json(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    # A budget well above the dry run's 55 s: the test checks that every part runs, not this machine's speed
    # (under load, the budget guard skipped `compile` with "14 s left, 15 s needed").
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run", "--budget-s", "150",
                           "--json", str(out), "--out", str(tmp_path / "out")],
                          cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())

    env_ = res["environment"]
    assert env_["dry_run"] is True and env_["device"] == "cpu" and env_["torch"] and env_["date"]
    assert set(env_["machine"]) >= {"node", "platform", "cpus", "python"}
    parts = res["parts"]
    assert set(parts) == {"cuda_tests", "speed", "concurrent", "compile", "trial"}, (parts.keys(), res["skipped"])
    assert not [name for name, p in parts.items() if p.get("error")]
    tests = parts["cuda_tests"]
    assert tests["failed"] == 0 and tests["passed"] == 0 and tests["skipped"] >= 8  # no GPU: all skip
    for stage in ("stage1", "stage2"):
        row = parts["speed"][stage]
        assert row["ours"]["mean"] > 0 and row["plain"]["mean"] > 0 and row["speedup"] > 0
        assert 0 < row["ours"]["mfu"] <= 1.5
        assert parts["compile"][f"{stage}_compiled"]["mean"] > 0 and parts["compile"][f"{stage}_eager"]["mean"] > 0
    rows = parts["concurrent"]["rows"]
    assert [r["processes"] for r in rows] == [1, 2] and all(r["ok"] == r["processes"] for r in rows)
    assert all(r["aggregate_images_per_s"] > 0 for r in rows)
    trial = parts["trial"]
    assert trial["error"] is None and [m["stage"] for m in trial["epochs"]] == [1, 2]
    assert all(0 <= m["accuracy"] <= 1 and m["psnr"] > 0 and m["epoch_s"] > 0 for m in trial["epochs"])
    assert trial["projected_full_s"] > 0
    assert res["elapsed_s"] <= res["budget_s"] + 30
    # the table is the last thing printed, and a copy of both goes to --out
    assert proc.stdout.rstrip().endswith(res["table"].rstrip())
    assert "stage1 images/s" in res["table"] and "2 trials at once" in res["table"]
    assert (tmp_path / "out" / "gpu_check.txt").exists() and len(list((tmp_path / "out").glob("*.json"))) == 1


def test_missing_pydantic_without_wheels_fails_in_one_line(tmp_path: Path, monkeypatch) -> None:
    import gpu_check

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pydantic" else real(name, *a))
    monkeypatch.setattr(gpu_check.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "")
    with pytest.raises(SystemExit) as exc:
        gpu_check.ensure_packages(tmp_path)
    msg = str(exc.value.code)
    assert msg.startswith("error: pydantic not importable") and "\n" not in msg and ".whl" in msg


def test_carried_wheels_are_unpacked_when_a_package_is_missing(tmp_path: Path, monkeypatch) -> None:
    import zipfile

    import gpu_check

    (tmp_path / ".whl").mkdir()
    with zipfile.ZipFile(tmp_path / ".whl" / "fakepkg-1.0-py3-none-any.whl", "w") as z:
        z.writestr("fakepkg/__init__.py", "")
    real = importlib.util.find_spec
    unpacked = tmp_path / "semtune-gpucheck-site" / "fakepkg"
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (real(name, *a) if unpacked.exists() else None) if name == "pytest"
                        else real(name, *a))
    monkeypatch.setattr(gpu_check.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "")
    assert gpu_check.ensure_packages(tmp_path).startswith("unpacked 1 wheels")
    assert unpacked.is_dir() and os.environ["PYTHONPATH"].startswith(str(tmp_path))


def test_paper_trial_config_follows_the_preset(tmp_path: Path) -> None:
    import gpu_trial

    cfg = gpu_trial.paper_config(tmp_path, tmp_path, (7, 3), dry_run=False)
    assert (cfg.method, cfg.codec.arch, cfg.codec.width, cfg.classifier.arch) == ("proposed", "paper", 256, "resnet56")
    assert (cfg.batch_size, cfg.stage1.lr, cfg.stage2.lr, cfg.stage1.epochs, cfg.stage2.epochs) == (128, 0.01, 1e-4, 7, 3)
    assert cfg.data.tune_per_class == 500 and cfg.data.final_score and cfg.channel.snr_db == 20
    assert cfg.alpha1 == cfg.kn_achieved and cfg.loss.contrastive == "eq7"


@pytest.mark.parametrize("seconds, stage_s, expected", [(300, (10, 10), (20, 10)), (30, (10, 10), (2, 1)),
                                                        (1, (10, 10), (1, 1)), (10_000, (1, 1), (20, 20))])
def test_epochs_fit_the_time_left(seconds, stage_s, expected) -> None:
    import gpu_trial

    assert gpu_trial.plan_epochs(seconds, stage_s) == expected


def test_prepared_parquet_keeps_every_jpeg_byte(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from gpu_check_data import recompress, write_synthetic

    src = write_synthetic(tmp_path / "src", 3, 1)
    info = recompress(src / "train.parquet", tmp_path / "dst" / "train.parquet")
    a, b = pq.read_table(src / "train.parquet"), pq.read_table(tmp_path / "dst" / "train.parquet")
    assert info["rows"] == 30 and b.column("img").combine_chunks().field("bytes").equals(
        a.column("img").combine_chunks().field("bytes"))
    from trainables.data.formats import read_parquet

    x1, y1 = read_parquet(src / "train.parquet")
    x2, y2 = read_parquet(tmp_path / "dst" / "train.parquet")
    assert (x1 == x2).all() and (y1 == y2).all()
