"""When Tune snapshots a study: once per trial, when the trial is added, and on Tune's clock; not on
every checkpoint.

A Tune experiment snapshot holds every trial's state and the searcher's, so it grows with the
study. Ray 2.60 forces one each time a trial has saved ``num_to_keep`` checkpoints since the last
(``_ExperimentCheckpointManager``; its own TODO calls this "a non-performant workaround"): with
``num_to_keep=1`` and a checkpoint per epoch, one snapshot per trial-epoch, each as large as the
study so far, so the driver's cost per trial grew with the number of trials (``bench/scale.py``).

What a restore needs from the snapshot is every trial the searcher has asked Optuna for and that
may have started: a trial missing from it would be an orphan, its Optuna verdict and MLflow run
belonging to no Tune trial. So :class:`SnapshotPerTrial` forces a snapshot in the controller step
that adds a trial (the step that asked the searcher), before the trial can start. Everything later
is made good on restore from what the study already holds (:mod:`orchestrator.tune.restore`): a
lagging checkpoint from the trial's newest, a trial that ended after the snapshot from the verdict
Optuna was told, and a trial that a scheduler stopped meanwhile is stopped again at its first result
(both schedulers keep their decisions). Between trial additions Tune snapshots on its own clock
(``TUNE_GLOBAL_CHECKPOINT_S``, default: at least 10 s apart and about 5 % of the time).

Ray has no option for this. The schedulers are the one component Tune hands its controller to, so
the policy is a scheduler mixin that sets two fields of the controller's checkpoint manager; if a
Ray version moves them, it fails loudly instead of silently snapshotting per checkpoint again.
"""

from __future__ import annotations

import ray

_FIELDS = ("_sync_every_n_trial_checkpoints", "_should_force_sync_up")


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


class SnapshotPerTrial:
    """Scheduler mixin (put it before the Tune scheduler class): a snapshot in the step that adds a
    trial, none forced by checkpoints."""

    def on_trial_add(self, tune_controller, trial) -> None:
        manager = _checkpoint_manager(tune_controller)
        if manager is not None:
            manager._sync_every_n_trial_checkpoints = None  # falsy: Tune's per-checkpoint forcing is off
            manager._should_force_sync_up = True  # taken at the end of this controller step
        super().on_trial_add(tune_controller, trial)
