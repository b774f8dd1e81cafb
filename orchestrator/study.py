"""Running a study: the spec → Ray Tune + the Optuna router + a pruning scheduler + MLflow.

``run_study`` starts a new study or, when the study folder already holds one with the same
spec, resumes it (``semtune resume`` is the same call from the folder). Ray Tune restores
its trials and the searchers; the scheduler restores itself from its state file; MLflow runs
are found again by trial id; orphans of the interruption are closed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import mlflow
import ray
from mlflow.tracking import MlflowClient
from ray import tune

import orchestrator
from orchestrator.callbacks import RunFinalizer, trial_outcome
from orchestrator.conditions import condition_grid
from orchestrator.objectives import METRICS
from orchestrator.pareto import nondominated_mask
from orchestrator.progress import ProgressView
from orchestrator.schedulers import build_scheduler
from orchestrator.search import build_router
from orchestrator.spec import StudySpec, base_trial_doc, load_spec
from orchestrator.study_folder import StudyFolder, StudyRecord, git_commit, now_iso
from orchestrator.tracking import (
    TAG_KIND, TAG_STATUS, TAG_TRIAL, StudyRun, child_runs, finish_run, flatten, get_or_create_experiment,
)
from orchestrator.trial_runner import TrialContext, semtune_trainable
from trainables.config import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyOutcome:
    folder: Path
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    counts: dict[str, int]  # status -> trials
    front_sizes: dict[str, int]  # condition -> members
    epochs_run: int
    epochs_no_pruning: int
    trials_expected: int = 0
    interrupted: bool = False  # stopped by Ctrl-C / SIGTERM; ``semtune resume`` continues it


def _open_tracking(spec: StudySpec, folder: StudyFolder) -> StudyRecord:
    """Create the study's MLflow experiment and parent run (once) and write ``study.json``."""
    uri = spec.tracking_uri or folder.embedded_tracking_uri
    client = MlflowClient(tracking_uri=uri)
    artifact_location = None if spec.tracking_uri else folder.artifact_location
    experiment_id = get_or_create_experiment(client, spec.name, artifact_location)
    commit = git_commit()
    run = client.create_run(experiment_id, run_name=spec.name, tags={
        TAG_KIND: "study", "semtune.version": orchestrator.__version__, "semtune.spec_hash": spec.spec_hash(),
        "semtune.study_folder": str(folder.path), **({"mlflow.source.git.commit": commit} if commit else {}),
    })
    params = dict(flatten("", spec.model_dump(mode="json")))
    client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, str(v)[:6000]) for k, v in params.items()])
    client.log_artifact(run.info.run_id, str(folder.spec_file))
    record = StudyRecord(name=spec.name, spec_hash=spec.spec_hash(), tracking_uri=uri, experiment_id=experiment_id,
                         parent_run_id=run.info.run_id, semtune_version=orchestrator.__version__,
                         git_commit=commit, created=now_iso())
    folder.write_record(record)
    return record


def _connect_ray(spec: StudySpec) -> None:
    if ray.is_initialized():
        return
    address = spec.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)


@contextlib.contextmanager
def _stop_gracefully_on_sigterm():
    """Ray Tune stops gracefully (state saved, see :func:`_mark_interrupted`) on SIGINT only, and
    ``ray.init`` replaces Python's SIGTERM handler with one that aborts. ``ray job stop`` and batch
    schedulers send SIGTERM, so while the study runs it is turned into a SIGINT."""
    if threading.current_thread() is not threading.main_thread():  # signals go to the main thread only
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _tuner(spec: StudySpec, folder: StudyFolder, study: StudyRun) -> tune.Tuner:
    conditions = condition_grid(spec)
    context = TrialContext(base_docs={m: base_trial_doc(spec, m) for m in spec.methods}, study=study,
                           classifier_cache=str(folder.classifier_cache))
    trainable = tune.with_resources(tune.with_parameters(semtune_trainable, context=context),
                                    {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    if tune.Tuner.can_restore(str(folder.tune_dir)):
        return tune.Tuner.restore(str(folder.tune_dir), trainable, resume_unfinished=True, resume_errored=False)
    max_epochs = spec.budget.stage1_epochs + spec.budget.stage2_epochs
    p = spec.pruner
    scheduler = build_scheduler(
        p.name, max_epochs=max_epochs, grace_epochs=p.grace_epochs, reduction_factor=p.reduction_factor,
        weights=p.scalarization, storage=folder.optuna_url, study_prefix=spec.name,
        state_path=folder.scheduler_state, seed=spec.seed, n_startup_trials=p.n_startup_trials,
        n_warmup_steps=p.n_warmup_steps,
    )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=build_router(spec, conditions, folder.optuna_url), scheduler=scheduler,
            num_samples=spec.budget.trials_per_condition * len(conditions),
            max_concurrent_trials=spec.budget.max_concurrent, reuse_actors=False,
            trial_dirname_creator=trial_dirname, trial_name_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=folder.tune_dir.name, storage_path=str(folder.path), verbose=0,
            callbacks=[RunFinalizer(study), ProgressView([c.name for c in conditions],
                                                         spec.budget.trials_per_condition)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=spec.budget.max_failures, fail_fast=False),
        ),
    )


def trial_dirname(trial) -> str:
    """``<condition>_<method>_<trial id>``: readable folder and trial names instead of every parameter."""
    return f"{trial.config.get('condition', 'trial')}_{trial.config.get('method', '')}_{trial.trial_id}"


def _close_leftovers(study: StudyRun, grid) -> None:
    """Safety net after ``fit``: any trial run still RUNNING gets the status its Tune result implies."""
    results = {r.metrics.get("trial_id"): r for r in grid if r.metrics}
    client = study.client()
    for run in child_runs(client, study):
        if run.info.status != "RUNNING":
            continue
        result = results.get(run.data.tags.get(TAG_TRIAL))
        status, tags = trial_outcome(result.metrics if result else None, errored=bool(result and result.error))
        finish_run(client, run.info.run_id, status, {TAG_STATUS: status, **tags})


def _mark_interrupted(study: StudyRun) -> None:
    """After Ctrl-C or SIGTERM: trial runs still RUNNING are KILLED (status ``interrupted``), not
    judged by their last epoch; ``semtune resume`` reopens each one and continues it."""
    client = study.client()
    for run in child_runs(client, study):
        if run.info.status == "RUNNING":
            client.set_tag(run.info.run_id, TAG_STATUS, "interrupted")
            client.set_terminated(run.info.run_id, status="KILLED")
    client.set_terminated(study.parent_run_id, status="KILLED")


def _summarise(study: StudyRun) -> tuple[dict, dict, int, int]:
    """Status counts, front sizes, epochs run and epochs a no-pruning run needs — from MLflow."""
    counts: dict[str, int] = {}
    points: dict[str, list] = {}
    run_epochs = budget_epochs = 0
    for run in child_runs(study.client(), study):
        status = run.data.tags.get(TAG_STATUS, "unknown")
        counts[status] = counts.get(status, 0) + 1
        run_epochs += int(run.data.metrics.get("epoch", 0))
        budget_epochs += int(float(run.data.params.get("epochs_total", 0)))
        if status == "completed":
            points.setdefault(run.data.tags.get("semtune.condition"), []).append(
                [run.data.metrics.get(m, float("nan")) for m in METRICS])
    fronts = {c: int(nondominated_mask(p).sum()) for c, p in points.items()}
    return counts, fronts, run_epochs, budget_epochs


def run_study(spec: StudySpec) -> StudyOutcome:
    folder = StudyFolder.for_spec(spec)
    if folder.exists():
        record = folder.read_record()
        if record.spec_hash != spec.spec_hash():
            raise ConfigError([("name", f"a different study named {spec.name!r} already exists in {folder.path}; "
                                        "choose another name or storage_path")])
        print(f"semtune: resuming study {spec.name!r} from {folder.path}", file=sys.stderr)
    else:
        folder.write_spec(spec)
        record = _open_tracking(spec, folder)
    study = StudyRun(record.tracking_uri, record.experiment_id, record.parent_run_id, spec.name)
    client = study.client()
    if client.get_run(study.parent_run_id).info.status != "RUNNING":
        client.update_run(study.parent_run_id, status="RUNNING")

    _connect_ray(spec)
    # CheckpointConfig(num_to_keep=1) makes Tune snapshot the experiment at every trial checkpoint, on
    # purpose: a resumed study then finds each trial's latest epoch. Tune warns about that each time.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    with _stop_gracefully_on_sigterm():
        grid = _tuner(spec, folder, study).fit()
    expected = spec.budget.trials_per_condition * len(condition_grid(spec))
    if grid.num_terminated + grid.num_errors < expected:  # Tune saved its state and returned early
        _mark_interrupted(study)
        counts, fronts, run_epochs, budget_epochs = _summarise(study)
        return StudyOutcome(folder.path, record.tracking_uri, record.experiment_id, record.parent_run_id,
                            counts, fronts, run_epochs, budget_epochs, expected, interrupted=True)
    _close_leftovers(study, grid)

    counts, fronts, run_epochs, budget_epochs = _summarise(study)
    client.log_batch(study.parent_run_id, metrics=[
        mlflow.entities.Metric(k, float(v), 0, 0) for k, v in {
            "epochs_run": run_epochs, "epochs_no_pruning": budget_epochs,
            "epochs_saved_fraction": 1 - run_epochs / budget_epochs if budget_epochs else 0.0,
            **{f"trials_{s}": n for s, n in counts.items()},
            **{f"front_size.{c}": n for c, n in fronts.items()},
        }.items()])
    client.set_terminated(study.parent_run_id, status="FINISHED")
    return StudyOutcome(folder.path, record.tracking_uri, record.experiment_id, record.parent_run_id,
                        counts, fronts, run_epochs, budget_epochs, expected)


def resume_study(study_dir: str | Path) -> StudyOutcome:
    folder = StudyFolder(Path(study_dir))
    if not folder.exists():
        raise ConfigError([("STUDY_DIR", f"{folder.path} is not a semtune study folder (no study.json)")])
    return run_study(load_spec(folder.spec_file))


def summary_lines(outcome: StudyOutcome) -> list[str]:
    c = outcome.counts
    saved = 1 - outcome.epochs_run / outcome.epochs_no_pruning if outcome.epochs_no_pruning else 0.0
    states = ", ".join(f"{n} {s}" for s, n in sorted(c.items()))
    if outcome.interrupted:
        done = sum(n for s, n in c.items() if s in ("completed", "pruned", "failed"))
        head = [f"study interrupted: {done} of {outcome.trials_expected} trials finished — {states}",
                f"resume it with: semtune resume {outcome.folder}"]
    else:
        head = [f"study finished: {sum(c.values())} trials — {states}"]
    lines = [
        *head,
        f"epochs run: {outcome.epochs_run} of {outcome.epochs_no_pruning} without pruning ({saved:.0%} saved)",
        "front sizes: " + ", ".join(f"{k}: {v}" for k, v in sorted(outcome.front_sizes.items())),
        f"study folder: {outcome.folder}",
        f"MLflow: {outcome.tracking_uri} (experiment {outcome.experiment_id}, parent run {outcome.parent_run_id})",
    ]
    if outcome.tracking_uri.startswith("sqlite:"):
        lines.append(f"  browse: mlflow ui --backend-store-uri {outcome.tracking_uri}")
    lines.append(f"report: semtune report {outcome.folder}")
    return lines
