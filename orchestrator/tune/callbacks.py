"""Driver-side Tune callback: the final word on each trial's MLflow run, and orphan clean-up."""

from __future__ import annotations

import logging

from ray.tune import Callback

from orchestrator.outcomes import TRACEBACK_KEY, trial_outcome
from orchestrator.tracking.patience import patiently
from orchestrator.tracking.runs import StudyRun
from orchestrator.tracking.study_run import delete_orphans, record_trial_end
from orchestrator.tune.errors import error_reason
from orchestrator.tune.storage import readable_path

log = logging.getLogger(__name__)


class RunFinalizer(Callback):
    """Ends each trial's run with its semtune status; deletes runs of orphaned trials once per start."""

    def __init__(self, study: StudyRun):
        self.study = study
        self._swept = False

    def _record(self, trial, errored: bool) -> None:
        outcome = trial_outcome(trial.last_result, errored, reason=error_reason(trial) if errored else None)
        # Tune's folder of the trial (a URI on object storage): the report finds front members' checkpoints there.
        trial_dir = readable_path(getattr(trial.storage, "storage_filesystem", None), trial.path)
        patiently(record_trial_end, self.study, trial.trial_id, trial.config.get("condition"),
                  trial.config.get("method"), outcome, trial_dir)  # the driver too waits out an outage

    def on_step_begin(self, iteration, trials, **info):
        if not self._swept:
            self._swept = True
            delete_orphans(self.study, {t.trial_id for t in trials})

    def on_trial_complete(self, iteration, trials, trial, **info):
        trace = (trial.last_result or {}).get(TRACEBACK_KEY)
        if trace:  # a failure the trial reported instead of raising: Tune logged nothing
            log.error("Trial %s failed (not retried: deterministic)\n%s", trial.trial_id, trace)
        self._record(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._record(trial, errored=True)
