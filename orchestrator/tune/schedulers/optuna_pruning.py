"""Optuna's single-objective pruners as a Ray Tune scheduler, through a declared scalarisation.

``OptunaSearch`` hard-codes ``NopPruner`` and Optuna cannot prune multi-objective studies
(``Trial.report`` raises, optuna issue #3450). To still use ``SuccessiveHalvingPruner``,
``HyperbandPruner``, ``MedianPruner`` or ``WilcoxonPruner``, every arm (condition × method) gets a *shadow*
single-objective study ``{study_prefix}/{arm}/pruning`` (maximised) in the study's Optuna
storage. Each Tune trial has one shadow trial (user attribute ``tune_trial_id``) that receives
``Σ weights[m] · result[m]`` at step ``epoch`` (1-based, so a pruner's ``n_warmup_steps`` /
``min_resource`` count epochs); the pruner's verdict stops the Tune trial.

The storage is the state: after ``Tuner.restore`` the mapping Tune trial ↔ shadow trial and
the stopped trials are rebuilt from it on first use, no side file needed.
"""

from __future__ import annotations

import math
from typing import Mapping

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.outcomes import reached_budget, result_epoch
from orchestrator.tune.schedulers.args import check_arg, is_number
from orchestrator.tune.schedulers.moasha import group_of
from orchestrator.tune.search import TUNE_TRIAL_ATTR
from orchestrator.tune.snapshots import SnapshotPolicy

_SUFFIX = "/pruning"


class OptunaPrunerScheduler(SnapshotPolicy, FIFOScheduler):
    """Stop Tune trials when an Optuna pruner, fed a weighted sum of the objectives, says so.

    Args:
        pruner: an ``optuna.pruners.BasePruner`` (its own arguments decide when it prunes).
        storage: Optuna storage or URL (e.g. ``sqlite:///…/optuna.db``); ``None`` keeps the shadow
            studies in memory, which does not survive ``Tuner.restore``.
        weights: metric → weight of the maximised scalar; non-empty, finite, not all zero.
        study_prefix: shadow studies are named ``f"{study_prefix}/{arm}/pruning"``.
        group_key: config key whose value separates trials that never compete.
        seed: seed of the shadow studies' sampler (nothing is sampled there; reproducibility only).
    """

    def __init__(
        self,
        pruner: optuna.pruners.BasePruner,
        storage: str | BaseStorage | None = None,
        *,
        weights: Mapping[str, float],
        study_prefix: str = "study",
        group_key: str | None = "condition",
        seed: int | None = None,
    ):
        super().__init__()
        check_arg(isinstance(pruner, optuna.pruners.BasePruner), "pruner", pruner, "an optuna.pruners.BasePruner")
        check_arg(storage is None or isinstance(storage, (str, BaseStorage)), "storage", storage,
               "None, a storage URL or an optuna storage")  # fmt: skip
        prefix_ok = isinstance(study_prefix, str) and bool(study_prefix)
        check_arg(prefix_ok, "study_prefix", study_prefix, "a non-empty string")
        self._weights = _checked_weights(weights)
        self._pruner = pruner
        self._storage_arg = storage
        self._prefix = study_prefix
        self._group_key = group_key
        self._seed = seed
        self._reset_cache()

    def _reset_cache(self) -> None:
        self._storage: BaseStorage | None = None
        self._studies: dict[str, optuna.Study] = {}
        self._shadow: dict[str, tuple[str, int]] = {}  # Tune trial id → (group, optuna _trial_id)
        self._stopped: dict[str, int] = {}
        self._loaded = False

    def __getstate__(self):
        # Tune pickles the scheduler with the Tuner: keep the arguments, drop caches and DB handles.
        state = self.__dict__.copy()
        for key in ("_storage", "_studies", "_shadow", "_stopped", "_loaded"):
            state.pop(key)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset_cache()

    # -- what the study reads ------------------------------------------------------------------
    def study_name(self, group: str) -> str:
        return f"{self._prefix}/{group}{_SUFFIX}"

    @property
    def stopped_trials(self) -> dict[str, int]:
        """trial_id → epoch at which the pruner stopped it (rebuilt from the storage)."""
        self._ensure_loaded()
        return dict(self._stopped)

    @property
    def shadow_trials(self) -> dict[str, tuple[str, int]]:
        """Tune trial id → (arm, shadow trial number)."""
        self._ensure_loaded()
        storage = self._get_storage()
        return {tid: (g, storage.get_trial(i).number) for tid, (g, i) in self._shadow.items()}

    def scalar(self, result: Mapping) -> float:
        """``Σ weights[m] · result[m]``; NaN when a metric is missing or not a number."""
        try:
            return float(sum(w * float(result[m]) for m, w in self._weights.items()))
        except (KeyError, TypeError, ValueError):
            return math.nan

    # -- Tune hooks ----------------------------------------------------------------------------
    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        self._ensure_loaded()
        epoch = result_epoch(result)
        if epoch is None or epoch < 0:
            return TrialScheduler.CONTINUE
        group = group_of(trial, self._group_key)
        study, frozen = self._shadow_trial(trial, group)
        finished = reached_budget(result)
        if frozen.state == TrialState.PRUNED:  # e.g. resumed after a restore: the verdict stands
            return TrialScheduler.CONTINUE if finished else TrialScheduler.STOP
        if frozen.state.is_finished():
            return TrialScheduler.CONTINUE
        storage = self._get_storage()
        storage.set_trial_intermediate_value(frozen._trial_id, epoch, self.scalar(result))
        if finished or not study.pruner.prune(study, storage.get_trial(frozen._trial_id)):
            return TrialScheduler.CONTINUE
        study.tell(frozen.number, state=TrialState.PRUNED)
        self._stopped[trial.trial_id] = epoch
        return TrialScheduler.STOP

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict):
        frozen = self._running_shadow(trial)
        if frozen is None:  # never reported, or already told (PRUNED by us)
            return
        value = self.scalar(result) if result else math.nan
        if not math.isfinite(value) and frozen.last_step is not None:
            value = frozen.intermediate_values[frozen.last_step]
        study = self._studies[self._shadow[trial.trial_id][0]]
        if math.isfinite(value):
            study.tell(frozen.number, value)
        else:
            study.tell(frozen.number, state=TrialState.FAIL)

    def on_trial_error(self, tune_controller, trial: Trial):
        # Tune calls this also before retrying a trial (max_failures); it has then already set
        # the trial to ERROR and requeues it, and the shadow trial must stay open for the retry.
        if trial.status == Trial.ERROR:
            return
        frozen = self._running_shadow(trial)
        if frozen is not None:
            self._studies[self._shadow[trial.trial_id][0]].tell(frozen.number, state=TrialState.FAIL)

    def debug_string(self) -> str:
        return f"Using OptunaPrunerScheduler({type(self._pruner).__name__}): num_stopped={len(self._stopped)}"

    def save(self, checkpoint_path: str):
        """Nothing to write: the Optuna storage is the state (an in-memory one is lost on restore)."""

    def restore(self, checkpoint_path: str):
        self._reset_cache()

    # -- storage -------------------------------------------------------------------------------
    def _get_storage(self) -> BaseStorage:
        if self._storage is None:
            arg = self._storage_arg
            self._storage = optuna.storages.InMemoryStorage() if arg is None else optuna.storages.get_storage(arg)
        return self._storage

    def _study(self, group: str) -> optuna.Study:
        if group not in self._studies:
            study = optuna.create_study(
                storage=self._get_storage(),
                study_name=self.study_name(group),
                direction="maximize",
                pruner=self._pruner,
                sampler=optuna.samplers.RandomSampler(seed=self._seed),
                load_if_exists=True,
            )
            if len(study.directions) != 1 or study.direction != optuna.study.StudyDirection.MAXIMIZE:
                raise ValueError(f"Study {study.study_name!r} exists but is not a single maximised objective.")
            self._studies[group] = study
            self._index(group, study.get_trials(deepcopy=False))
        return self._studies[group]

    def _index(self, group: str, trials: list[FrozenTrial]) -> None:
        for t in sorted(trials, key=lambda t: t.number):  # a later shadow (after a FAIL) wins
            tid = t.user_attrs.get(TUNE_TRIAL_ATTR)
            if tid is None:
                continue
            self._shadow[tid] = (group, t._trial_id)
            if t.state == TrialState.PRUNED:
                self._stopped[tid] = t.last_step or 0
            else:
                self._stopped.pop(tid, None)

    def _ensure_loaded(self) -> None:
        """Rebuild the mapping of every existing shadow study of this prefix (after a restore)."""
        if self._loaded:
            return
        self._loaded = True
        head = f"{self._prefix}/"
        for name in optuna.get_all_study_names(self._get_storage()):
            if name.startswith(head) and name.endswith(_SUFFIX) and len(name) > len(head) + len(_SUFFIX):
                self._study(name[len(head) : -len(_SUFFIX)])

    def _shadow_trial(self, trial: Trial, group: str) -> tuple[optuna.Study, FrozenTrial]:
        study = self._study(group)
        entry = self._shadow.get(trial.trial_id)
        if entry is not None:
            frozen = self._get_storage().get_trial(entry[1])
            if frozen.state != TrialState.FAIL:  # a FAILed one cannot reopen: a retry gets a new one
                return study, frozen
        new = study.ask()
        new.set_user_attr(TUNE_TRIAL_ATTR, trial.trial_id)
        new.set_user_attr("arm", group)
        self._shadow[trial.trial_id] = (group, new._trial_id)
        self._stopped.pop(trial.trial_id, None)
        return study, self._get_storage().get_trial(new._trial_id)

    def _running_shadow(self, trial: Trial) -> FrozenTrial | None:
        self._ensure_loaded()
        entry = self._shadow.get(trial.trial_id)
        if entry is None:
            return None
        self._study(entry[0])
        frozen = self._get_storage().get_trial(entry[1])
        return None if frozen.state.is_finished() else frozen


def _checked_weights(weights) -> dict[str, float]:
    check_arg(isinstance(weights, Mapping) and bool(weights), "weights", weights, "a non-empty dict metric -> weight")
    valid = all(isinstance(m, str) and is_number(w) for m, w in weights.items())
    check_arg(valid, "weights", weights, "metric names mapped to finite weights")
    check_arg(any(weights.values()), "weights", weights, "a dict with at least one non-zero weight")
    return {m: float(w) for m, w in weights.items()}
