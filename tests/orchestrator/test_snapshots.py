"""Tune snapshots a study when a trial is added while snapshots are cheap, not on every checkpoint
(orchestrator.tune.snapshots).

The snapshots of two real Tune runs of the same trials are counted (Tune's ``save_to_dir`` timed by
the scale benchmark's clock): one with Ray's own FIFO scheduler, which snapshots per checkpoint,
and one with semtune's, which must snapshot at most about once per trial.
"""

from __future__ import annotations

import tempfile
import time
from types import SimpleNamespace

import pytest
import ray
from ray import tune
from ray.tune.schedulers import FIFOScheduler

from bench.scale import SnapshotClock
from orchestrator.tune.schedulers import Unpruned
from orchestrator.tune.snapshots import SHARE_ENV, SnapshotPolicy

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
    # at most one per trial added, plus Tune's start, its clock (>= 10 s apart) and its final snapshot
    assert 2 <= len(ours) <= TRIALS + 4, ours
    assert ours[-1]["finished"] == TRIALS


class _Manager(SimpleNamespace):
    """The fields of Tune's experiment checkpoint manager that the policy uses; a save takes ``cost`` s."""

    def sync_up_experiment_state(self, save_fn=None, force=False, wait=False):
        if force or self._should_force_sync_up:
            time.sleep(self.cost)
            self._last_save_time, self._should_force_sync_up = time.monotonic(), False


def test_an_added_trial_forces_a_snapshot_only_while_snapshots_are_cheap(monkeypatch):
    monkeypatch.setenv(SHARE_ENV, "0.05")
    manager = _Manager(_sync_every_n_trial_checkpoints=1, _should_force_sync_up=False,
                       _last_save_time=float("-inf"), cost=0.05)
    scheduler = Unpruned()
    wrapper = SimpleNamespace(_tune_controller=SimpleNamespace(_checkpoint_manager=manager))  # Tune's wrapper
    scheduler.on_trial_add(wrapper, SimpleNamespace())
    assert manager._sync_every_n_trial_checkpoints is None and manager._should_force_sync_up  # the first trial
    manager.sync_up_experiment_state()  # Tune takes it, in 0.05 s: the next is due 1 s later
    scheduler.on_trial_add(wrapper, SimpleNamespace())
    assert not manager._should_force_sync_up
    manager._last_save_time -= 5  # 5 s later
    scheduler.on_trial_add(wrapper, SimpleNamespace())
    assert manager._should_force_sync_up
    manager._should_force_sync_up = False
    scheduler.on_trial_complete(SimpleNamespace(_checkpoint_manager=manager), SimpleNamespace(), {})
    assert not manager._should_force_sync_up  # an ended trial is settled on restore from Optuna's verdict
    monkeypatch.setenv(SHARE_ENV, "0")  # only the first trial of a run forces one
    manager._last_save_time -= 5
    scheduler.on_trial_add(wrapper, SimpleNamespace())
    assert not manager._should_force_sync_up


def test_the_policy_fails_loudly_when_tune_moves_its_fields():
    scheduler = Unpruned()
    with pytest.raises(RuntimeError, match="orchestrator/tune/snapshots.py"):
        scheduler.on_trial_add(SimpleNamespace(_checkpoint_manager=object()), SimpleNamespace())
    assert issubclass(Unpruned, SnapshotPolicy)
