"""Early stopping for a study: Tune schedulers picked by name, so ``study.yaml`` stays plain data.

``moasha`` ranks the objectives as a Pareto order (:class:`ParetoSuccessiveHalving`); the Optuna
names run that pruner on a weighted sum of the objectives (:class:`OptunaPrunerScheduler`);
``none`` never stops a trial. Every scheduler exposes ``stopped_trials`` except ``none``.
"""

from __future__ import annotations

import os

import optuna
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.schedulers._moasha import ParetoSuccessiveHalving, _check, _is_number
from orchestrator.schedulers._optuna_pruning import OptunaPrunerScheduler

__all__ = ["SCHEDULER_NAMES", "OptunaPrunerScheduler", "ParetoSuccessiveHalving", "build_scheduler"]

_OPTUNA_NAMES = ("successive_halving", "hyperband", "median", "wilcoxon")
SCHEDULER_NAMES = ("moasha", *_OPTUNA_NAMES, "none")


def build_scheduler(
    name: str,
    *,
    max_epochs: int,
    grace_epochs: int = 1,
    reduction_factor: float = 3,
    weights: dict | None = None,
    storage=None,
    study_prefix: str = "study",
    state_path: str | os.PathLike | None = None,
    seed: int | None = None,
    n_startup_trials: int = 2,
    n_warmup_steps: int = 1,
) -> TrialScheduler:
    """The scheduler called ``name`` (one of :data:`SCHEDULER_NAMES`).

    ``state_path`` is used by ``moasha`` only, ``weights``/``storage``/``study_prefix``/``seed`` by
    the Optuna ones (``weights`` required there). Steps given to Optuna are 1-based epochs, so
    ``n_warmup_steps=1`` lets ``median`` prune from the first epoch on.
    """
    if name == "none":
        return FIFOScheduler()
    if name == "moasha":
        return ParetoSuccessiveHalving(
            max_epochs=max_epochs,
            grace_epochs=grace_epochs,
            reduction_factor=reduction_factor,
            state_path=state_path,
        )
    _check(name in _OPTUNA_NAMES, "name", name, f"one of {list(SCHEDULER_NAMES)}")
    _check(weights is not None, "weights", weights, f"a dict metric -> weight ({name!r} prunes a weighted sum)")
    if name == "successive_halving":
        pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=grace_epochs, reduction_factor=_integer_factor(reduction_factor)
        )
    elif name == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(
            min_resource=grace_epochs, max_resource=max_epochs, reduction_factor=_integer_factor(reduction_factor)
        )
    elif name == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps)
    else:
        pruner = optuna.pruners.WilcoxonPruner()
    return OptunaPrunerScheduler(pruner, storage, weights=weights, study_prefix=study_prefix, seed=seed)


def _integer_factor(reduction_factor: float) -> int:
    """Optuna's successive-halving pruners take an integer reduction factor >= 2."""
    ok = _is_number(reduction_factor) and float(reduction_factor).is_integer() and reduction_factor >= 2
    _check(ok, "reduction_factor", reduction_factor, "an integer >= 2 for Optuna's pruners")
    return int(reduction_factor)
