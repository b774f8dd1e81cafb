"""Running a study: preflight, then the spec → one Tune run + MLflow, then the verdict.

``run_study`` starts a new study or, when the study folder already holds one with the same
spec, resumes it (``semtune resume`` is the same call from the folder). Ray Tune restores
its trials and the searchers; the scheduler restores itself from its state file; MLflow runs
are found again by trial id; orphans of the interruption are closed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

import ray

import orchestrator
from orchestrator.outcomes import trial_outcome
from orchestrator.spec import StudySpec, condition_grid, load_spec
from orchestrator.study.folder import StudyFolder, StudyRecord, git_commit, now_iso
from orchestrator.study.outcome import StudyOutcome
from orchestrator.study.preflight import preflight
from orchestrator.study.quiet import study_log
from orchestrator.tracking.runs import StudyRun, flatten
from orchestrator.tracking.study_run import (
    close_leftovers, finish_study_run, mark_interrupted, open_study_run, reopen_study_run, study_totals,
)
from orchestrator.tracking.tags import TAG_GIT_COMMIT, TAG_SPEC_HASH, TAG_STUDY_FOLDER, TAG_VERSION
from orchestrator.tune.experiment import build_tuner
from orchestrator.tune.progress import ProgressView
from trainables.config import ConfigError


def study_description(spec: StudySpec, folder: StudyFolder) -> str:
    """The parent run's and the experiment's description in the MLflow UI (Markdown)."""
    conditions = ", ".join(c.name for c in condition_grid(spec))
    return (f"semtune study **{spec.name}**: methods {', '.join(spec.methods)}; conditions {conditions}; "
            f"{spec.budget.trials_per_condition} trials per condition, sampler {spec.sampler.name}, "
            f"pruner {spec.pruner.name}, {spec.budget.stage1_epochs} + {spec.budget.stage2_epochs} epochs per trial. "
            f"Objectives: accuracy and PSNR (both maximised). Trial runs are nested under this run; compare them "
            f"with a chart of `accuracy` against `psnr`. Study folder: `{folder.path}`; "
            f"report: `semtune report {folder.path}` (files under this run's `report/` artifacts).")


def _open_tracking(spec: StudySpec, folder: StudyFolder) -> StudyRecord:
    """Create the study's MLflow experiment and parent run (once) and write ``study.json``."""
    uri = spec.tracking_uri or folder.embedded_tracking_uri
    commit = git_commit()
    study = open_study_run(
        uri, spec.name, None if spec.tracking_uri else folder.artifact_location,
        tags={TAG_VERSION: orchestrator.__version__, TAG_SPEC_HASH: spec.spec_hash(),
              TAG_STUDY_FOLDER: str(folder.path), TAG_GIT_COMMIT: commit},
        params=dict(flatten("", spec.model_dump(mode="json"))), description=study_description(spec, folder),
        spec_file=str(folder.spec_file))
    record = StudyRecord(name=spec.name, spec_hash=spec.spec_hash(), tracking_uri=uri,
                         experiment_id=study.experiment_id, parent_run_id=study.parent_run_id,
                         semtune_version=orchestrator.__version__, git_commit=commit, created=now_iso())
    folder.write_record(record)
    return record


def connect_ray(spec: StudySpec) -> None:
    if ray.is_initialized():
        return
    address = spec.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    else:
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="WARNING")


@contextlib.contextmanager
def _stop_gracefully_on_sigterm():
    """Ray Tune stops gracefully (state saved, see :func:`mark_interrupted`) on SIGINT only, and
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


def run_study(spec: StudySpec, verbose: bool = False) -> StudyOutcome:
    folder = StudyFolder.for_spec(spec)
    resuming = folder.exists()
    if resuming:
        record = folder.read_record()
        if record.spec_hash != spec.spec_hash():
            raise ConfigError([("name", f"a different study named {spec.name!r} already exists in {folder.path}; "
                                        "choose another name or storage_path")])
    with study_log(folder.log_file, verbose):
        preflight(spec, folder, record.tracking_uri if resuming else None, connect=connect_ray)  # creates nothing
        if resuming:
            print(f"semtune: resuming study {spec.name!r} from {folder.path}", file=sys.stderr)
        else:
            folder.write_spec(spec)
            record = _open_tracking(spec, folder)
        study = StudyRun(record.tracking_uri, record.experiment_id, record.parent_run_id, spec.name)
        reopen_study_run(study)
        conditions = condition_grid(spec)
        expected = spec.budget.trials_per_condition * len(conditions)
        progress = ProgressView([c.name for c in conditions], spec.budget.trials_per_condition,
                                epochs_per_trial=spec.budget.stage1_epochs + spec.budget.stage2_epochs)
        # CheckpointConfig(num_to_keep=1) makes Tune snapshot the experiment at every trial checkpoint, on
        # purpose: a resumed study then finds each trial's latest epoch. Tune warns about that each time.
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        try:
            with _stop_gracefully_on_sigterm():
                grid = build_tuner(spec, folder, study, progress).fit()
        except BaseException:  # a bug or a second Ctrl-C: leave nothing RUNNING; resume continues it
            mark_interrupted(study)
            raise
        interrupted = grid.num_terminated + grid.num_errors < expected  # Tune saved its state and returned early
        if interrupted:
            mark_interrupted(study)
        else:
            close_leftovers(study, {r.metrics.get("trial_id"): trial_outcome(r.metrics, errored=bool(r.error))
                                    for r in grid if r.metrics})
        totals = study_totals(study)
        if not interrupted:
            finish_study_run(study, totals)
    return StudyOutcome(folder.path, record.tracking_uri, record.experiment_id, record.parent_run_id, totals,
                        expected, [c.name for c in conditions], folder.log_file, interrupted)


def resume_study(study_dir: str | Path, verbose: bool = False) -> StudyOutcome:
    folder = StudyFolder(Path(study_dir))
    if not folder.exists():
        raise ConfigError([("STUDY_DIR", f"{folder.path} is not a semtune study folder (no study.json)")])
    return run_study(load_spec(folder.spec_file), verbose=verbose)
