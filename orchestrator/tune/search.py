"""Multi-objective search: one Optuna study per channel condition, driven through Ray Tune.

Ray's ``OptunaSearch`` does the asking and telling; this module adds what it lacks here:
- early-stopped trials are told ``PRUNED`` and errored ones ``FAIL`` (upstream tells both
  ``COMPLETE`` with their last, low-fidelity values when they reported anything, which would
  pollute the sampler's population and every front read from the study);
- after a restore, Optuna trials that the restored searcher never heard of (asked after the
  last experiment snapshot, before the driver died) are closed as ``FAIL`` instead of
  staying ``RUNNING`` forever;
- :class:`ConditionRouter` runs one such searcher per condition inside a single Tune run, so
  every condition shares the cluster concurrently and keeps its own named study.
"""

from __future__ import annotations

import logging
import math
import pickle
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

import search_spaces
from orchestrator.objectives import METRICS, MODES
from orchestrator.outcomes import objective_values, reached_budget, result_epoch
from orchestrator.spec import Choices, Condition, FloatRange, IntRange, SamplerSpec, SearchSpace

log = logging.getLogger(__name__)


# -- the space, define-by-run ---------------------------------------------------------------------


class SpaceFunction:
    """Optuna define-by-run space: the method first, then only the parameters that method uses.

    A picklable object (not a closure) because Tune checkpoints the searcher that holds it.
    """

    def __init__(self, space: SearchSpace, methods: list[str]):
        self.space = space.defined()
        self.methods = list(methods)

    def __call__(self, trial) -> dict[str, Any]:
        method = trial.suggest_categorical("method", self.methods) if len(self.methods) > 1 else self.methods[0]
        out: dict[str, Any] = {"method": method}
        for name in search_spaces.METHOD_PARAMETERS[method]:
            if name in self.space:
                out[name] = self._suggest(trial, name, self.space[name])
        return out

    @staticmethod
    def _suggest(trial, name: str, p) -> Any:
        if isinstance(p, FloatRange):
            if p.kn_choice and trial.suggest_categorical(f"{name}_is_kn", [True, False]):
                return "kn"
            return trial.suggest_float(name, p.low, p.high, log=p.log)
        if isinstance(p, IntRange):
            return trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
        if isinstance(p, Choices):
            return trial.suggest_categorical(name, p.choices)
        return p.value  # Fixed


def grid_of(space: SearchSpace, methods: list[str]) -> dict[str, list]:
    """The finite grid GridSampler needs; ValueError if a parameter is a continuous range."""
    grid: dict[str, list] = {"method": list(methods)} if len(methods) > 1 else {}
    for name, p in space.defined().items():
        if isinstance(p, Choices):
            grid[name] = list(p.choices)
        elif isinstance(p, IntRange):
            grid[name] = list(range(p.low, p.high + 1, p.step))
        elif isinstance(p, FloatRange):
            raise ValueError(f"sampler 'grid' needs choices, not a range, for search_space.{name}")
    return grid


class TunedGridSampler(optuna.samplers.GridSampler):
    """GridSampler without its ``study.stop()`` once the grid is covered.

    ``Study.stop`` only works inside ``study.optimize``; here Ray Tune tells the trials, and the
    study's trial budget already ends the search.
    """

    def after_trial(self, study, trial, state, values) -> None:
        pass


def build_sampler(spec: SamplerSpec, seed: int, space: SearchSpace, methods: list[str]) -> optuna.samplers.BaseSampler:
    s = optuna.samplers
    if spec.name == "nsga2":
        return s.NSGAIISampler(population_size=spec.population_size or 50, seed=seed)
    if spec.name == "tpe":
        kw = {} if spec.n_startup_trials is None else {"n_startup_trials": spec.n_startup_trials}
        return s.TPESampler(multivariate=True, group=True, seed=seed, **kw)
    if spec.name == "gp":
        kw = {} if spec.n_startup_trials is None else {"n_startup_trials": spec.n_startup_trials}
        return s.GPSampler(seed=seed, **kw)
    if spec.name == "random":
        return s.RandomSampler(seed=seed)
    return TunedGridSampler(grid_of(space, methods), seed=seed)


# -- one condition's searcher ---------------------------------------------------------------------


MAX_RESAMPLES = 20  # asks per Tune trial before a repeated configuration is accepted (a tiny space)


class ParetoOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that tells Optuna the truth about pruned and failed trials, and does not
    run one configuration twice.

    NSGA-II hands a parent's genes to a child unchanged often enough that, in a space of a few
    choices, a study of 16 trials ran the same configuration twice, and every trial trains with
    the study's seed, so the repeat only reproduced a known result. A suggestion equal to an
    earlier trial's of the same condition is told ``FAIL`` (user attribute ``duplicate_of``; every
    sampler ignores failed trials) and asked again; after :data:`MAX_RESAMPLES` asks the space is
    taken as exhausted and the repeat runs.
    """

    def suggest(self, trial_id: str) -> dict | None:
        for attempt in range(MAX_RESAMPLES):
            params = super().suggest(trial_id)
            ot_trial = self._ot_trials[trial_id]
            twin = self._twin(ot_trial.number, ot_trial.params)
            if twin is None or attempt == MAX_RESAMPLES - 1:
                return params
            ot_trial.set_user_attr("duplicate_of", twin)
            self._ot_study.tell(ot_trial, state=TrialState.FAIL)
            del self._ot_trials[trial_id]  # the next super().suggest asks Optuna for a new trial
        return params

    def _twin(self, number: int, params: dict) -> int | None:
        """The number of an earlier trial (running, completed or pruned) with exactly ``params``."""
        live = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
        for t in self._ot_study.get_trials(deepcopy=False, states=live):
            if t.number != number and t.params == params:
                return t.number
        return None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        if self._ot_study._storage.get_trial(ot_trial._trial_id).state.is_finished():
            # Told before an interruption that came ahead of Tune's next snapshot: the restored
            # searcher does not remember it, the storage does, and Optuna's verdict stands.
            self._completed_trials.add(trial_id)
            return
        values = objective_values(result)
        if error or (result and values is None and reached_budget(result)):
            state, values = TrialState.FAIL, None
        elif not reached_budget(result):
            state, values = TrialState.PRUNED, None
            if result_epoch(result) is not None:
                ot_trial.set_user_attr("pruned_at_epoch", result_epoch(result))
        else:
            state = TrialState.COMPLETE
        ot_trial.set_user_attr("tune_trial_id", trial_id)
        self._ot_study.tell(ot_trial, list(values) if values else None, state=state)
        self._completed_trials.add(trial_id)

    def close_orphans(self) -> int:
        """Mark RUNNING Optuna trials unknown to this (restored) searcher as FAIL; return how many."""
        known = {t.number for t in self._ot_trials.values()}
        n = 0
        for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number not in known:
                self._ot_study._storage.set_trial_user_attr(t._trial_id, "orphaned",
                                                            "asked before an interruption; never ran to a result")
                self._ot_study.tell(t.number, state=TrialState.FAIL)
                n += 1
        return n


# -- all conditions in one Tune run ---------------------------------------------------------------


class ConditionRouter(Searcher):
    """Deals trials out to one :class:`ParetoOptunaSearch` per condition, round robin.

    Each condition gets exactly ``trials_per_condition`` suggestions; the condition with the
    fewest so far goes next, so all conditions progress side by side on the cluster.
    """

    def __init__(self, conditions: list[Condition], searchers: dict[str, ParetoOptunaSearch],
                 trials_per_condition: int):
        super().__init__(metric=list(METRICS), mode=list(MODES))
        self.conditions = {c.name: c for c in conditions}
        self.searchers = searchers
        self.trials_per_condition = trials_per_condition
        self.issued: dict[str, int] = {name: 0 for name in self.conditions}
        self.owner: dict[str, str] = {}  # Tune trial id -> condition name

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric and mode are fixed by the study's objectives

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id in self.owner:
            name = self.owner[trial_id]
        else:
            open_ = [n for n in self.conditions if self.issued[n] < self.trials_per_condition]
            if not open_:
                return Searcher.FINISHED
            name = min(open_, key=lambda n: self.issued[n])
        params = self.searchers[name].suggest(trial_id)
        if params is None:
            return None
        if trial_id not in self.owner:
            self.owner[trial_id] = name
            self.issued[name] += 1
        return {**params, **self.conditions[name].as_config()}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass  # multi-objective Optuna has no intermediate values

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        name = self.owner.get(trial_id)
        if name is not None:
            self.searchers[name].on_trial_complete(trial_id, result=result, error=error)

    def close_orphans(self) -> int:
        return sum(s.close_orphans() for s in self.searchers.values())

    def save(self, checkpoint_path: str) -> None:
        state = {"issued": self.issued, "owner": self.owner, "trials_per_condition": self.trials_per_condition,
                 "conditions": self.conditions,
                 "searchers": {name: s.__dict__.copy() for name, s in self.searchers.items()}}
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.issued, self.owner = state["issued"], state["owner"]
        self.trials_per_condition, self.conditions = state["trials_per_condition"], state["conditions"]
        for name, d in state["searchers"].items():
            self.searchers[name].__dict__.update(d)
        closed = self.close_orphans()
        if closed:
            log.info("closed %d Optuna trial(s) left RUNNING by the interrupted driver", closed)


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """One RDB storage for all the study's Optuna studies (a sqlite file in the study folder)."""
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})


def build_router(spec, conditions: list[Condition], storage_url: str) -> ConditionRouter:
    """One named Optuna study ``<study>/<condition>`` per condition, all in the same storage."""
    storage = optuna_storage(storage_url)
    methods = list(spec.methods)
    searchers = {}
    for c in conditions:
        searchers[c.name] = ParetoOptunaSearch(
            space=SpaceFunction(spec.search_space, methods),
            metric=list(METRICS), mode=list(MODES),
            sampler=build_sampler(spec.sampler, spec.seed, spec.search_space, methods),
            study_name=f"{spec.name}/{c.name}", storage=storage,
            points_to_evaluate=starting_points(spec) or None,
        )
    return ConditionRouter(conditions, searchers, spec.budget.trials_per_condition)


def starting_points(spec) -> list[dict]:
    """With several methods, enqueue one trial of each first, so every method is on every plot."""
    if len(spec.methods) < 2:
        return []
    points = []
    for method in spec.methods:
        point: dict[str, Any] = {"method": method}
        for name in search_spaces.METHOD_PARAMETERS[method]:
            p = spec.search_space.defined().get(name)
            if isinstance(p, FloatRange):
                if p.kn_choice:
                    point[f"{name}_is_kn"] = True
                else:
                    point[name] = math.sqrt(p.low * p.high) if p.log else (p.low + p.high) / 2
            elif isinstance(p, IntRange):
                point[name] = p.low
            elif isinstance(p, Choices):
                point[name] = p.choices[0]
        points.append(point)
    return points[: spec.budget.trials_per_condition]
