"""``semtune trial``: a real run from a YAML file, and invalid configs as one-line errors."""

import json
import subprocess
import sys

import pytest

SEMTUNE = [sys.executable, "-m", "orchestrator.cli"]


def _run(args, cwd):
    return subprocess.run(SEMTUNE + args, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_trial_runs_and_writes_metrics(tmp_path, synthetic_cifar_dir):
    cfg = tmp_path / "trial.yaml"
    cfg.write_text(f"""
method: proposed
data: {{search_dirs: [{synthetic_cifar_dir}], train_per_class: 8, tune_per_class: 4}}
classifier: {{arch: resnet20, checkpoint: null, finetune_epochs: 1, cache_dir: {tmp_path / "classifiers"}}}
codec: {{width: 8, kn: 1/12}}
stage1: {{epochs: 1, lr: 0.003}}
stage2: {{epochs: 1, lr: 0.001}}
batch_size: 16
""".replace("1/12", "0.0833333"))
    out = tmp_path / "out"
    r = _run(["trial", str(cfg), "--out", str(out), "--set", "codec.kn=0.1666667", "--set", "loss.tau=0.5"], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    assert lines[0]["kn_achieved"] == pytest.approx(1 / 6)
    final = json.loads((out / "final.json").read_text())
    assert final["status"] == "completed" and final["epoch"] == 2
    assert json.loads((out / "config.json").read_text())["loss"]["tau"] == 0.5
    assert (out / "checkpoint" / "state.pt").is_file()
    assert "epoch 1/2 (stage 1)" in r.stderr  # the per-epoch progress bar
    # resuming a finished run does no more work and keeps one line per epoch
    r2 = _run(["trial", str(cfg), "--out", str(out), "--resume", "--set", "codec.kn=0.1666667",
               "--set", "loss.tau=0.5"], tmp_path)
    assert r2.returncode == 0, r2.stderr
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("content, expected", [
    ("method: nope\n", "error: method: Input should be"),
    ("codec: {kn: 0}\n", "error: codec.kn: Input should be greater than 0"),
    ("codec: {kn: 0.0001}\n", "error: codec.kn: k/n = 0.0001 is unreachable"),
    ("loss: {alpha1: 1.5}\n", "error: loss.alpha1"),
    ("loss: {tau: -1}\n", "error: loss.tau: Input should be greater than 0"),
    ("bogus: 1\n", "error: bogus: unknown field"),
    ("- a\n- b\n", "error: <root>: expected a mapping"),
    ("a: [\n", "error: <file>: not valid YAML at line 2"),
    ("!!python/object/apply:os.system ['echo hi']\n", "error: <file>: unsupported YAML tag"),
    ("", "error: <file>:"),
])
def test_invalid_trial_config_is_one_clear_line(tmp_path, content, expected):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(content)
    r = _run(["trial", str(cfg), "--out", str(tmp_path / "o")], tmp_path)
    assert r.returncode == 2
    assert expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert all(line.startswith("error: ") for line in r.stderr.strip().splitlines())


def test_missing_config_file(tmp_path):
    r = _run(["trial", str(tmp_path / "nope.yaml")], tmp_path)
    assert r.returncode == 2 and "error: <file>:" in r.stderr and "does not exist" in r.stderr
