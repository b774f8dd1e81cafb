"""Driver-side Tune callbacks: the final word on each trial's MLflow run, and orphan clean-up.

A trial stopped by the scheduler is killed without running any code of its own, and a
worker that dies cannot end its run, so the driver closes every run: completed or pruned
(with the epoch it stopped at) or failed (with the reason).
"""

from __future__ import annotations

import logging
import math

from ray.tune import Callback

from orchestrator.objectives import METRICS
from orchestrator.tracking import (
    TAG_PRUNED_AT, TAG_REASON, TAG_STATUS, TAG_TRIAL, TAG_TRIAL_DIR, StudyRun, child_runs, find_trial_run, finish_run,
)

log = logging.getLogger(__name__)


def trial_outcome(last_result: dict | None, errored: bool) -> tuple[str, dict]:
    """``(status, extra tags)`` of a finished trial from its last reported result."""
    result = last_result or {}
    epoch, total = result.get("epoch"), result.get("epochs_total")
    if errored:
        return "failed", {}
    if epoch is None or total is None:
        return "failed", {TAG_REASON: "the trial ended without reporting a result"}
    if epoch < total:
        return "pruned", {TAG_PRUNED_AT: int(epoch)}
    values = [result.get(m) for m in METRICS]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return "failed", {TAG_REASON: f"non-finite objectives {dict(zip(METRICS, values))}"}
    return "completed", {}


def error_reason(trial) -> str:
    """The trial's exception as one line, from the files Tune has just written on the driver."""
    import cloudpickle

    from orchestrator.trial_runner import failure_reason

    try:  # Tune writes the error to the trial's local staging folder first, storage later
        with open(trial.pickled_error_file, "rb") as f:
            err = cloudpickle.load(f)
        return failure_reason(getattr(err, "cause", None) or err)
    except Exception:  # unpicklable, or no file: fall back to the text trace
        pass
    try:
        with open(trial.error_file) as f:
            lines = [ln for ln in f.read().strip().splitlines() if ln.strip()]
        return lines[-1][:1000] if lines else "unknown error"
    except (OSError, TypeError):
        return "unknown error"


class RunFinalizer(Callback):
    """Ends each trial's child run with its semtune status; deletes runs of orphaned trials."""

    def __init__(self, study: StudyRun):
        self.study = study
        self._swept = False

    def _finish(self, trial, status: str, tags: dict) -> None:
        client = self.study.client()
        run = find_trial_run(client, self.study, trial.trial_id)
        if run is None:  # failed before it could open its run: record it anyway
            run = client.create_run(self.study.experiment_id, run_name=f"{trial.config.get('condition')}/{trial.trial_id}",
                                    tags={"mlflow.parentRunId": self.study.parent_run_id, TAG_TRIAL: trial.trial_id,
                                          "semtune.kind": "trial", "semtune.condition": trial.config.get("condition"),
                                          "semtune.method": trial.config.get("method")})
        if TAG_REASON in run.data.tags:  # the worker's own account of a failure is the most precise
            tags = {k: v for k, v in tags.items() if k != TAG_REASON}
        # Tune's folder of the trial in the study's storage: the report finds front members' checkpoints there.
        finish_run(client, run.info.run_id, status, {TAG_STATUS: status, TAG_TRIAL_DIR: trial.path, **tags})

    def on_step_begin(self, iteration, trials, **info):
        if not self._swept:
            self._swept = True
            self.delete_orphans({t.trial_id for t in trials})

    def delete_orphans(self, known_trial_ids: set[str]) -> int:
        """Delete child runs whose trial Tune does not know (created after the last snapshot of an
        interrupted study): the trial will never continue, and a new trial takes its place."""
        client = self.study.client()
        n = 0
        for run in child_runs(client, self.study):
            if run.data.tags.get(TAG_TRIAL) not in known_trial_ids:
                client.set_tag(run.info.run_id, TAG_STATUS, "orphaned")
                if run.info.status == "RUNNING":
                    client.set_terminated(run.info.run_id, status="KILLED")
                client.delete_run(run.info.run_id)
                n += 1
        if n:
            log.info("deleted %d MLflow run(s) of trials orphaned by an interruption", n)
        return n

    def on_trial_complete(self, iteration, trials, trial, **info):
        status, tags = trial_outcome(trial.last_result, errored=False)
        self._finish(trial, status, tags)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, "failed", {TAG_REASON: error_reason(trial)})
