"""When Tune snapshots a study: when a trial is added while snapshots are cheap, and on Tune's clock;
never because a trial checkpointed.

A Tune experiment snapshot holds every trial's state and the searcher's, so it grows with the
study. Ray 2.60 forces one each time a trial has saved ``num_to_keep`` checkpoints since the last
(``_ExperimentCheckpointManager``; its own TODO calls this "a non-performant workaround"): with
``num_to_keep=1`` and a checkpoint per epoch, one snapshot per trial-epoch, each as large as the
study so far. That forcing is switched off here.

A snapshot in the step that adds a trial would keep every trial the searcher asked for in Tune's
record; one per trial still costs O(N²) over a study (at 1,000 trials, 31 % of the driver's time,
``bench/scale.py``). So an added trial forces a snapshot only while they are cheap: when the time
since the last one is at least its duration over :data:`DEFAULT_SHARE` (5 %, the rule of Tune's own
clock), and always for the first trial of a run (a restore copies Tune's record of a trial). A trial
added between two snapshots is not lost when the driver dies: Optuna holds its Tune trial id and
config from the moment it was asked, and the restore adopts it into Tune's record
(:func:`orchestrator.tune.restore.adopt_orphaned_trials`). Everything else that happened after the
snapshot is made good on restore too (:mod:`orchestrator.tune.restore`). Between trial additions
Tune snapshots on its own clock (``TUNE_GLOBAL_CHECKPOINT_S``: at least 10 s apart, about 5 %).

``SEMTUNE_SNAPSHOT_SHARE`` sets the share (0: only the first trial forces one; the resume tests use
it so that every interruption leaves trials to adopt).

Ray has no option for this. The schedulers are the one component Tune hands its controller to, so
the policy is a scheduler mixin that sets fields of the controller's checkpoint manager; if a Ray
version moves them, it fails loudly instead of silently snapshotting per checkpoint again.
"""

from __future__ import annotations

import os
import time

import ray

DEFAULT_SHARE = 0.05  # of the driver's time that snapshots forced by trial additions may take
SHARE_ENV = "SEMTUNE_SNAPSHOT_SHARE"
_FIELDS = ("_sync_every_n_trial_checkpoints", "_should_force_sync_up", "_last_save_time", "sync_up_experiment_state")
_LAST_SECONDS = "_semtune_last_snapshot_s"  # set on the manager by the timing wrapper


def snapshot_share() -> float:
    return float(os.environ.get(SHARE_ENV, DEFAULT_SHARE))


def _checkpoint_manager(controller):
    """The experiment checkpoint manager of ``controller`` (a ``TuneController`` or the wrapper Tune
    passes to some scheduler hooks); ``None`` for no controller (a scheduler driven by a test)."""
    if controller is None:
        return None
    controller = getattr(controller, "_tune_controller", controller)  # TrialRunnerWrapper
    manager = getattr(controller, "_checkpoint_manager", None)
    if manager is None or not all(hasattr(manager, f) for f in _FIELDS):
        raise RuntimeError(f"ray {ray.__version__}: the Tune controller no longer has the checkpoint manager fields "
                           f"{_FIELDS} that semtune's snapshot policy sets (orchestrator/tune/snapshots.py)")
    return manager


def _time_snapshots(manager) -> None:
    """Record on ``manager`` how long its last snapshot took (Tune keeps only a period derived from it)."""
    if hasattr(manager, _LAST_SECONDS):
        return
    setattr(manager, _LAST_SECONDS, 0.0)
    original = manager.sync_up_experiment_state

    def timed(*args, **kwargs):
        before, start = manager._last_save_time, time.monotonic()
        original(*args, **kwargs)
        if manager._last_save_time != before:
            setattr(manager, _LAST_SECONDS, time.monotonic() - start)

    manager.sync_up_experiment_state = timed


class SnapshotPolicy:
    """Scheduler mixin (put it before the Tune scheduler class): none forced by checkpoints; one in the
    step that adds a trial while snapshots take under :func:`snapshot_share` of the time."""

    _forced_first = False

    def on_trial_add(self, tune_controller, trial) -> None:
        manager = _checkpoint_manager(tune_controller)
        if manager is not None:
            manager._sync_every_n_trial_checkpoints = None  # falsy: Tune's per-checkpoint forcing is off
            _time_snapshots(manager)
            if self._snapshot_due(manager):
                manager._should_force_sync_up = True  # taken at the end of this controller step
        super().on_trial_add(tune_controller, trial)

    def _snapshot_due(self, manager) -> bool:
        if not self._forced_first:
            self._forced_first = True
            return True
        share = snapshot_share()
        return share > 0 and time.monotonic() - manager._last_save_time >= getattr(manager, _LAST_SECONDS) / share
