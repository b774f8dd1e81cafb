"""Pareto-aware asynchronous successive halving (MO-ASHA) as a Ray Tune scheduler.

Ray's ASHA ranks one metric; a codec study trades accuracy against PSNR, so a trial that is
worse in one objective but better in the other must not be cut. This scheduler keeps ASHA's
rungs and quota and replaces the scalar order by non-dominated sorting, as in MO-ASHA
(Schmucker et al., 2021, https://arxiv.org/abs/2106.12639; Syne Tune's ``MOASHA``).

Decision rule at a rung (all recorded vectors of that rung and arm (condition × method), the new one included):

1. order the vectors by Pareto rank (1 = first front, via :func:`orchestrator.pareto.pareto_ranks`),
   then, within a front, by crowding distance (NSGA-II, larger first; a front's end points and
   fronts of one or two distinct points get infinity). A vector with a NaN, an infinite or a
   missing objective ranks behind every valid one (dominated by everything);
2. count the vectors *strictly* ahead of the trial (ties never count against it);
3. the trial continues iff that count is below ``max(1, ceil(n / reduction_factor))``.

So the first trial at a rung always continues, and so does a trial that dominates the rung.
Decisions stand: a stopped trial stays stopped, and a trial that reports a rung it passed before
(resumed from an older checkpoint) continues without being judged again.
Unlike Syne Tune (random epsilon-net tie-break) the rule is deterministic, which is what lets
a rebuilt scheduler repeat the decisions of the one it replaces.

Tune does not checkpoint schedulers (``Tuner.restore`` unpickles the empty one the Tuner was
created with), so with ``state_path`` the rung records and stopped trials are written there as
JSON on every change and read back lazily on first use.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from typing import Mapping, Sequence

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.objectives import METRICS
from orchestrator.outcomes import reached_budget, result_epoch
from orchestrator.pareto import pareto_ranks
from orchestrator.tune.schedulers.args import check_arg, is_int, is_number
from orchestrator.tune.snapshots import SnapshotPolicy

logger = logging.getLogger(__name__)

_STATE_VERSION = 1


def crowding_distance(points) -> np.ndarray:
    """NSGA-II crowding distance of the points of one front (normalised per objective).

    Duplicated points share one value, so the order of arrival never matters.
    """
    pts = np.asarray(points, dtype=float)
    unique, inverse = np.unique(pts, axis=0, return_inverse=True)
    dist = np.zeros(len(unique))
    if len(unique) <= 2:
        dist[:] = np.inf
    else:
        span = unique.max(axis=0) - unique.min(axis=0)
        for j in range(unique.shape[1]):
            order = np.argsort(unique[:, j], kind="stable")
            dist[order[[0, -1]]] = np.inf
            if span[j] > 0:
                dist[order[1:-1]] += (unique[order[2:], j] - unique[order[:-2], j]) / span[j]
    return dist[np.ravel(inverse)]


def rung_order(vectors: Sequence[Sequence[float] | None]) -> tuple[np.ndarray, np.ndarray]:
    """(Pareto rank, crowding distance) of each vector (maximised); ``None`` ranks last (inf)."""
    n = len(vectors)
    rank, crowd = np.full(n, np.inf), np.zeros(n)
    valid = np.array([i for i, v in enumerate(vectors) if v is not None], dtype=int)
    if len(valid):
        pts = np.array([vectors[i] for i in valid], dtype=float)
        ranks = pareto_ranks(pts)
        rank[valid] = ranks
        for front in np.unique(ranks):
            members = np.flatnonzero(ranks == front)
            crowd[valid[members]] = crowding_distance(pts[members])
    return rank, crowd


def keeps(vectors: Sequence[Sequence[float] | None], index: int, reduction_factor: float) -> bool:
    """True iff ``vectors[index]`` is within the top ``max(1, ceil(n / reduction_factor))``."""
    rank, crowd = rung_order(vectors)
    ahead = (rank < rank[index]) | ((rank == rank[index]) & (crowd > crowd[index]))
    quota = max(1, math.ceil(len(vectors) / reduction_factor - 1e-9))
    return int(ahead.sum()) < quota


def rung_levels(grace_epochs: int, reduction_factor: float, max_epochs: int) -> tuple[int, ...]:
    """Epochs ``ceil(grace · η^k)``, k = 0, 1, …, strictly below ``max_epochs``."""
    levels, k = [], 0
    while (level := math.ceil(grace_epochs * reduction_factor**k - 1e-9)) < max_epochs:
        levels.append(level)
        k += 1
    return tuple(sorted(set(levels)))


def group_of(trial: Trial, group_key: str | None) -> str:
    """The comparison group of a trial: ``config[group_key]`` as a string (``"default"`` if absent)."""
    value = trial.config.get(group_key) if group_key else None
    return "default" if value is None else str(value)


def write_json_atomic(path: str, payload) -> None:
    """Write JSON next to ``path`` then ``os.replace`` it: a crash leaves the old or the new file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".sched-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1, allow_nan=False)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class ParetoSuccessiveHalving(SnapshotPolicy, FIFOScheduler):
    """MO-ASHA: stop a trial at a rung when it is not in the top 1/η of its arm's Pareto order (condition × method).

    Args:
        grace_epochs: first rung; no trial is stopped before it (≥ 1).
        reduction_factor: η (> 1); rungs at ``ceil(grace_epochs · η^k)`` below ``max_epochs``.
        max_epochs: the largest budget of the study (≥ ``grace_epochs``).
        metrics: result keys compared at a rung; default the study's objectives.
        modes: ``"max"``/``"min"`` per metric; default all maximised.
        group_key: config key whose value separates trials that never compete.
        state_path: JSON file where the state is kept so it survives ``Tuner.restore``.
    """

    def __init__(
        self,
        *,
        max_epochs: int,
        grace_epochs: int = 1,
        reduction_factor: float = 3,
        metrics: Sequence[str] | None = None,
        modes: Sequence[str] | None = None,
        group_key: str | None = "condition",
        state_path: str | os.PathLike | None = None,
    ):
        super().__init__()
        check_arg(is_int(grace_epochs) and grace_epochs >= 1, "grace_epochs", grace_epochs, "an integer >= 1")
        check_arg(is_number(reduction_factor) and reduction_factor > 1, "reduction_factor", reduction_factor,
               "a finite number > 1")  # fmt: skip
        check_arg(is_int(max_epochs) and max_epochs >= grace_epochs, "max_epochs", max_epochs,
               f"an integer >= grace_epochs ({grace_epochs})")  # fmt: skip
        metrics = tuple(METRICS if metrics is None else metrics)
        distinct = len(set(metrics)) == len(metrics) and all(isinstance(m, str) for m in metrics)
        check_arg(bool(metrics) and distinct, "metrics", metrics, "non-empty distinct strings")
        modes = tuple(["max"] * len(metrics) if modes is None else modes)
        check_arg(len(modes) == len(metrics) and all(m in ("max", "min") for m in modes), "modes", modes,
               f"one 'max' or 'min' per metric {metrics}")  # fmt: skip
        self._levels = rung_levels(grace_epochs, float(reduction_factor), max_epochs)
        self._eta = float(reduction_factor)
        self._metrics = metrics
        self._signs = np.array([1.0 if m == "max" else -1.0 for m in modes])
        self._group_key = group_key
        self._state_path = None if state_path is None else os.fspath(state_path)
        self._rungs: dict[str, dict[int, dict[str, list[float] | None]]] = {}
        self._stopped: dict[str, int] = {}
        self._loaded = False

    # -- what the study reads ------------------------------------------------------------------
    @property
    def rung_levels(self) -> tuple[int, ...]:
        return self._levels

    @property
    def stopped_trials(self) -> dict[str, int]:
        """trial_id → epoch at which this scheduler stopped it."""
        self._ensure_loaded()
        return dict(self._stopped)

    def records(self, group: str) -> dict[int, dict[str, tuple[float, ...] | None]]:
        """Rung level → {trial_id: reported objective vector, ``None`` if invalid} of one group."""
        self._ensure_loaded()
        rungs = self._rungs.get(group, {})
        return {lvl: {t: None if v is None else tuple(v) for t, v in rec.items()} for lvl, rec in rungs.items()}

    # -- Tune hooks ----------------------------------------------------------------------------
    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        self._ensure_loaded()
        epoch = result_epoch(result)
        if epoch is None:
            return TrialScheduler.CONTINUE
        tid, finished = trial.trial_id, reached_budget(result)
        if tid in self._stopped and epoch >= self._stopped[tid] and not finished:
            return TrialScheduler.STOP  # a decision stands, e.g. for a trial resumed after a restore
        if epoch not in self._levels:
            return TrialScheduler.CONTINUE
        rung = self._rungs.setdefault(group_of(trial, self._group_key), {}).setdefault(epoch, {})
        passed = tid in rung  # judged here before and kept (a stopped trial was answered above)
        rung[tid] = self._vector(result)  # keyed by trial: a re-reported epoch overwrites
        if passed:
            # Resumed from a checkpoint older than this rung (a kill landed between a checkpoint and
            # the deletion of the one before): judged again against a rung that has grown since, the
            # trial that led it could be stopped, and every trial it had outranked with it. ASHA
            # never takes a promotion back.
            logger.info("trial %s reported epoch %d again, a rung it passed before: it continues", tid, epoch)
            self._persist()
            return TrialScheduler.CONTINUE
        vectors = [None if v is None else self._signs * np.asarray(v) for v in rung.values()]
        keep = finished or keeps(vectors, list(rung).index(tid), self._eta)
        if not keep:
            self._stopped[tid] = epoch
        self._persist()
        return TrialScheduler.CONTINUE if keep else TrialScheduler.STOP

    def debug_string(self) -> str:
        rungs, stopped = list(self._levels), len(self._stopped)
        return f"Using ParetoSuccessiveHalving: rungs={rungs}, eta={self._eta:g}, num_stopped={stopped}"

    def save(self, checkpoint_path: str):
        self._ensure_loaded()
        write_json_atomic(checkpoint_path, self._state())

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path) as f:
            self._set_state(json.load(f))
        self._loaded = True
        self._persist()

    # -- state ---------------------------------------------------------------------------------
    def _vector(self, result: Mapping) -> list[float] | None:
        try:
            values = [float(result[m]) for m in self._metrics]
        except (KeyError, TypeError, ValueError):
            return None
        return values if all(math.isfinite(v) for v in values) else None

    def _state(self) -> dict:
        return {
            "version": _STATE_VERSION,
            "metrics": list(self._metrics),
            "rung_levels": list(self._levels),
            "rungs": {g: {str(lvl): rec for lvl, rec in rungs.items()} for g, rungs in self._rungs.items()},
            "stopped_trials": self._stopped,
        }

    def _set_state(self, state: Mapping) -> None:
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"Scheduler state version is {state.get('version')!r}, but must be {_STATE_VERSION}.")
        written = (list(state.get("rung_levels", [])), list(state.get("metrics", [])))
        if written != (list(self._levels), list(self._metrics)):
            logger.warning(
                "Scheduler state was written with rungs %s / metrics %s; this scheduler uses %s / %s.",
                state.get("rung_levels"), state.get("metrics"), list(self._levels), list(self._metrics),
            )
        self._rungs = {g: {int(lvl): dict(rec) for lvl, rec in r.items()} for g, r in state["rungs"].items()}
        self._stopped = {t: int(e) for t, e in state["stopped_trials"].items()}

    def __getstate__(self):
        # With a state file that file is the truth: an unpickled copy (Tuner.restore) re-reads it.
        state = self.__dict__.copy()
        if self._state_path is not None:
            state.update(_rungs={}, _stopped={}, _loaded=False)
        return state

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self._state_path is not None and os.path.exists(self._state_path):
            with open(self._state_path) as f:
                self._set_state(json.load(f))

    def _persist(self) -> None:
        if self._state_path is not None:
            write_json_atomic(self._state_path, self._state())
