"""Multi-objective search: one Optuna study per arm (channel condition × method), driven through Ray Tune.

Ray's ``OptunaSearch`` does the asking and telling; this module adds what it lacks here:
- early-stopped trials are told ``PRUNED`` and errored ones ``FAIL`` (upstream tells both
  ``COMPLETE`` with their last, low-fidelity values when they reported anything, which would
  pollute the sampler's population and every front read from the study);
- each asked Optuna trial records its Tune trial id and config at once, so that a trial asked
  after Tune's last experiment snapshot, before the driver died, is adopted by the restored
  searcher (and by Tune's record, :func:`orchestrator.tune.restore.adopt_orphaned_trials`);
  one asked but never recorded is closed as ``FAIL`` instead of staying ``RUNNING`` forever;
- :class:`ArmRouter` runs one such searcher per arm (condition × method, :mod:`orchestrator.spec.arms`)
  inside a single Tune run, so every arm shares the cluster concurrently and keeps its own named study.
"""

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import logging
import math
import pickle
import random
import threading
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from orchestrator.objectives import METRICS, MODES
from orchestrator.outcomes import FAILURE_KEY, objective_values, reached_budget, result_epoch
from orchestrator.spec import Arm, Choices, FloatRange, IntRange, SamplerSpec, SearchSpace
from orchestrator.spec.arms import method_space

log = logging.getLogger(__name__)


# -- the space, define-by-run ---------------------------------------------------------------------


class SpaceFunction:
    """Optuna define-by-run space of one method: only the parameters that method uses.

    A picklable object (not a closure) because Tune checkpoints the searcher that holds it.
    """

    def __init__(self, space: SearchSpace, method: str):
        self.space = method_space(space, method)
        self.method = method

    def __call__(self, trial) -> dict[str, Any]:
        return {"method": self.method, **{name: self._suggest(trial, name, p) for name, p in self.space.items()}}

    @staticmethod
    def _suggest(trial, name: str, p) -> Any:
        if isinstance(p, FloatRange):
            # Both are asked every time, also when the value is then "kn": NSGA-II and GP search only the
            # parameters every trial has, and a conditional alpha1 would be sampled at random forever.
            value = trial.suggest_float(name, p.low, p.high, log=p.log)
            return "kn" if p.kn_choice and trial.suggest_categorical(f"{name}_is_kn", [True, False]) else value
        if isinstance(p, IntRange):
            return trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
        if isinstance(p, Choices):
            return trial.suggest_categorical(name, p.choices)
        return p.value  # Fixed


def grid_of(space: SearchSpace, method: str) -> dict[str, list]:
    """The finite grid GridSampler needs; ValueError if a parameter is a continuous range."""
    return finite_grid(method_space(space, method))


def finite_grid(params: dict) -> dict[str, list]:
    """Each asked parameter's values, from one method's space; ValueError for a continuous range."""
    grid: dict[str, list] = {}
    for name, p in params.items():
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


PRUNED_AT_ATTR = "pruned_at_epoch"  # user attribute of a PRUNED Optuna trial: the epoch the scheduler stopped it at
TUNE_TRIAL_ATTR = "tune_trial_id"  # user attribute of an asked Optuna trial (and a pruner's shadow trial): its Tune trial
TUNE_CONFIG_ATTR = "tune_config"  # user attribute of an asked Optuna trial: the config its Tune trial runs with
RUNG_VALUES_ATTR = "rung_values"  # user attribute of a pruned trial: its objectives at the rung it stopped at
ORPHANED_ATTR = "orphaned"  # user attribute of a trial closed FAIL because no restored Tune run can continue it


def _as_ranked(trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
    """A pruned trial as NSGA-II ranks it: complete, with the objectives of the rung it reached."""
    if trial.state != TrialState.PRUNED or RUNG_VALUES_ATTR not in trial.user_attrs:
        return trial
    ranked = copy.copy(trial)
    ranked.state, ranked.values = TrialState.COMPLETE, list(trial.user_attrs[RUNG_VALUES_ATTR])
    return ranked


class PruningAwareNSGAII(optuna.samplers.NSGAIISampler):
    """NSGA-II whose generations count trials the scheduler pruned.

    Optuna moves to the next generation once ``population_size`` trials of the current one are
    COMPLETE. Under MO-ASHA most trials end PRUNED, so a study could stay in its random first
    generation to the end (the ``paper`` preset: 48 trials, population 16, η = 3). Here a pruned
    trial is a member of its generation, ranked by the objectives of the rung it stopped at (those
    MO-ASHA compared it on; :data:`RUNG_VALUES_ATTR`), and can be a parent. Optuna has no hook for
    this: the population getters of its ``BaseGASampler`` are overridden, reading the same
    generation attribute it writes.
    """

    # Optuna 5.1's BaseGASampler holds a threading.Lock and defines no pickling for it, and Tune
    # pickles the searcher (tuner.pkl, every snapshot): the lock is left out and made anew.
    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()

    def _members(self, study, generation: int) -> list[optuna.trial.FrozenTrial]:
        key = self._get_generation_key()
        trials = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED), use_cache=True)
        ranked = (_as_ranked(t) for t in trials if t.system_attrs.get(key) == generation)
        return [t for t in ranked if t.state == TrialState.COMPLETE]  # a pruned trial without rung values drops out

    def get_trial_generation(self, study, trial) -> int:
        key = self._get_generation_key()
        generation = trial.system_attrs.get(key)
        if generation is not None:
            return generation
        done = [t.system_attrs.get(key, -1) for t in study._get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED), use_cache=True)]
        latest = max(done, default=0)
        generation = max(latest, 0) + (sum(g == latest for g in done) >= self._population_size)
        study._storage.set_trial_system_attr(trial._trial_id, key, generation)
        return generation

    def before_trial(self, study, trial) -> None:
        # Every trial gets its generation as it starts, also one whose parameters were fixed (an enqueued
        # configuration, see ParetoOptunaSearch), for which Optuna never asks the sampler.
        self.get_trial_generation(study, trial)
        super().before_trial(study, trial)

    def get_population(self, study, generation: int) -> list[optuna.trial.FrozenTrial]:
        return self._members(study, generation)

    def get_parent_population(self, study, generation: int) -> list[optuna.trial.FrozenTrial]:
        return [_as_ranked(t) for t in super().get_parent_population(study, generation)]


def build_sampler(spec: SamplerSpec, seed: int, space: SearchSpace, method: str) -> optuna.samplers.BaseSampler:
    s = optuna.samplers
    if spec.name == "nsga2":
        return PruningAwareNSGAII(population_size=spec.population_size or 50, seed=seed)
    if spec.name == "tpe":
        kw = {} if spec.n_startup_trials is None else {"n_startup_trials": spec.n_startup_trials}
        # constant_liar: trials running in parallel count as bad guesses, so they are not all the same one
        return s.TPESampler(multivariate=True, group=True, constant_liar=True, seed=seed, **kw)
    if spec.name == "gp":
        kw = {} if spec.n_startup_trials is None else {"n_startup_trials": spec.n_startup_trials}
        return s.GPSampler(seed=seed, **kw)
    if spec.name == "random":
        return s.RandomSampler(seed=seed)
    return TunedGridSampler(grid_of(space, method), seed=seed)


# -- one arm's searcher ---------------------------------------------------------------------


def _configuration(params: dict) -> dict:
    """What a trial trains with: a value that ``<name>_is_kn`` replaces by "kn" is not part of it."""
    return {k: v for k, v in params.items() if not params.get(f"{k}_is_kn")}


def _key(params: dict) -> tuple:
    """A configuration as a comparable key."""
    return tuple(sorted(_configuration(params).items()))


MAX_RESAMPLES = 20  # asks per Tune trial before a repeat is accepted, in a space too large to list
MAX_LISTED = 100_000  # the most configurations a space may have for its unexplored ones to be listed
INSTEAD_OF_ATTR = "instead_of_duplicate"  # user attribute: the trial asked for a repeat and got its nearest new one


def _distance(a: dict, b: dict, grid: dict[str, list]) -> tuple[int, int]:
    """(parameters that differ, the sum of their steps apart in the grid's lists): near = a small mutation."""
    differ = [n for n in grid if a.get(n) != b.get(n)]
    steps = sum(abs(grid[n].index(a[n]) - grid[n].index(b[n])) for n in differ if a.get(n) in grid[n])
    return len(differ), steps


def _nearest(candidates: list[dict], params: dict, grid: dict[str, list], rng: random.Random) -> dict:
    """The candidate nearest ``params`` (:func:`_distance`), ties drawn with ``rng``."""
    scored = [(_distance(c, params, grid), c) for c in candidates]
    best = min(d for d, _ in scored)
    return rng.choice([c for d, c in scored if d == best])


class ParetoOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that tells Optuna the truth about pruned and failed trials, and does not
    run one configuration twice.

    NSGA-II hands a parent's genes to a child unchanged often enough that, in a space of a few
    choices, a study of 16 trials ran the same configuration twice, and every trial trains with
    the study's seed, so the repeat only reproduced a known result. A suggestion equal to an
    earlier trial's of the same arm is told ``FAIL`` (user attribute ``duplicate_of``; every
    sampler ignores failed trials). In a space of choices, the trial then gets the unexplored
    configuration nearest to the repeat (fewest parameters changed, then fewest steps along their
    lists; ties drawn by the trial number), enqueued in Optuna: a mutation of what the sampler
    wanted, one extra ask, and every configuration is reached before any runs twice. Asking again
    until the sampler strays (the way for a continuous space) took 3.4 asks per trial once a
    replayed study had covered most of a 120-configuration space, each one a FAIL trial in the storage.
    """

    def suggest(self, trial_id: str) -> dict | None:
        for attempt in range(MAX_RESAMPLES):
            params = super().suggest(trial_id)
            ot_trial = self._ot_trials[trial_id]
            explored = self._explored(ot_trial.number)
            twin = explored.get(_key(ot_trial.params))
            if twin is None or attempt == MAX_RESAMPLES - 1:
                return params
            grid, fresh = self._unexplored(explored)
            if grid is not None and not fresh:  # every configuration of the space has run: the repeat runs
                return params
            ot_trial.set_user_attr("duplicate_of", twin)
            self._ot_study.tell(ot_trial, state=TrialState.FAIL)
            del self._ot_trials[trial_id]  # the next super().suggest asks Optuna for a new trial
            if grid is not None:
                nearest = _nearest(fresh, ot_trial.params, grid, random.Random(f"{self._study_name}/{ot_trial.number}"))
                self._ot_study.enqueue_trial(nearest, user_attrs={INSTEAD_OF_ATTR: ot_trial.number})
        return params

    def _explored(self, number: int) -> dict[tuple, int]:
        """Each configuration of an earlier trial (running, completed or pruned): the trial's number."""
        live = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
        return {_key(t.params): t.number for t in self._ot_study.get_trials(deepcopy=False, states=live)
                if t.number != number}

    def _unexplored(self, explored: dict[tuple, int]) -> tuple[dict[str, list] | None, list[dict]]:
        """(the space's grid, its configurations not in ``explored``); the grid is ``None`` when the space
        cannot be listed (a continuous range, or more than :data:`MAX_LISTED` configurations)."""
        try:
            grid = finite_grid(self._space.space)
        except ValueError:
            return None, []
        if not grid or math.prod(len(v) for v in grid.values()) > MAX_LISTED:
            return None, []
        names = list(grid)
        every = (dict(zip(names, values)) for values in itertools.product(*grid.values()))
        return grid, [c for c in every if _key(c) not in explored]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        if self._ot_study._storage.get_trial(ot_trial._trial_id).state.is_finished():
            # Told before an interruption that came ahead of Tune's next snapshot: the restored
            # searcher does not remember it, the storage does, and Optuna's verdict stands.
            self._completed_trials.add(trial_id)
            del self._ot_trials[trial_id]
            return
        values = objective_values(result)
        if error or (result or {}).get(FAILURE_KEY) or (result and values is None and reached_budget(result)):
            state, values = TrialState.FAIL, None
        elif not reached_budget(result):
            state, values = TrialState.PRUNED, None
            if result_epoch(result) is not None:
                ot_trial.set_user_attr(PRUNED_AT_ATTR, result_epoch(result))
            if objective_values(result) is not None:  # what PruningAwareNSGAII ranks it by
                ot_trial.set_user_attr(RUNG_VALUES_ATTR, list(objective_values(result)))
        else:
            state = TrialState.COMPLETE
        if ot_trial.user_attrs.get(TUNE_TRIAL_ATTR) != trial_id:  # asked before semtune recorded it at once
            ot_trial.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        self._ot_study.tell(ot_trial, list(values) if values else None, state=state)
        self._completed_trials.add(trial_id)
        # Forgotten once told (the storage keeps it): every Tune snapshot pickles this searcher, which
        # would otherwise grow with every trial the study has run.
        del self._ot_trials[trial_id]

    def record(self, trial_id: str, config: dict) -> None:
        """Write on the Optuna trial asked for ``trial_id`` the Tune trial and its config: what a restore
        needs to adopt it if Tune's last snapshot came before it."""
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        ot_trial.set_user_attr(TUNE_CONFIG_ATTR, config)

    def adopt(self, known: set[str]) -> list[str]:
        """Take back the Optuna trials recorded for a Tune trial not in ``known`` (asked after the
        snapshot this searcher was restored from): a running one is told its verdict when its Tune
        trial ends, a finished one is done. Returns their Tune trial ids."""
        adopted = []
        for t in unrecorded_in_tune(self._ot_study, known):
            trial_id = t.user_attrs[TUNE_TRIAL_ATTR]
            if t.state == TrialState.RUNNING:
                self._ot_trials[trial_id] = optuna.Trial(self._ot_study, t._trial_id)
            else:
                self._completed_trials.add(trial_id)
            adopted.append(trial_id)
        return adopted

    def close_orphans(self) -> int:
        """Mark RUNNING Optuna trials unknown to this (restored) searcher as FAIL: asked, but the driver
        died before it recorded their Tune trial. Returns how many."""
        known = {t.number for t in self._ot_trials.values()}
        orphans = [t for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if t.number not in known]
        for t in orphans:
            close_orphan(self._ot_study, t)
        return len(orphans)


def unrecorded_in_tune(study: optuna.Study, known: set[str]) -> list[optuna.trial.FrozenTrial]:
    """The trials of ``study`` recorded for a Tune trial not in ``known`` (the trial ids of a Tune
    snapshot) and not closed as orphans: what a restore adopts, into Tune's record and the searcher."""
    return [t for t in study._storage.get_all_trials(study._study_id, deepcopy=False)
            if t.user_attrs.get(TUNE_TRIAL_ATTR) and TUNE_CONFIG_ATTR in t.user_attrs
            and t.user_attrs[TUNE_TRIAL_ATTR] not in known and ORPHANED_ATTR not in t.user_attrs]


def close_orphan(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Tell a RUNNING Optuna trial FAIL, marked :data:`ORPHANED_ATTR`: no restored Tune run will continue it."""
    study._storage.set_trial_user_attr(trial._trial_id, ORPHANED_ATTR,
                                       "asked before an interruption; never ran to a result")
    study.tell(trial.number, state=TrialState.FAIL)


# -- all arms in one Tune run ---------------------------------------------------------------------


_STORAGE_REF = "semtune:optuna-storage"


class _PicklerWithoutStorage(pickle.Pickler):
    """Pickles searchers with every ``RDBStorage`` replaced by a reference: the storage's URL is
    the study folder's path of that time, and unpickling an ``RDBStorage`` connects to it."""

    def persistent_id(self, obj):
        return _STORAGE_REF if isinstance(obj, optuna.storages.RDBStorage) else None


class _UnpicklerWithStorage(pickle.Unpickler):
    """Reads what :class:`_PicklerWithoutStorage` wrote, binding each reference to ``storage``."""

    def __init__(self, file, storage):
        super().__init__(file)
        self._storage = storage

    def persistent_load(self, pid):
        if pid != _STORAGE_REF:
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return self._storage


def _without_storage(obj) -> bytes:
    buffer = io.BytesIO()
    _PicklerWithoutStorage(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def _with_storage(data: bytes, storage):
    return _UnpicklerWithStorage(io.BytesIO(data), storage).load()


class ArmRouter(Searcher):
    """Deals trials out to one :class:`ParetoOptunaSearch` per arm (condition × method).

    Each arm gets exactly its budget of suggestions; the open arm with the fewest so far goes
    next, so all arms progress side by side on the cluster.

    No pickle of the router holds its Optuna storage, so none holds the study folder's path:
    :meth:`save` (Tune's searcher snapshot) writes the searchers with a reference in its place,
    and :meth:`restore` binds them to the storage of the router it restores into, one built for
    the folder the study runs from now. A router unpickled from ``tuner.pkl`` has no storage and
    refuses to run; a restored study uses a router of its own (``build_tuner``).
    """

    def __init__(self, arms: list[Arm], searchers: dict[str, ParetoOptunaSearch],
                 storage: optuna.storages.BaseStorage | None = None):
        super().__init__(metric=list(METRICS), mode=list(MODES))
        self.arms = {a.name: a for a in arms}
        self.searchers = searchers
        self.issued: dict[str, int] = {name: 0 for name in self.arms}
        self.owner: dict[str, str] = {}  # Tune trial id -> arm name
        # the one Optuna storage of every arm's searcher
        self.storage = storage if storage is not None else next(
            (s._storage for s in searchers.values() if s._storage is not None), None)

    def __getstate__(self):
        # Tune pickles the router with the Tuner (tuner.pkl): without the storage (see the class).
        return {"without_storage": _without_storage({**self.__dict__, "storage": None})}

    def __setstate__(self, state):
        if "without_storage" not in state:  # a tuner.pkl written before storages were left out
            self.__dict__.update(state)
            self.storage = next((s._storage for s in self.searchers.values() if s._storage is not None), None)
            return
        self.__dict__.update(_with_storage(state["without_storage"], None))

    def _check_storage(self) -> None:
        if self.storage is None:
            raise RuntimeError("this ArmRouter was unpickled without its Optuna storage (as tuner.pkl holds it); "
                               "restore Tune's searcher snapshot into a router built for the study folder")

    @property
    def total_trials(self) -> int:
        return sum(a.trials for a in self.arms.values())

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric and mode are fixed by the study's objectives

    def suggest(self, trial_id: str) -> dict | None:
        self._check_storage()
        if trial_id in self.owner:
            name = self.owner[trial_id]
        else:
            open_ = [n for n, a in self.arms.items() if self.issued[n] < a.trials]
            if not open_:
                return Searcher.FINISHED
            name = min(open_, key=lambda n: self.issued[n])
        params = self.searchers[name].suggest(trial_id)
        if params is None:
            return None
        config = {**params, **self.arms[name].as_config()}
        if trial_id not in self.owner:
            self.searchers[name].record(trial_id, config)
            self.owner[trial_id] = name
            self.issued[name] += 1
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass  # multi-objective Optuna has no intermediate values

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        name = self.owner.get(trial_id)
        if name is not None:
            self.searchers[name].on_trial_complete(trial_id, result=result, error=error)

    def close_orphans(self) -> int:
        return sum(s.close_orphans() for s in self.searchers.values())

    def save(self, checkpoint_path: str) -> None:
        self._check_storage()
        state = {"issued": self.issued, "owner": self.owner, "arms": self.arms,
                 "searchers": {name: s.__dict__.copy() for name, s in self.searchers.items()}}
        with open(checkpoint_path, "wb") as f:
            f.write(_without_storage(state))

    def restore(self, checkpoint_path: str) -> None:
        """Tune's snapshot, bound to this router's storage (a snapshot written before storages were
        left out holds its own, with the path of that time, and is read as it is)."""
        self._check_storage()
        with open(checkpoint_path, "rb") as f:
            state = _with_storage(f.read(), self.storage)
        self.issued, self.owner, self.arms = state["issued"], state["owner"], state["arms"]
        for name, d in state["searchers"].items():
            self.searchers[name].__dict__.update(d)
        adopted = 0
        for name, searcher in self.searchers.items():
            for trial_id in searcher.adopt(set(self.owner)):
                self.owner[trial_id] = name
                self.issued[name] += 1
                adopted += 1
        if adopted:
            log.info("adopted %d trial(s) asked after Tune's last snapshot", adopted)
        closed = self.close_orphans()
        if closed:
            log.info("closed %d Optuna trial(s) left RUNNING by the interrupted driver", closed)


def arm_seed(seed: int, arm: str) -> int:
    """The study seed mixed with the arm's name: arms must not all draw the same first configurations."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{arm}".encode()).digest()[:4], "little")


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """One RDB storage for all the study's Optuna studies: the study folder's sqlite file (waiting up to
    60 s for its lock), or the database ``optuna_storage`` names (giving up on a connection after 10 s)."""
    dialect = url.partition(":")[0].partition("+")[0]
    connect_args = {"sqlite": {"timeout": 60}, "postgresql": {"connect_timeout": 10},
                    "mysql": {"connect_timeout": 10}}.get(dialect, {})
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": connect_args})


def build_router(spec, arms: list[Arm], storage_url: str) -> ArmRouter:
    """One named Optuna study ``<study>/<condition>/<method>`` per arm, all in the same storage."""
    storage = optuna_storage(storage_url)
    searchers = {}
    for a in arms:
        searchers[a.name] = ParetoOptunaSearch(
            space=SpaceFunction(spec.search_space, a.method),
            metric=list(METRICS), mode=list(MODES),
            sampler=build_sampler(spec.sampler, arm_seed(spec.seed, a.name), spec.search_space, a.method),
            study_name=f"{spec.name}/{a.name}", storage=storage,
        )
    return ArmRouter(arms, searchers, storage)
