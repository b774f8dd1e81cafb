"""The study's side of MLflow: its experiment and parent run, the driver's last word on every
trial run, and the totals logged when the study ends.

The driver closes every trial run, because a trial stopped by the scheduler is killed without
running any code of its own and a worker that dies cannot end its run.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from orchestrator.objectives import METRICS
from orchestrator.outcomes import BUDGET_KEY, COMPLETED, EPOCH_KEY, FAILED, INTERRUPTED, ORPHANED, PRUNED, Outcome
from orchestrator.pareto import nondominated_mask
from orchestrator.spec.redact import redact_uri
from orchestrator.tracking.runs import (
    StudyRun, as_params, as_tags, child_runs, find_trial_run, finish_run, get_or_create_experiment, trial_tags,
)
from orchestrator.tracking.tags import (
    KIND_STUDY, TAG_CONDITION, TAG_EXPERIMENT_KIND, TAG_KIND, TAG_METHOD, TAG_NOTE, TAG_PARENT, TAG_REASON, TAG_STATUS,
    TAG_TRIAL,
    TRAINING_EXPERIMENT,
)

log = logging.getLogger(__name__)


def open_study_run(tracking_uri: str, name: str, artifact_location: str | None, tags: Mapping[str, Any],
                   params: Mapping[str, Any], description: str, spec_file: str) -> StudyRun:
    """The study's experiment (a training experiment, so the MLflow UI opens on its runs) and a new
    parent run holding the whole spec as params and as the artifact ``spec.yaml`` (written with its
    credentials masked, see :meth:`StudyFolder.write_spec`); params and tags are masked here."""
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = get_or_create_experiment(client, name, artifact_location)
    description = redact_uri(description)
    client.set_experiment_tag(experiment_id, TAG_EXPERIMENT_KIND, TRAINING_EXPERIMENT)
    client.set_experiment_tag(experiment_id, TAG_NOTE, description)
    run = client.create_run(experiment_id, run_name=name, tags={TAG_KIND: KIND_STUDY, TAG_NOTE: description,
                                                                 **{t.key: t.value for t in as_tags(tags)}})
    client.log_batch(run.info.run_id, params=as_params(params))
    client.log_artifact(run.info.run_id, spec_file)
    return StudyRun(tracking_uri, experiment_id, run.info.run_id, name)


# The columns where MLflow 3.17's SQL store keeps absolute artifact URIs (checked on a store holding a
# run's artifacts and a logged model); the registry's tables are not used by semtune.
_ARTIFACT_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                     ("logged_models", "artifact_location"))


def relocate_artifacts(db_file: Path, experiment_id: str, artifact_root: str) -> str | None:
    """Point the embedded store's artifact URIs at ``artifact_root`` after the study folder moved.

    MLflow writes the experiment's artifact location as an absolute URI, and copies it into every
    run's and logged model's row; a sqlite store makes a relative location absolute against the
    working directory, and ``mlflow-artifacts:`` needs a server, so neither survives a move, and
    MLflow has no call to change them. Left alone, a resumed study would log its artifacts under
    the old folder (recreating it) and could not read the moved ones. The rows are rewritten in one
    transaction, only those under the experiment's old location; returns that location, or
    ``None`` when it already is ``artifact_root``.
    """
    with contextlib.closing(sqlite3.connect(db_file, timeout=60)) as db, db:
        try:
            row = db.execute("SELECT artifact_location FROM experiments WHERE experiment_id = ?",
                             (int(experiment_id),)).fetchone()
        except sqlite3.OperationalError:  # not (yet) an MLflow store: nothing to move
            return None
        if row is None or row[0] == artifact_root:
            return None
        old = row[0].rstrip("/")
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, column in _ARTIFACT_COLUMNS:
            if table in tables:
                db.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                           f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                           (artifact_root, len(old) + 1, old, len(old) + 1, old + "/"))
    # MLflow caches each run's artifact repository per process (by run id, with the old URI): drop
    # it, in case this process used the store before the move (best effort; a private cache).
    from mlflow.tracking._tracking_service import utils as tracking_utils

    cache = getattr(tracking_utils, "_artifact_repos_cache", None)
    if hasattr(cache, "clear"):
        cache.clear()
    log.info("study folder moved: MLflow artifact URIs under %s now point under %s", old, artifact_root)
    return old


def reopen_study_run(study: StudyRun) -> None:
    client = study.client()
    if client.get_run(study.parent_run_id).info.status != "RUNNING":
        client.update_run(study.parent_run_id, status="RUNNING")


def record_trial_end(study: StudyRun, trial_id: str, condition: str | None, method: str | None, outcome: Outcome,
                     trial_dir: str | None) -> None:
    """Close a trial's run with its verdict; a trial that failed before it opened its run gets one."""
    client = study.client()
    run = find_trial_run(client, study, trial_id)
    if run is None:
        run = client.create_run(study.experiment_id, run_name=f"{condition}/{method}/{trial_id}",
                                tags={TAG_PARENT: study.parent_run_id, **trial_tags(trial_id, condition, method)})
    finish_run(client, run.info.run_id, outcome, trial_dir, keep_reason=TAG_REASON in run.data.tags)


def delete_orphans(study: StudyRun, known_trial_ids: set[str]) -> int:
    """Delete trial runs whose trial Tune does not know after a restore: the trial will never continue,
    and a new trial takes its place. A trial added after Tune's last snapshot is adopted into it
    (:func:`orchestrator.tune.restore.adopt_orphaned_trials`), so this is for a study begun by a
    semtune that did not record each trial in Optuna when it was asked."""
    client = study.client()
    n = 0
    for run in child_runs(client, study):
        if run.data.tags.get(TAG_TRIAL) not in known_trial_ids:
            client.set_tag(run.info.run_id, TAG_STATUS, ORPHANED)
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, status="KILLED")
            client.delete_run(run.info.run_id)
            n += 1
    if n:
        log.info("deleted %d MLflow run(s) of trials orphaned by an interruption", n)
    return n


def close_leftovers(study: StudyRun, verdicts: Mapping[str, Outcome]) -> None:
    """Safety net after the Tune run: a trial run still RUNNING gets the verdict of its Tune result."""
    client = study.client()
    for run in child_runs(client, study):
        if run.info.status == "RUNNING":
            outcome = verdicts.get(run.data.tags.get(TAG_TRIAL), Outcome(FAILED, reason="no result from Tune"))
            finish_run(client, run.info.run_id, outcome, keep_reason=TAG_REASON in run.data.tags)


def mark_interrupted(study: StudyRun) -> None:
    """After Ctrl-C or SIGTERM: trial runs still RUNNING are KILLED (status ``interrupted``), not
    judged by their last epoch; ``semtune resume`` reopens each one and continues it."""
    client = study.client()
    for run in child_runs(client, study):
        if run.info.status == "RUNNING":
            client.set_tag(run.info.run_id, TAG_STATUS, INTERRUPTED)
            client.set_terminated(run.info.run_id, status="KILLED")
    client.set_terminated(study.parent_run_id, status="KILLED")


@dataclass(frozen=True)
class StudyTotals:
    """What the study's trial runs add up to, read back from MLflow (the source of truth)."""

    counts: dict[str, int]  # status -> trials
    front_sizes: dict[str, int]  # arm ('<condition>/<method>') -> members of its first front
    epochs_run: int
    epochs_no_pruning: int  # what the same trials would have run without pruning
    epochs_saved_by_pruning: int  # the budget left unrun by pruned trials only (failures save nothing)
    reasons: dict[str, int] = field(default_factory=dict)  # failure reason -> trials

    @property
    def saved_fraction(self) -> float:
        return self.epochs_saved_by_pruning / self.epochs_no_pruning if self.epochs_no_pruning else 0.0


@dataclass(frozen=True)
class TrialTally:
    """One trial as the totals count it."""

    status: str
    epochs: int  # epochs it ran
    budget: int  # epochs it would have run without pruning
    arm: str
    values: tuple[float, ...] | None = None  # objectives of a completed trial
    reason: str | None = None  # why it failed


def add_up(trials: Iterable[TrialTally]) -> StudyTotals:
    """The totals of a study's trials, however they were read (MLflow runs or Tune results)."""
    counts: dict[str, int] = {}
    reasons: dict[str, int] = {}
    points: dict[str, list] = {}
    run_epochs = budget_epochs = saved = 0
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
        run_epochs += t.epochs
        budget_epochs += t.budget
        if t.status == PRUNED:
            saved += max(0, t.budget - t.epochs)
        if t.reason and t.status not in (COMPLETED, PRUNED):
            reasons[t.reason] = reasons.get(t.reason, 0) + 1
        if t.status == COMPLETED and t.values is not None:
            points.setdefault(t.arm, []).append(list(t.values))
    fronts = {c: int(nondominated_mask(p).sum()) for c, p in points.items()}
    return StudyTotals(counts, fronts, run_epochs, budget_epochs, saved, reasons)


def study_totals(study: StudyRun) -> StudyTotals:
    """The totals read back from the study's trial runs in MLflow (the source of truth)."""
    return add_up(TrialTally(
        status=run.data.tags.get(TAG_STATUS, "unknown"),
        epochs=int(run.data.metrics.get(EPOCH_KEY, 0)),
        budget=int(float(run.data.params.get(BUDGET_KEY, 0))),
        arm=f"{run.data.tags.get(TAG_CONDITION)}/{run.data.tags.get(TAG_METHOD)}",
        values=tuple(run.data.metrics.get(m, float("nan")) for m in METRICS),
        reason=run.data.tags.get(TAG_REASON),
    ) for run in child_runs(study.client(), study))


def finish_study_run(study: StudyRun, totals: StudyTotals, status: str = "FINISHED") -> None:
    """Log the totals on the parent run and end it."""
    client = study.client()
    metrics = {
        "epochs_run": totals.epochs_run, "epochs_no_pruning": totals.epochs_no_pruning,
        "epochs_saved_fraction": totals.saved_fraction,
        **{f"trials_{s}": n for s, n in totals.counts.items()},
        **{f"front_size.{a}": n for a, n in totals.front_sizes.items()},
    }
    client.log_batch(study.parent_run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()])
    client.set_terminated(study.parent_run_id, status=status)


__all__: Iterable[str] = [
    "StudyTotals", "close_leftovers", "delete_orphans", "finish_study_run", "mark_interrupted", "open_study_run",
    "record_trial_end", "relocate_artifacts", "reopen_study_run", "study_totals", "TrialTally", "add_up",
]
