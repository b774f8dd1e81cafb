"""Running a study: preflight, then the spec → one Tune run + MLflow, then the verdict.

``run_study`` starts a new study or, when the study folder already holds one with the same
spec hash (the same science; paths and addresses may differ), resumes it (``semtune resume`` is
the same call on the folder it is given, also after that folder moved). Ray Tune restores its
trials and the searchers; the scheduler restores itself from its state file; MLflow runs are
found again by trial id; orphans of the interruption are closed. Everything a resumed study
writes goes to the folder it runs from (see :func:`_follow_folder`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

import ray
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import orchestrator
from orchestrator.outcomes import BUDGET_KEY, objective_values, result_epoch, trial_outcome
from orchestrator.spec import StudySpec, condition_grid, load_spec, study_arms
from orchestrator.spec.arms import ARM_KEY
from orchestrator.spec.redact import connectable_uri, redact_uri
from orchestrator.study.folder import StudyFolder, StudyRecord, git_commit, now_iso
from orchestrator.study.outcome import StudyOutcome
from orchestrator.study.preflight import preflight
from orchestrator.study.quiet import study_log
from orchestrator.tracking.credentials import worker_runtime_env
from orchestrator.tracking.runs import StudyRun, flatten
from orchestrator.tracking.study_run import (
    TrialTally, add_up, close_leftovers, finish_study_run, mark_interrupted, open_study_run, reopen_study_run,
    study_totals,
)
from orchestrator.tracking.tags import (
    TAG_GIT_COMMIT, TAG_NOTE, TAG_SCORES, TAG_SPEC_HASH, TAG_STUDY_FOLDER, TAG_VERSION,
)
from orchestrator.tune.experiment import build_tuner
from orchestrator.tune.progress import ProgressView
from orchestrator.tune.restore import unfinished_in_last_snapshot
from orchestrator.tune.storage import study_tune_storage
from trainables.config import ConfigError
from trainables.data import describe_split


def study_description(spec: StudySpec, folder: StudyFolder) -> str:
    """The parent run's and the experiment's description in the MLflow UI (Markdown)."""
    conditions = ", ".join(c.name for c in condition_grid(spec))
    return (f"semtune study **{spec.name}**: methods {', '.join(spec.methods)}; conditions {conditions}; "
            f"up to {spec.budget.trials_per_condition} trials per condition and method (each its own Optuna study), "
            f"sampler {spec.sampler.name}, "
            f"pruner {spec.pruner.name}, {spec.budget.stage1_epochs} + {spec.budget.stage2_epochs} epochs per trial. "
            f"Objectives: accuracy and PSNR (both maximised); {describe_split(spec.dataset)}. Trial runs are nested under this run; compare them "
            f"with a chart of `accuracy` against `psnr`. Study folder: `{folder.path}`; "
            f"report: `semtune report {folder.path}` (files under this run's `report/` artifacts).")


def _open_tracking(spec: StudySpec, folder: StudyFolder) -> StudyRecord:
    """Create the study's MLflow experiment and parent run (once) and write ``study.json``."""
    uri = spec.tracking_uri or folder.embedded_tracking_uri
    commit = git_commit()
    study = open_study_run(
        uri, spec.name, None if spec.tracking_uri else folder.artifact_location,
        tags={TAG_VERSION: orchestrator.__version__, TAG_SPEC_HASH: spec.spec_hash(),
              TAG_STUDY_FOLDER: str(folder.path), TAG_GIT_COMMIT: commit,
              TAG_SCORES: describe_split(spec.dataset)},
        params=dict(flatten("", spec.model_dump(mode="json"))), description=study_description(spec, folder),
        spec_file=str(folder.spec_file))
    record = StudyRecord(name=spec.name, spec_hash=spec.spec_hash(), tracking_uri=uri,
                         experiment_id=study.experiment_id, parent_run_id=study.parent_run_id,
                         semtune_version=orchestrator.__version__, git_commit=commit, created=now_iso(),
                         embedded_tracking=spec.tracking_uri in (None, folder.embedded_tracking_uri),
                         optuna_storage=spec.optuna_storage)
    folder.write_record(record)
    return record


def _record_without_mlflow(spec: StudySpec, folder: StudyFolder) -> StudyRecord:
    """``study.json`` of a study that logs nothing to MLflow (``mlflow: false``): no experiment, no runs."""
    record = StudyRecord(name=spec.name, spec_hash=spec.spec_hash(), tracking_uri="", experiment_id="",
                         parent_run_id="", semtune_version=orchestrator.__version__, git_commit=git_commit(),
                         created=now_iso(), optuna_storage=spec.optuna_storage)
    folder.write_record(record)
    return record


def _hashes_under_the_first_rung_of_before(spec: StudySpec) -> tuple[str, ...]:
    """The hashes ``spec`` had when ``pruner.grace_epochs`` defaulted to 1 (until 2026-12-07), if it
    leaves that field unset: such a study resumes only with its rungs set as they began."""
    if spec.pruner.grace_epochs is not None:
        return ()
    before = spec.model_copy(update={"pruner": spec.pruner.model_copy(update={"grace_epochs": 1})})
    return before.spec_hash(), before.legacy_spec_hash()


def _resumed_record(spec: StudySpec, folder: StudyFolder) -> StudyRecord:
    """``study.json`` of the study in ``folder``, checked against ``spec`` (same science, same MLflow
    store), with the tracking URI it is resumed with: the folder's own ``mlflow.db`` for the embedded
    store, ``spec.tracking_uri`` for a server (which may have a new address)."""
    record = folder.read_record()
    if record.spec_hash not in (spec.spec_hash(), spec.legacy_spec_hash()):
        if record.spec_hash in _hashes_under_the_first_rung_of_before(spec):
            raise ConfigError([("pruner.grace_epochs", f"study {spec.name!r} began when the first rung defaulted "
                                                      "to epoch 1 (now stage 2's first epoch); set "
                                                      "grace_epochs: 1 in its study file to resume it as it began")])
        raise ConfigError([("name", f"a different study named {spec.name!r} already exists in {folder.path}; "
                                    "choose another name or storage_path")])
    if bool(record.optuna_storage) != bool(spec.optuna_storage):  # else its trials would start over, elsewhere
        where = redact_uri(record.optuna_storage) if record.optuna_storage else "its folder's optuna.db"
        todo = "set optuna_storage to it (or to its new address)" if record.optuna_storage else "omit optuna_storage"
        raise ConfigError([("optuna_storage", f"study {spec.name!r} keeps its Optuna trials in {where}; "
                                              f"{todo} to resume it")])
    if not record.tracking_uri or not spec.mlflow:
        if bool(record.tracking_uri) != spec.mlflow:
            was = "true" if record.tracking_uri else "false"
            raise ConfigError([("mlflow", f"study {spec.name!r} was started with mlflow: {was}; resume it with the "
                                          "same setting")])
    elif record.embedded_tracking:
        if spec.tracking_uri and spec.tracking_uri != folder.embedded_tracking_uri:
            raise ConfigError([("tracking_uri", f"study {spec.name!r} logs to the embedded MLflow store in its "
                                                f"folder ({folder.path / 'mlflow.db'}); omit tracking_uri to resume it")])
    elif not spec.tracking_uri:
        raise ConfigError([("tracking_uri", f"study {spec.name!r} logs to the MLflow server {record.tracking_uri}; "
                                            "set tracking_uri to it (or to its new address) to resume it")])
    else:
        record.tracking_uri = spec.tracking_uri
    return record


def _follow_folder(spec: StudySpec, folder: StudyFolder, record: StudyRecord) -> None:
    """A resumed study continues in ``folder``, wherever that is now, with the addresses of ``spec``.

    Its parent run must be found in the tracking store. ``spec.yaml`` and ``study.json`` are
    rewritten (same spec hash; the current storage path, addresses and resources). When the folder
    moved, the parent run's folder tag and description name the new place; the embedded store's
    artifact URIs already followed it when ``study.json`` was read (:meth:`StudyFolder.read_record`),
    and Tune's restored searcher, scheduler and callbacks are the folder's (:func:`build_tuner`).
    """
    client = MlflowClient(record.tracking_uri)
    try:
        parent = client.get_run(record.parent_run_id)
    except MlflowException as err:
        raise ConfigError([("tracking_uri", f"{redact_uri(record.tracking_uri)} does not hold the parent run "
                                            f"{record.parent_run_id} of study {spec.name!r} "
                                            f"({str(err).splitlines()[0]})")]) from None
    was = parent.data.tags.get(TAG_STUDY_FOLDER)
    if was != str(folder.path):
        if was:
            print(f"semtune: the study folder moved from {was}; the study continues in {folder.path}",
                  file=sys.stderr)
        note = study_description(spec, folder)
        client.set_tag(record.parent_run_id, TAG_STUDY_FOLDER, str(folder.path))
        client.set_tag(record.parent_run_id, TAG_NOTE, note)
        client.set_experiment_tag(record.experiment_id, TAG_NOTE, note)
    if parent.data.tags.get(TAG_SPEC_HASH) != spec.spec_hash():  # a study from before the hash left out paths
        client.set_tag(record.parent_run_id, TAG_SPEC_HASH, spec.spec_hash())
    folder.write_spec(spec)
    record.spec_hash = spec.spec_hash()
    folder.write_record(record)


def connect_ray(spec: StudySpec) -> None:
    """The spec's ``ray_address`` (or ``$RAY_ADDRESS``, as ``ray job submit`` sets it); else a Ray of the
    study's own. ``address="local"``: a bare ``ray.init()`` would join any cluster that ``ray start``
    left running on this machine (seen: a study joined a test's two-node cluster, whose sqlite check
    then refused it)."""
    if ray.is_initialized():
        return
    address = spec.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING",
                 runtime_env=worker_runtime_env(spec.tracking_uri))
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="WARNING",
                 runtime_env=worker_runtime_env(spec.tracking_uri))


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


def run_study(spec: StudySpec, verbose: bool = False, folder: StudyFolder | None = None) -> StudyOutcome:
    """Run ``spec`` in ``folder`` (default ``<storage_path>/<name>``), or resume the study it holds."""
    folder = folder or StudyFolder.for_spec(spec)
    parent_field = "state_path" if spec.state_path else "storage_path"  # what holds the study folder
    if Path(getattr(spec, parent_field)) != folder.path.parent:  # e.g. resumed from a folder that moved
        spec = spec.model_copy(update={parent_field: str(folder.path.parent)})
    resuming = folder.exists()
    if resuming:
        record = _resumed_record(spec, folder)
    with study_log(folder.log_file, verbose):
        preflight(spec, folder, record.tracking_uri if resuming else None, connect=connect_ray)  # creates nothing
        if resuming:
            print(f"semtune: resuming study {spec.name!r} from {folder.path}", file=sys.stderr)
            if spec.mlflow:
                _follow_folder(spec, folder, record)
            else:
                folder.write_spec(spec)
        else:
            folder.write_spec(spec)
            record = _open_tracking(spec, folder) if spec.mlflow else _record_without_mlflow(spec, folder)
        study = StudyRun(record.tracking_uri, record.experiment_id, record.parent_run_id, spec.name) \
            if spec.mlflow else None
        if study is not None:
            reopen_study_run(study)
        arms = study_arms(spec)
        expected = sum(a.trials for a in arms)
        progress = ProgressView({a.name: a.trials for a in arms},
                                epochs_per_trial=spec.budget.stage1_epochs + spec.budget.stage2_epochs)
        # semtune forces an experiment snapshot when a trial is added, while they are cheap
        # (orchestrator/tune/snapshots.py); Tune warns about forced ones that come often, which says
        # nothing to a user here.
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        try:
            with _stop_gracefully_on_sigterm():
                grid = build_tuner(spec, folder, study, progress).fit()
        except BaseException:  # a bug or a second Ctrl-C: leave nothing RUNNING; resume continues it
            if study is not None:
                mark_interrupted(study)
            raise
        # Tune saved its state and returned early: trials were left unfinished, or never started.
        interrupted = (unfinished_in_last_snapshot(study_tune_storage(spec, folder)) > 0
                       or grid.num_terminated + grid.num_errors < expected)
        if study is None:
            totals = add_up(tally_of(r) for r in grid)
        else:
            if interrupted:
                mark_interrupted(study)
            else:
                close_leftovers(study, {r.metrics.get("trial_id"): trial_outcome(r.metrics, errored=bool(r.error))
                                        for r in grid if r.metrics})
            totals = study_totals(study)
            if not interrupted:
                finish_study_run(study, totals)
    return StudyOutcome(folder.path, record.tracking_uri, record.experiment_id, record.parent_run_id, totals,
                        expected, [a.name for a in arms], folder.log_file, interrupted)


def tally_of(result) -> TrialTally:
    """A Tune result as the totals count it (a study without MLflow has nothing else to read)."""
    metrics = result.metrics or {}
    outcome = trial_outcome(metrics, errored=bool(result.error), reason=str(result.error) if result.error else None)
    config = result.config or {}
    return TrialTally(status=outcome.status, epochs=result_epoch(metrics) or 0, budget=int(metrics.get(BUDGET_KEY, 0)),
                      arm=str(config.get(ARM_KEY)), values=objective_values(metrics), reason=outcome.reason)


def resume_study(study_dir: str | Path, verbose: bool = False) -> StudyOutcome:
    folder = StudyFolder(Path(study_dir).expanduser().resolve())  # the folder given, wherever it is now
    if not folder.exists():
        raise ConfigError([("STUDY_DIR", f"{folder.path} is not a semtune study folder (no study.json)")])
    spec = load_spec(folder.spec_file)
    # spec.yaml masks credentials in addresses: connect without them (MLflow then reads the environment's)
    addresses = {k: connectable_uri(v) for k in ("tracking_uri", "ray_address", "storage_path", "optuna_storage")
                 if (v := getattr(spec, k))}
    return run_study(spec.model_copy(update=addresses), verbose=verbose, folder=folder)
