"""Early stopping for a study: the Tune scheduler a validated ``pruner:`` section names.

``moasha`` ranks the objectives as a Pareto order (:class:`ParetoSuccessiveHalving`); the Optuna
names run that pruner on a weighted sum of the objectives (:class:`OptunaPrunerScheduler`);
``none`` never stops a trial. The rules on a ``pruner:`` section (which names need a
scalarisation, integer reduction factors) live in :class:`orchestrator.spec.PrunerSpec` only.
"""

from __future__ import annotations

import os

import optuna
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.spec import PrunerSpec
from orchestrator.spec.arms import ARM_KEY  # trials compete only within their arm
from orchestrator.spec.sections import OPTUNA_PRUNERS, PRUNER_NAMES
from orchestrator.tune.schedulers.moasha import ParetoSuccessiveHalving
from orchestrator.tune.schedulers.optuna_pruning import OptunaPrunerScheduler
from orchestrator.tune.snapshots import SnapshotPolicy

__all__ = ["OptunaPrunerScheduler", "ParetoSuccessiveHalving", "PRUNER_NAMES", "Unpruned", "build_scheduler"]


class Unpruned(SnapshotPolicy, FIFOScheduler):
    """Every trial runs its whole budget (``pruner: none``)."""


def build_scheduler(pruner: PrunerSpec, *, max_epochs: int, stage1_epochs: int | None = None, storage=None,
                    study_prefix: str = "study", state_path: str | os.PathLike | None = None,
                    seed: int | None = None) -> TrialScheduler:
    """The scheduler for ``pruner`` over trials of ``max_epochs``, the first ``stage1_epochs`` of them
    stage 1 (all of them when not given). Steps given to Optuna are 1-based epochs, so
    ``n_warmup_steps=1`` lets ``median`` prune from the first epoch on. ``state_path`` is MO-ASHA's
    state file; ``storage`` holds the Optuna pruners' shadow studies."""
    if pruner.name == "none":
        return Unpruned()
    grace = pruner.first_rung(max_epochs if stage1_epochs is None else stage1_epochs, max_epochs)
    if pruner.name == "moasha":
        return ParetoSuccessiveHalving(max_epochs=max_epochs, grace_epochs=grace,
                                       reduction_factor=pruner.reduction_factor, state_path=state_path,
                                       group_key=ARM_KEY)
    eta = int(pruner.reduction_factor)
    optuna_pruner = {
        "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(
            min_resource=grace, reduction_factor=eta),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=grace, max_resource=max_epochs, reduction_factor=eta),
        "median": lambda: optuna.pruners.MedianPruner(
            n_startup_trials=pruner.n_startup_trials, n_warmup_steps=pruner.n_warmup_steps),
        "wilcoxon": lambda: optuna.pruners.WilcoxonPruner(),
    }[pruner.name]()
    assert pruner.name in OPTUNA_PRUNERS
    return OptunaPrunerScheduler(optuna_pruner, storage, weights=pruner.scalarization, study_prefix=study_prefix,
                                 seed=seed, group_key=ARM_KEY)
