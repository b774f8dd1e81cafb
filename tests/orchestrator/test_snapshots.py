"""Tune snapshots a study once per trial (when it is added), not on every checkpoint (orchestrator.tune.snapshots).

The snapshots of two real Tune runs of the same trials are counted (Tune's ``save_to_dir`` timed by
the scale benchmark's clock): one with Ray's own FIFO scheduler, which snapshots per checkpoint,
and one with semtune's, which must snapshot about once per trial.
"""

from __future__ import annotations

import tempfile
from types import SimpleNamespace

import pytest
import ray
from ray import tune
from ray.tune.schedulers import FIFOScheduler

from bench.scale import SnapshotClock
from orchestrator.tune.schedulers import Unpruned
from orchestrator.tune.snapshots import SnapshotPerTrial

TRIALS, EPOCHS = 4, 6


def _epochs(config):
    for epoch in range(1, EPOCHS + 1):
        with tempfile.TemporaryDirectory() as d:
            tune.report({"epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(d))


def _snapshots(scheduler, storage) -> list[dict]:
    with SnapshotClock() as clock:
        tune.Tuner(
            _epochs,
            tune_config=tune.TuneConfig(num_samples=TRIALS, scheduler=scheduler, max_concurrent_trials=2),
            run_config=tune.RunConfig(storage_path=str(storage), name="snap", verbose=0,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
        ).fit()
    return clock.rows


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_a_snapshot_per_trial_instead_of_per_checkpoint(local_ray, tmp_path):
    tune_own = _snapshots(FIFOScheduler(), tmp_path / "fifo")
    ours = _snapshots(Unpruned(), tmp_path / "ours")
    assert len(tune_own) >= TRIALS * EPOCHS  # the cost being removed: one per checkpoint
    # one per trial added, plus Tune's start, its clock (>= 10 s apart) and its final snapshot
    assert TRIALS <= len(ours) <= TRIALS + 4, ours
    assert ours[-1]["finished"] == TRIALS


def test_the_policy_sets_the_checkpoint_manager_or_fails_loudly():
    manager = SimpleNamespace(_sync_every_n_trial_checkpoints=1, _should_force_sync_up=False)
    scheduler = Unpruned()
    wrapper = SimpleNamespace(_tune_controller=SimpleNamespace(_checkpoint_manager=manager))  # Tune's wrapper
    scheduler.on_trial_add(wrapper, SimpleNamespace())
    assert manager._sync_every_n_trial_checkpoints is None and manager._should_force_sync_up
    manager._should_force_sync_up = False  # Tune took the snapshot
    scheduler.on_trial_complete(SimpleNamespace(_checkpoint_manager=manager), SimpleNamespace(), {})
    assert not manager._should_force_sync_up  # an ended trial is settled on restore from Optuna's verdict
    with pytest.raises(RuntimeError, match="orchestrator/tune/snapshots.py"):
        scheduler.on_trial_add(SimpleNamespace(_checkpoint_manager=object()), SimpleNamespace())
    assert issubclass(Unpruned, SnapshotPerTrial)
