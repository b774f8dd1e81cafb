"""When Tune snapshots a study: each time a trial ends, and on Tune's clock; not on every checkpoint.

A Tune experiment snapshot holds every trial's state and the searcher's, so it grows with the
study. Ray 2.60 forces one each time a trial has saved ``num_to_keep`` checkpoints since the last
(``_ExperimentCheckpointManager``; its own TODO calls this "a non-performant workaround"): with
``num_to_keep=1`` and a checkpoint per epoch, one snapshot per trial-epoch, each as large as the
study so far, so the driver's cost per trial grew with the number of trials (``bench/scale.py``).

A restore needs the snapshot to be exact about which trials *ended* (their runs, Optuna verdicts
and the trials still owed to each arm); a snapshot that lags a running trial's checkpoints is made
good on restore: :func:`orchestrator.tune.experiment.repair_lagging_checkpoints` hands it its newest
checkpoint, and a trial that a scheduler stopped meanwhile is stopped again at its first result
(both schedulers keep their decisions). So :class:`SnapshotOnTrialEnd` forces a snapshot after a
trial ends and drops the per-checkpoint one; between trial ends Tune snapshots on its own clock
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


class SnapshotOnTrialEnd:
    """Scheduler mixin (put it before the Tune scheduler class): a snapshot after every trial end,
    none forced by checkpoints."""

    def on_trial_add(self, tune_controller, trial) -> None:
        manager = _checkpoint_manager(tune_controller)
        if manager is not None:
            manager._sync_every_n_trial_checkpoints = None  # falsy: Tune's per-checkpoint forcing is off
        super().on_trial_add(tune_controller, trial)

    def _snapshot_soon(self, tune_controller) -> None:
        manager = _checkpoint_manager(tune_controller)
        if manager is not None:
            manager._should_force_sync_up = True  # taken at the end of this controller step

    def on_trial_complete(self, tune_controller, trial, result) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self._snapshot_soon(tune_controller)

    def on_trial_error(self, tune_controller, trial) -> None:
        super().on_trial_error(tune_controller, trial)
        self._snapshot_soon(tune_controller)

    def on_trial_remove(self, tune_controller, trial) -> None:
        super().on_trial_remove(tune_controller, trial)
        self._snapshot_soon(tune_controller)
