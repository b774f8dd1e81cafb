"""One Tune run for a whole study: every condition's trials share the cluster.

Builds the ``Tuner`` from a validated spec (or restores it from the study folder): the
trainable with its resources, the condition router over Optuna, the pruning scheduler, and the
driver-side callbacks (MLflow bookkeeping, the progress view).

A restored Tuner runs with the same objects, built for the folder it is restored from, not with the
copies Tune pickled when the study started (their paths are those of that time; the folder may
have moved since): see :func:`use_on_restore` and :func:`relocate_search_state`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import pyarrow.fs
import ray
import ray.cloudpickle
from ray import tune

from orchestrator.spec import StudySpec, base_trial_doc, study_arms
from orchestrator.study.folder import StudyFolder
from orchestrator.tracking.runs import StudyRun
from orchestrator.tune.callbacks import RunFinalizer
from orchestrator.tune.progress import ProgressView
from orchestrator.tune.schedulers import build_scheduler
from orchestrator.tune.search import build_router
from orchestrator.tune.trainable import TrialContext, semtune_trainable


log = logging.getLogger(__name__)
_CHECKPOINT_NAME = re.compile(r"checkpoint_\d{6}")


def repair_lagging_checkpoints(tune_dir: Path) -> int:
    """Give a restore the checkpoint Tune's last snapshot names, when a kill made the snapshot lag.

    With ``CheckpointConfig(num_to_keep=1)`` Tune deletes a trial's previous checkpoint as soon as
    it registers the next one, and semtune snapshots the experiment when a trial ends and on Tune's
    clock, not per checkpoint (:mod:`orchestrator.tune.snapshots`). A driver killed in between leaves
    a snapshot naming a deleted checkpoint, and the restored trial then fails with "Could not
    recover from checkpoint as it does not exist on storage anymore" (seen in the SIGKILL test).
    Tune has no option for this, so the newer checkpoint is copied under the old name: the trial
    function reads its epoch from the checkpoint's own state, so it continues from the newer one.
    """
    states = sorted(tune_dir.glob("experiment_state-*.json"))
    if not states:
        return 0
    repaired = 0
    for trial_json, runtime_json in json.loads(states[-1].read_text()).get("trial_data", []):
        trial_dir = tune_dir / str(json.loads(trial_json).get("relative_logdir"))
        named = _CHECKPOINT_NAME.findall(runtime_json)  # the last result's checkpoint_dir_name
        if not named or not trial_dir.is_dir() or (trial_dir / named[-1]).exists():
            continue
        newer = sorted(p for p in trial_dir.glob("checkpoint_*") if p.is_dir() and p.name > named[-1])
        if newer:
            shutil.copytree(newer[-1], trial_dir / named[-1])
            log.warning("%s: Tune's snapshot names %s, which a kill left deleted; restoring from %s instead",
                        trial_dir.name, named[-1], newer[-1].name)
            repaired += 1
    return repaired


def relocate_search_state(tune_dir: Path, max_concurrent: int | None = None) -> bool:
    """Make Tune's saved search state create new trials in ``tune_dir``, where it is restored from.

    Ray 2.60 restores its search algorithm's ``Experiment`` from ``search_gen_state-*.json``
    (cloudpickled) with the storage of the first run: after the study folder moved, every trial
    created after the restore had its storage at the old place and failed at its first checkpoint
    ("Unable to set up cluster storage", reproduced; restored trials are relocated by Tune itself),
    or, with the old folder still there, wrote its checkpoints into it. The same file holds the
    concurrency limit of the first run, which is set to ``max_concurrent`` (``budget.max_concurrent``
    may change on resume). Rewritten in place, atomically; returns whether anything changed.
    """
    states = sorted(tune_dir.glob("search_gen_state-*.json"))  # Tune reads the newest, by name
    if not states:
        return False
    state = ray.cloudpickle.loads(states[-1].read_bytes())
    changed = False
    experiment = state.get("experiment") if isinstance(state, dict) else None
    storage = getattr(experiment, "storage", None)
    here = (str(tune_dir.parent), tune_dir.name)
    if isinstance(getattr(storage, "storage_filesystem", None), pyarrow.fs.LocalFileSystem) and (
            storage.storage_fs_path, storage.experiment_dir_name) != here:
        log.info("Tune's search state names the experiment %s/%s; new trials go to %s instead",
                 storage.storage_fs_path, storage.experiment_dir_name, tune_dir)
        storage.storage_fs_path, storage.experiment_dir_name = here  # experiment.spec["storage"] is this object
        changed = True
    limiter = state.get("name:ConcurrencyLimiter") if isinstance(state, dict) else None
    if max_concurrent and isinstance(limiter, dict) and limiter.get("max_concurrent") not in (None, max_concurrent):
        limiter["max_concurrent"] = max_concurrent
        changed = True
    if changed:
        tmp = states[-1].with_name(f".{states[-1].name}.tmp")
        tmp.write_bytes(ray.cloudpickle.dumps(state))
        os.replace(tmp, states[-1])
    return changed


def use_on_restore(tuner: tune.Tuner, search_alg, scheduler, callbacks: list) -> None:
    """Run a restored Tuner with the searcher, scheduler and callbacks built for the current folder.

    ``Tuner.restore`` brings back the ones pickled in ``tuner.pkl`` when the study started, with
    that time's paths: the MO-ASHA state file, the Optuna pruners' storage, the MLflow store of
    :class:`RunFinalizer`. Nothing of their state is lost by replacing them: Tune restores the
    searcher's from its own snapshot into the searcher it is given (``ArmRouter.restore`` binds it
    to that searcher's Optuna storage), MO-ASHA reads its rungs from its state file, the Optuna
    pruners from their storage, and the progress view its table from Tune's callback snapshot.
    Ray has no public setter for these: they are the fields of the ``TuneConfig`` and ``RunConfig``
    that ``Tuner.restore`` unpickled (the same from Ray 2.0 to 2.60); if they ever move, this fails
    instead of letting the study write to the old folder.
    """
    internal = getattr(tuner, "_local_tuner", None)
    tune_config = getattr(internal, "_tune_config", None)
    run_config = getattr(internal, "_run_config", None)
    if not (hasattr(tune_config, "search_alg") and hasattr(tune_config, "scheduler")
            and hasattr(run_config, "callbacks")):
        raise RuntimeError(f"ray {ray.__version__}: Tuner.restore no longer keeps its TuneConfig and RunConfig where "
                           "semtune replaces the searcher, scheduler and callbacks of a restored study")
    tune_config.search_alg, tune_config.scheduler = search_alg, scheduler
    run_config.callbacks = list(callbacks)


def trial_dirname(trial) -> str:
    """``<condition>_<method>_<trial id>``: readable folder and trial names instead of every parameter."""
    return f"{trial.config.get('condition', 'trial')}_{trial.config.get('method', '')}_{trial.trial_id}"


def build_tuner(spec: StudySpec, folder: StudyFolder, study: StudyRun | None, progress: ProgressView) -> tune.Tuner:
    """``study``: the MLflow parent run, or ``None`` for a study without MLflow (``mlflow: false``)."""
    arms = study_arms(spec)
    context = TrialContext(base_docs={m: base_trial_doc(spec, m) for m in spec.methods}, study=study,
                           classifier_cache=str(folder.classifier_cache), replay=spec.replay)
    trainable = tune.with_resources(tune.with_parameters(semtune_trainable, context=context),
                                    {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    # Every path below is the folder's the study runs from now, also on restore.
    router = build_router(spec, arms, folder.optuna_url)
    scheduler = build_scheduler(
        spec.pruner, max_epochs=spec.budget.stage1_epochs + spec.budget.stage2_epochs, storage=folder.optuna_url,
        study_prefix=spec.name, state_path=folder.scheduler_state, seed=spec.seed,
    )
    callbacks = [RunFinalizer(study), progress] if study is not None else [progress]
    if tune.Tuner.can_restore(str(folder.tune_dir)):
        repair_lagging_checkpoints(folder.tune_dir)
        relocate_search_state(folder.tune_dir, spec.budget.max_concurrent)
        tuner = tune.Tuner.restore(str(folder.tune_dir), trainable, resume_unfinished=True, resume_errored=False)
        use_on_restore(tuner, router, scheduler, callbacks)
        return tuner
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=router, scheduler=scheduler,
            num_samples=sum(a.trials for a in arms),
            max_concurrent_trials=spec.budget.max_concurrent,
            # A trained trial gets a fresh worker process (torch threads, memory); a replayed one is a
            # table lookup, and starting a process per trial would be most of what a replay study measures.
            reuse_actors=bool(spec.replay),
            trial_dirname_creator=trial_dirname, trial_name_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=folder.tune_dir.name, storage_path=str(folder.path), verbose=0,
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=spec.budget.max_failures, fail_fast=False),
        ),
    )
