"""MLflow runs of a study: the parent run, and one nested child run per Tune trial.

Everything goes through ``MlflowClient`` with explicit run ids (no fluent, process-global
active run), so the same code runs in the driver and inside Ray workers, over ``sqlite:`` or
``http://``. A child run is found again by its ``semtune.trial_id`` tag, which makes opening it
idempotent: a trial resumed after a crash or a driver restart continues *its own* run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping
from urllib.parse import urlparse

from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.tracking import MlflowClient

from orchestrator.outcomes import FAILED, RUNNING, Outcome
from orchestrator.spec.redact import connectable_uri, redact_uri
from orchestrator.tracking.patience import patiently
from orchestrator.tracking.tags import (
    FAILURE_TRACEBACK, KIND_TRIAL, TAG_CONDITION, TAG_KIND, TAG_METHOD, TAG_PARENT, TAG_PRUNED_AT, TAG_REASON,
    TAG_STATUS, TAG_TRIAL, TAG_TRIAL_DIR,
)

MAX_TAG = 4900  # MLflow limits tag values to 5000 characters (8000 on newer stores)
MAX_PARAM = 6000


@dataclass(frozen=True)
class StudyRun:
    """Where a study logs: enough for a worker on another node to find its parent run.

    Pickled (to the Ray workers, and by Tune into the study folder's ``tuner.pkl``) with the tracking
    URI's credentials masked: workers read them from the environment (``MLFLOW_TRACKING_USERNAME``,
    ``MLFLOW_TRACKING_PASSWORD``), as MLflow does when the URI carries none.
    """

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    study_name: str

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=connectable_uri(self.tracking_uri))

    def __reduce__(self):
        return StudyRun, (redact_uri(self.tracking_uri), self.experiment_id, self.parent_run_id, self.study_name)


def get_or_create_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def child_runs(client: MlflowClient, study: StudyRun, view: int = ViewType.ACTIVE_ONLY) -> list:
    """All trial runs of the study (paged through; studies can have thousands)."""
    runs, token = [], None
    while True:
        page = client.search_runs([study.experiment_id], filter_string=f"tags.`{TAG_PARENT}` = '{study.parent_run_id}'",
                                  run_view_type=view, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def find_trial_run(client: MlflowClient, study: StudyRun, trial_id: str):
    found = client.search_runs(
        [study.experiment_id],
        filter_string=f"tags.`{TAG_PARENT}` = '{study.parent_run_id}' and tags.`{TAG_TRIAL}` = '{trial_id}'",
        run_view_type=ViewType.ACTIVE_ONLY, max_results=2,
    )
    return found[0] if found else None


def as_params(values: Mapping[str, Any]) -> list[Param]:
    """MLflow params, with credentials in URIs masked (the spec's addresses, a trial's data paths)."""
    return [Param(k, "" if v is None else redact_uri(str(v))[:MAX_PARAM]) for k, v in values.items()]


def as_tags(values: Mapping[str, Any]) -> list[RunTag]:
    """MLflow tags, with credentials in URIs masked (a failure reason may quote an address)."""
    return [RunTag(k, redact_uri(str(v))[:MAX_TAG]) for k, v in values.items() if v is not None]


def trial_tags(trial_id: str, condition: str | None, method: str | None) -> dict[str, str]:
    """The tags that make a run a trial run of a study (its parent tag is added by the caller)."""
    return {TAG_TRIAL: trial_id, TAG_KIND: KIND_TRIAL, TAG_CONDITION: condition, TAG_METHOD: method}


class TrialRun:
    """The child run of one trial: logs params once and each epoch's metrics once; each call waits
    out a tracking-server outage (:mod:`orchestrator.tracking.patience`)."""

    def __init__(self, client: MlflowClient, run_id: str, last_step: int):
        self.client = client
        self.run_id = run_id
        self.last_step = last_step

    @classmethod
    def open(cls, study: StudyRun, trial_id: str, run_name: str, condition: str, method: str,
             params: Mapping[str, Any]) -> "TrialRun":
        """The trial's run, created or found again (retried whole through an outage: a run created
        before a lost reply is found, not created twice)."""
        return patiently(cls._open, study, trial_id, run_name, condition, method, params)

    @classmethod
    def _open(cls, study: StudyRun, trial_id: str, run_name: str, condition: str, method: str,
              params: Mapping[str, Any]) -> "TrialRun":
        client = study.client()
        run = find_trial_run(client, study, trial_id)
        if run is None:
            run = client.create_run(study.experiment_id, run_name=run_name, tags={
                TAG_PARENT: study.parent_run_id, TAG_STATUS: RUNNING, **trial_tags(trial_id, condition, method)})
            client.log_batch(run.info.run_id, params=as_params(params))
            last = 0
        else:
            if run.info.status != "RUNNING":
                client.update_run(run.info.run_id, status="RUNNING")
            client.set_tag(run.info.run_id, TAG_STATUS, RUNNING)
            if TAG_REASON in run.data.tags:  # a retry after a lost node: the last attempt's failure is history
                client.delete_tag(run.info.run_id, TAG_REASON)
            history = client.get_metric_history(run.info.run_id, "epoch")
            last = int(max((m.step for m in history), default=0))
        return cls(client, run.info.run_id, last)

    def log_epoch(self, metrics: Mapping[str, float]) -> None:
        """Log one epoch's metrics at step = global epoch; an epoch logged before a restart is skipped."""
        step = int(metrics["epoch"])
        if step <= self.last_step:
            return
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))]
        patiently(self.client.log_batch, self.run_id, metrics=batch)
        self.last_step = step

    def set_tags(self, **tags: Any) -> None:
        patiently(self.client.log_batch, self.run_id, tags=as_tags(tags))

    def fail(self, reason: str, traceback_text: str) -> None:
        """The worker's own account of a failure: the reason as a tag, the traceback as an artifact."""
        patiently(self.client.log_text, self.run_id, redact_uri(traceback_text), FAILURE_TRACEBACK)
        patiently(finish_run, self.client, self.run_id, Outcome(FAILED, reason=reason))

    def finish(self, outcome: Outcome) -> None:
        patiently(finish_run, self.client, self.run_id, outcome)


def outcome_tags(outcome: Outcome) -> dict[str, Any]:
    return {TAG_STATUS: outcome.status, TAG_PRUNED_AT: outcome.pruned_at_epoch, TAG_REASON: outcome.reason}


def finish_run(client: MlflowClient, run_id: str, outcome: Outcome, trial_dir: str | None = None,
               keep_reason: bool = False) -> None:
    """Set the run's semtune status (and reason, pruning epoch, trial folder) and end it (idempotent).

    ``keep_reason``: a reason already on the run (the worker's own, the most precise) is kept.
    """
    tags = {**outcome_tags(outcome), TAG_TRIAL_DIR: trial_dir}
    if keep_reason:
        tags.pop(TAG_REASON)
    client.log_batch(run_id, tags=as_tags(tags))
    run_status = "FAILED" if outcome.status == FAILED else "FINISHED"
    if client.get_run(run_id).info.status in ("RUNNING", "SCHEDULED") or outcome.status == FAILED:
        client.set_terminated(run_id, status=run_status)


# MLflow 3's UI opens every experiment on its GenAI overview unless the page asks for the
# "machine_learning" workflow; the experiment's kind tag alone does not switch it (checked in Chromium).
TRAINING_VIEW = "workflowType=machine_learning"


def experiment_url(tracking_uri: str, experiment_id: str) -> str:
    """The experiment's table of runs in the MLflow UI (only an http(s) store has a UI of its own); shown to
    people, so a password in the URI is masked."""
    base = redact_uri(tracking_uri.rstrip("/")) if urlparse(tracking_uri).scheme in ("http", "https") \
        else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW}"


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI; only an http(s) store has one. Reports show it: a password is masked."""
    if urlparse(tracking_uri).scheme not in ("http", "https"):
        return ""
    return f"{redact_uri(tracking_uri.rstrip('/'))}/#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW}"


def flatten(prefix: str, doc: Any) -> Iterable[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` → ``("a.b", 1)``: nested configs as MLflow params."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from flatten(f"{prefix}.{k}" if prefix else str(k), v)
    else:
        yield prefix, doc
