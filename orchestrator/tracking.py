"""MLflow bookkeeping: the study's parent run and one nested child run per Tune trial.

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

from mlflow.entities import Metric, Param, RunStatus, RunTag, ViewType
from mlflow.tracking import MlflowClient

TAG_KIND = "semtune.kind"
TAG_TRIAL = "semtune.trial_id"
TAG_STATUS = "semtune.status"
TAG_CONDITION = "semtune.condition"
TAG_METHOD = "semtune.method"
TAG_PRUNED_AT = "semtune.pruned_at_epoch"
TAG_REASON = "semtune.failure_reason"
TAG_TRIAL_DIR = "semtune.trial_dir"  # Tune's folder of the trial (checkpoint_*/ inside)
TAG_PARENT = "mlflow.parentRunId"
MAX_TAG = 4900  # MLflow limits tag values to 5000 characters (8000 on newer stores)


@dataclass(frozen=True)
class StudyRun:
    """Where a study logs: enough for a worker on another node to find its parent run."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    study_name: str

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri)


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


def _params(values: Mapping[str, Any]) -> list[Param]:
    return [Param(k, "" if v is None else str(v)[:6000]) for k, v in values.items()]


def _tags(values: Mapping[str, Any]) -> list[RunTag]:
    return [RunTag(k, str(v)[:MAX_TAG]) for k, v in values.items() if v is not None]


class TrialRun:
    """The child run of one trial: logs params once and each epoch's metrics once."""

    def __init__(self, client: MlflowClient, run_id: str, last_step: int):
        self.client = client
        self.run_id = run_id
        self.last_step = last_step

    @classmethod
    def open(cls, study: StudyRun, trial_id: str, run_name: str, params: Mapping[str, Any],
             tags: Mapping[str, Any]) -> "TrialRun":
        client = study.client()
        run = find_trial_run(client, study, trial_id)
        if run is None:
            run = client.create_run(study.experiment_id, run_name=run_name, tags={
                TAG_PARENT: study.parent_run_id, TAG_TRIAL: trial_id, TAG_KIND: "trial", TAG_STATUS: "running",
            })
            client.log_batch(run.info.run_id, params=_params(params), tags=_tags(tags))
            last = 0
        else:
            if run.info.status != "RUNNING":
                client.update_run(run.info.run_id, status="RUNNING")
            client.set_tag(run.info.run_id, TAG_STATUS, "running")
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
        self.client.log_batch(self.run_id, metrics=batch)
        self.last_step = step

    def set_tags(self, **tags: Any) -> None:
        self.client.log_batch(self.run_id, tags=_tags(tags))


def finish_run(client: MlflowClient, run_id: str, status: str, tags: Mapping[str, Any] | None = None) -> None:
    """Set the final semtune status tags and end the run (idempotent)."""
    if tags:
        client.log_batch(run_id, tags=_tags(tags))
    run_status = "FAILED" if status == "failed" else "FINISHED"
    if client.get_run(run_id).info.status in ("RUNNING", "SCHEDULED") or status == "failed":
        client.set_terminated(run_id, status=run_status)


def flatten(prefix: str, doc: Any) -> Iterable[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` → ``("a.b", 1)``: nested configs as MLflow params."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from flatten(f"{prefix}.{k}" if prefix else str(k), v)
    else:
        yield prefix, doc


__all__ = ["RunStatus", "StudyRun", "TrialRun", "child_runs", "finish_run", "flatten", "get_or_create_experiment"]
