"""One Tune run for a whole study: every condition's trials share the cluster.

Builds the ``Tuner`` from a validated spec (or restores it from the study folder): the
trainable with its resources, the condition router over Optuna, the pruning scheduler, and the
driver-side callbacks (MLflow bookkeeping, the progress view).
"""

from __future__ import annotations

from ray import tune

from orchestrator.spec import StudySpec, base_trial_doc, condition_grid
from orchestrator.study.folder import StudyFolder
from orchestrator.tracking.runs import StudyRun
from orchestrator.tune.callbacks import RunFinalizer
from orchestrator.tune.progress import ProgressView
from orchestrator.tune.schedulers import build_scheduler
from orchestrator.tune.search import build_router
from orchestrator.tune.trainable import TrialContext, semtune_trainable


def trial_dirname(trial) -> str:
    """``<condition>_<method>_<trial id>``: readable folder and trial names instead of every parameter."""
    return f"{trial.config.get('condition', 'trial')}_{trial.config.get('method', '')}_{trial.trial_id}"


def build_tuner(spec: StudySpec, folder: StudyFolder, study: StudyRun, progress: ProgressView) -> tune.Tuner:
    conditions = condition_grid(spec)
    context = TrialContext(base_docs={m: base_trial_doc(spec, m) for m in spec.methods}, study=study,
                           classifier_cache=str(folder.classifier_cache))
    trainable = tune.with_resources(tune.with_parameters(semtune_trainable, context=context),
                                    {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    if tune.Tuner.can_restore(str(folder.tune_dir)):
        return tune.Tuner.restore(str(folder.tune_dir), trainable, resume_unfinished=True, resume_errored=False)
    scheduler = build_scheduler(
        spec.pruner, max_epochs=spec.budget.stage1_epochs + spec.budget.stage2_epochs, storage=folder.optuna_url,
        study_prefix=spec.name, state_path=folder.scheduler_state, seed=spec.seed,
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
            callbacks=[RunFinalizer(study), progress],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=spec.budget.max_failures, fail_fast=False),
        ),
    )
