"""One Tune run for a whole study: every condition's trials share the cluster.

Builds the ``Tuner`` from a validated spec (or restores it from the study folder): the
trainable with its resources, the condition router over Optuna, the pruning scheduler, and the
driver-side callbacks (MLflow bookkeeping, the progress view).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from ray import tune

from orchestrator.spec import StudySpec, base_trial_doc, condition_grid
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
    it registers the next one, and snapshots the experiment just after. A driver killed in between
    leaves a snapshot naming a deleted checkpoint, and the restored trial then fails with "Could not
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
        repair_lagging_checkpoints(folder.tune_dir)
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
