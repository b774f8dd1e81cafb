"""What became of a trial: the status names, the budget rule, and the verdict read from its last result.

Written once here. The Tune callbacks, the Optuna searcher, the schedulers, the MLflow tags, the
progress view, the study summary and the reports all take them from this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from orchestrator.objectives import METRICS

COMPLETED, PRUNED, FAILED, RUNNING = "completed", "pruned", "failed", "running"
INTERRUPTED = "interrupted"  # stopped with its study (Ctrl-C, SIGTERM); ``semtune resume`` continues it
ORPHANED = "orphaned"  # of a trial an interrupted study's Tune never recorded nor Optuna adopted; replaced
FINISHED = (COMPLETED, PRUNED, FAILED)  # a trial in one of these never runs again
STATUSES = (*FINISHED, RUNNING)  # what a report or the progress table can show

EPOCH_KEY = "epoch"  # the global epoch (1-based) a result reports
BUDGET_KEY = "epochs_total"  # the trial's full budget: stage 1 + stage 2 epochs
# A trial that fails deterministically (a diverged loss) reports this key and returns instead of
# raising: Tune retries every raised error up to ``budget.max_failures`` times (for lost nodes),
# and a retry of a deterministic failure only repeats it.
FAILURE_KEY = "failure_reason"
TRACEBACK_KEY = "failure_traceback"  # ... with its traceback, which the driver writes to the study's log
# What Tune gets of an epoch's result: all that the driver reads (schedulers, searcher, callbacks, the
# progress view, restore). The rest (SSIM, losses, speed) goes to MLflow only: Tune keeps running
# statistics of every numeric key of every trial, and writes them all into each experiment snapshot.
DRIVER_KEYS = (*METRICS, EPOCH_KEY, BUDGET_KEY)


def for_driver(metrics: Mapping) -> dict:
    """The part of an epoch's metrics that Tune carries to the driver (:data:`DRIVER_KEYS`)."""
    return {k: metrics[k] for k in DRIVER_KEYS if k in metrics}


def result_epoch(result: Mapping | None) -> int | None:
    """The whole-number epoch of a result, or ``None`` when it has none."""
    epoch = (result or {}).get(EPOCH_KEY)
    try:
        return int(epoch) if epoch is not None and float(epoch).is_integer() else None
    except (TypeError, ValueError):
        return None


def reached_budget(result: Mapping | None) -> bool:
    """The budget rule: a trial whose result is at its last epoch has run in full (never pruned)."""
    epoch, total = result_epoch(result), (result or {}).get(BUDGET_KEY)
    return epoch is not None and total is not None and epoch >= total


def objective_values(result: Mapping | None) -> tuple[float, ...] | None:
    """The objectives of a result when all are finite numbers, else ``None``."""
    values = [(result or {}).get(m) for m in METRICS]
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    return tuple(float(v) for v in values) if ok else None


@dataclass(frozen=True)
class Outcome:
    status: str
    pruned_at_epoch: int | None = None
    reason: str | None = None


def trial_outcome(last_result: Mapping | None, errored: bool, reason: str | None = None) -> Outcome:
    """The verdict on a finished trial from its last reported result."""
    if errored:
        return Outcome(FAILED, reason=reason)
    if (last_result or {}).get(FAILURE_KEY):
        return Outcome(FAILED, reason=str(last_result[FAILURE_KEY]))
    epoch = result_epoch(last_result)
    if epoch is None or (last_result or {}).get(BUDGET_KEY) is None:
        return Outcome(FAILED, reason="the trial ended without reporting a result")
    if not reached_budget(last_result):
        return Outcome(PRUNED, pruned_at_epoch=epoch)
    if objective_values(last_result) is None:
        values = {m: (last_result or {}).get(m) for m in METRICS}
        return Outcome(FAILED, reason=f"non-finite objectives {values}")
    return Outcome(COMPLETED)
