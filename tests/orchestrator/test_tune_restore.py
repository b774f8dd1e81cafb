"""A snapshot that lags its trial's checkpoints (a driver killed between Tune's delete and snapshot)."""

from __future__ import annotations

import json

from orchestrator.tune.experiment import repair_lagging_checkpoints


def _state(tune_dir, dirname: str, checkpoint: str) -> None:
    trial = json.dumps({"relative_logdir": dirname, "status": "RUNNING"})
    runtime = json.dumps({"last_result": str({"epoch": 2, "checkpoint_dir_name": checkpoint})})
    (tune_dir / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": [[trial, runtime]]}))


def test_the_named_but_deleted_checkpoint_is_restored_from_the_newer_one(tmp_path):
    trial = tmp_path / "snr20_kn1-12_proposed_abc"
    (trial / "checkpoint_000003").mkdir(parents=True)
    (trial / "checkpoint_000003" / "state.pt").write_bytes(b"epoch 3")
    _state(tmp_path, trial.name, "checkpoint_000002")
    assert repair_lagging_checkpoints(tmp_path) == 1
    assert (trial / "checkpoint_000002" / "state.pt").read_bytes() == b"epoch 3"
    assert repair_lagging_checkpoints(tmp_path) == 0  # idempotent


def test_a_present_or_unrecoverable_checkpoint_is_left_alone(tmp_path):
    trial = tmp_path / "t"
    (trial / "checkpoint_000001").mkdir(parents=True)
    _state(tmp_path, "t", "checkpoint_000001")
    assert repair_lagging_checkpoints(tmp_path) == 0
    _state(tmp_path, "t", "checkpoint_000004")  # nothing newer than the named one: Tune reports it
    assert repair_lagging_checkpoints(tmp_path) == 0
    assert sorted(p.name for p in trial.iterdir()) == ["checkpoint_000001"]
