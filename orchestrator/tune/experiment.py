"""One Tune run for a whole study: every condition's trials share the cluster.

Builds the ``Tuner`` from a validated spec (or restores it from the study folder): the
trainable with its resources, the condition router over Optuna, the pruning scheduler, and the
driver-side callbacks (MLflow bookkeeping, the progress view).

A restored Tuner runs with the same objects, built for the folder it is restored from, not with the
copies Tune pickled when the study started (their paths are those of that time; the folder may
have moved since), from Tune's last snapshot made to agree with what happened after it:
see :mod:`orchestrator.tune.restore`.
"""

from __future__ import annotations

from ray import tune

from orchestrator.spec import StudySpec, base_trial_doc, study_arms
from orchestrator.study.folder import StudyFolder, optuna_storage_url
from orchestrator.tracking.runs import StudyRun
from orchestrator.tune.callbacks import RunFinalizer
from orchestrator.tune.progress import ProgressView
from orchestrator.tune.restore import (adopt_orphaned_trials, relocate_search_state, repair_lagging_checkpoints,
                                       settle_ended_trials, use_on_restore)
from orchestrator.tune.schedulers import build_scheduler
from orchestrator.tune.search import build_router
from orchestrator.tune.storage import study_tune_storage
from orchestrator.tune.trainable import TrialContext, semtune_trainable


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
    optuna_url = optuna_storage_url(spec, folder)
    router = build_router(spec, arms, optuna_url)
    scheduler = build_scheduler(
        spec.pruner, max_epochs=spec.budget.stage1_epochs + spec.budget.stage2_epochs,
        stage1_epochs=spec.budget.stage1_epochs, storage=optuna_url,
        study_prefix=spec.name, state_path=folder.scheduler_state, seed=spec.seed,
    )
    callbacks = [RunFinalizer(study), progress] if study is not None else [progress]
    storage = study_tune_storage(spec, folder)
    if tune.Tuner.can_restore(storage.path, storage_filesystem=storage.filesystem):
        repair_lagging_checkpoints(storage)
        adopt_orphaned_trials(storage, router, spec.budget.stage1_epochs + spec.budget.stage2_epochs, trial_dirname)
        settle_ended_trials(storage, router, study)
        relocate_search_state(storage, spec.budget.max_concurrent)
        tuner = tune.Tuner.restore(storage.path, trainable, resume_unfinished=True, resume_errored=False,
                                   storage_filesystem=storage.filesystem)
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
            name=storage.name, storage_path=storage.parent, storage_filesystem=storage.filesystem, verbose=0,
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=spec.budget.max_failures, fail_fast=False),
        ),
    )
