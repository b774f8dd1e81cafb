"""Restoring an interrupted study's Tune run: make Tune's last snapshot agree with what happened after it.

Tune snapshots the experiment on its own clock and when a trial is added (:mod:`orchestrator.tune.snapshots`),
not at every checkpoint, so a driver killed between two snapshots leaves one that lags the study:

- a trial checkpointed since (:func:`repair_lagging_checkpoints`);
- a trial added since, which Optuna recorded when it was asked (:func:`adopt_orphaned_trials`);
- a trial ended since, whose verdict Optuna and MLflow already hold (:func:`settle_ended_trials`):
  restored as unfinished, it would train again and its second ending would contradict the first;
- the folder moved since (:func:`relocate_search_state`, :func:`use_on_restore`).

Each is a rewrite of Tune's saved state before ``Tuner.restore`` reads it (Ray has no option for
any of them), atomic, and idempotent: a resume that is itself killed can be resumed again. The state
is read and written through :class:`~orchestrator.tune.storage.TuneStorage`: a local folder or object storage.
"""

from __future__ import annotations

import copy
import json
import logging
import posixpath

import pyarrow.fs
import ray
import ray.cloudpickle
from optuna.trial import TrialState
from ray import tune
from ray.train import Checkpoint
from ray.train._internal.checkpoint_manager import _CheckpointManager
from ray.train._internal.session import _TrainingResult
from ray.tune.experiment import Trial
from ray.tune.trainable.metadata import _TrainingRunMetadata

from orchestrator.objectives import METRICS
from orchestrator.outcomes import BUDGET_KEY, COMPLETED, EPOCH_KEY, FAILED, FAILURE_KEY, FINISHED, PRUNED, Outcome
from orchestrator.tracking.runs import StudyRun, find_trial_run, finish_run
from orchestrator.tracking.tags import TAG_REASON, TAG_STATUS
from orchestrator.tune.search import (PRUNED_AT_ATTR, RUNG_VALUES_ATTR, TUNE_CONFIG_ATTR, TUNE_TRIAL_ATTR,
                                     ArmRouter, close_orphan, unrecorded_in_tune)
from orchestrator.tune.storage import TuneStorage

log = logging.getLogger(__name__)
_ENDED = ("TERMINATED", "ERROR")  # Tune statuses a restore leaves alone


def _latest(storage: TuneStorage, pattern: str) -> str | None:
    states = storage.glob(pattern)  # Tune reads the newest, by name
    return states[-1] if states else None


def _latest_state(storage: TuneStorage) -> str | None:
    return _latest(storage, "experiment_state-*.json")


def unfinished_in_last_snapshot(storage: TuneStorage) -> int:
    """How many trials Tune's last snapshot holds unfinished: what a resume would continue.

    Tune snapshots the experiment before it stops the running trials, so after a graceful stop
    (Ctrl-C, SIGTERM) they are RUNNING or PENDING here, while the result grid may already count
    them ended: ``ray job stop`` left a grid with every trial ended and the study looked done."""
    path = _latest_state(storage)
    if path is None:
        return 0
    trials = (json.loads(entry[0]) for entry in json.loads(storage.read(path)).get("trial_data", []))
    return sum(t.get("status") not in _ENDED for t in trials)


def repair_lagging_checkpoints(storage: TuneStorage) -> int:
    """Give a restore the checkpoint Tune's last snapshot names, when a kill made the snapshot lag.

    With ``CheckpointConfig(num_to_keep=1)`` Tune deletes a trial's previous checkpoint as soon as
    it registers the next one, and semtune snapshots the experiment when a trial is added and on
    Tune's clock, not per checkpoint (:mod:`orchestrator.tune.snapshots`). A driver killed in between leaves
    a snapshot naming a deleted checkpoint, and the restored trial then fails with "Could not
    recover from checkpoint as it does not exist on storage anymore" (seen in the SIGKILL test).
    Tune has no option for this, so the newer checkpoint is copied under the old name: the trial
    function reads its epoch from the checkpoint's own state, so it continues from the newer one.
    The name is the one a restore loads: the checkpoint manager's latest, not the last result's
    ``checkpoint_dir_name``, which a snapshot taken between the two can hold one ahead (seen in CI).
    """
    path = _latest_state(storage)
    if path is None:
        return 0
    repaired = 0
    for trial_json, runtime_json in json.loads(storage.read(path)).get("trial_data", []):
        trial_dir = storage.join(str(json.loads(trial_json).get("relative_logdir")))
        named = _restored_checkpoint_name(runtime_json)
        if not named or not storage.is_dir(trial_dir) or storage.exists(posixpath.join(trial_dir, named)):
            continue
        newer = [p for p in storage.glob("checkpoint_*", trial_dir)
                 if storage.is_dir(p) and posixpath.basename(p) > named]
        if newer:
            storage.copy_tree(newer[-1], posixpath.join(trial_dir, named))
            log.warning("%s: Tune's snapshot names %s, which a kill left deleted; restoring from %s instead",
                        posixpath.basename(trial_dir), named, posixpath.basename(newer[-1]))
            repaired += 1
    return repaired


def _restored_checkpoint_name(runtime_json: str) -> str | None:
    """The folder name of the checkpoint a restore of this trial loads (Tune's checkpoint manager's
    latest, pickled inside the snapshot's JSON), or ``None`` when it has none."""
    manager = _TrainingRunMetadata.from_json_state(runtime_json).checkpoint_manager
    latest = manager.latest_checkpoint_result if manager is not None else None
    return posixpath.basename(latest.checkpoint.path) if latest and latest.checkpoint else None


def adopt_orphaned_trials(storage: TuneStorage, router: ArmRouter, budget_epochs: int, dirname) -> int:
    """Add to Tune's last snapshot every trial added after it, from what Optuna recorded when it was asked.

    An added trial forces a snapshot only while snapshots are cheap (:mod:`orchestrator.tune.snapshots`),
    so a driver killed between two snapshots leaves trials that Tune's record lacks, though Optuna
    asked them, their MLflow runs exist, and they may have checkpointed or ended. Each is added with
    its own trial id and config, a copy of a recorded trial's Tune state otherwise: its newest
    checkpoint, if any, is where it continues, and one that ended is then settled by
    :func:`settle_ended_trials` from the verdict Optuna holds. Its slot in Tune's concurrency limit is
    taken, as it was before the kill. The restored searcher adopts the same trials
    (``ArmRouter.restore``). Ray has no way to add a trial to a restore: the trials are written into
    the snapshot with Tune's own (de)serialisation of a ``Trial``. ``dirname(trial)``: the study's
    trial folder name. Returns how many.
    """
    path = _latest_state(storage)
    if path is None:
        return 0
    state = json.loads(storage.read(path))
    entries = state.get("trial_data", [])
    known = {json.loads(trial_json).get("trial_id") for trial_json, _ in entries}
    orphans = [(searcher._ot_study, t) for searcher in router.searchers.values()
               for t in unrecorded_in_tune(searcher._ot_study, known)]
    if not orphans:
        return 0
    if not entries:
        # No trial to copy: the driver died in the step that added the first trials, before the snapshot
        # it forces, so none of them has started. They are closed, and new trials asked in their place.
        for study, t in orphans:
            if t.state == TrialState.RUNNING:
                close_orphan(study, t)
        log.warning("%d trial(s) were asked before Tune's first snapshot of a trial; closed, to be asked again",
                    len(orphans))
        return 0
    orphans = [t for _, t in orphans]
    template_json, template_runtime = entries[0]
    checkpoint_config = _TrainingRunMetadata.from_json_state(template_runtime).checkpoint_manager.checkpoint_config
    continuing = 0
    for t in orphans:
        trial = _orphan_trial(template_json, checkpoint_config, t.user_attrs[TUNE_TRIAL_ATTR],
                              t.user_attrs[TUNE_CONFIG_ATTR], budget_epochs, dirname, storage)
        entries.append(list(trial.get_json_state()))
        continuing += t.state == TrialState.RUNNING and trial.checkpoint is not None
    adopted = {t.user_attrs[TUNE_TRIAL_ATTR] for t in orphans}

    def take_slots(search_state) -> bool:
        generator = search_state if isinstance(search_state, dict) else {}
        limiter = generator.get("name:ConcurrencyLimiter")
        if isinstance(limiter, dict):
            new = adopted - set(limiter.get("live_trials", ()))
            limiter["live_trials"] = set(limiter.get("live_trials", ())) | new
            limiter["num_unfinished_live_trials"] = limiter.get("num_unfinished_live_trials", 0) + len(new)
        if isinstance(generator.get("counter"), int):  # Tune's count of created trials, against num_samples
            generator["counter"] = max(generator["counter"], len(entries))  # idempotent, as below
        return True

    # The slots first: a resume killed between the two writes adopts the trials again, and finds their
    # slots taken (a set); the other way round they would complete without their searcher being told.
    _edit_search_state(storage, take_slots)
    storage.write(path, json.dumps(state).encode())
    log.warning("%d trial(s) were added after Tune's last snapshot; adopted from what Optuna recorded "
                "(%d continue from a checkpoint)", len(orphans), continuing)
    return len(orphans)


def _orphan_trial(template_json: str, checkpoint_config, trial_id: str, config: dict, budget_epochs: int,
                  dirname, storage: TuneStorage) -> Trial:
    """Tune's ``Trial`` of an orphan: the template's, with the orphan's id, config, folder and newest checkpoint."""
    trial = Trial.from_json_state(template_json, stub=True)  # stub: the trainable need not be registered here
    trial.trial_id, trial.stub = trial_id, False
    trial.config = dict(config)
    trial._Trial__unresolved_config = dict(config)
    trial.evaluated_params = dict(config)
    trial.experiment_tag = f"adopted_{trial_id}"
    trial.relative_logdir = trial.custom_trial_name = trial.custom_dirname = dirname(trial)
    trial.storage = copy.copy(trial.storage)
    trial.storage.trial_dir_name = trial.relative_logdir
    trial.storage.current_checkpoint_index = -1  # Tune numbers the trial's next checkpoint one past this
    trial.status = Trial.PENDING
    metadata = _TrainingRunMetadata()
    metadata.checkpoint_manager = _CheckpointManager(checkpoint_config)
    metadata.last_result = {"trial_id": trial_id, "config": dict(config), BUDGET_KEY: budget_epochs}
    checkpoints = [p for p in storage.glob("checkpoint_*", storage.join(trial.relative_logdir)) if storage.is_dir(p)]
    if checkpoints:  # the trial continues from its newest, as a lagging snapshot's trial does
        name = posixpath.basename(checkpoints[-1])
        trial.storage.current_checkpoint_index = int(name.rpartition("_")[2])  # not the template's
        checkpoint = Checkpoint(path=posixpath.join(trial.storage.trial_fs_path, name),
                                filesystem=trial.storage.storage_filesystem)
        metadata.checkpoint_manager.register_checkpoint(_TrainingResult(checkpoint, dict(metadata.last_result)))
    trial.run_metadata = metadata
    trial.invalidate_json_state()
    return trial


def relocate_search_state(storage: TuneStorage, max_concurrent: int | None = None) -> bool:
    """Make Tune's saved search state create new trials in ``storage``, where it is restored from.

    Ray 2.60 restores its search algorithm's ``Experiment`` from ``search_gen_state-*.json``
    (cloudpickled) with the storage of the first run: after the study folder moved, every trial
    created after the restore had its storage at the old place and failed at its first checkpoint
    ("Unable to set up cluster storage", reproduced; restored trials are relocated by Tune itself),
    or, with the old folder still there, wrote its checkpoints into it. The same file holds the
    concurrency limit of the first run, which is set to ``max_concurrent`` (``budget.max_concurrent``
    may change on resume). Rewritten in place, atomically; returns whether anything changed.
    """
    def relocate(state) -> bool:
        changed = False
        experiment = state.get("experiment") if isinstance(state, dict) else None
        saved = getattr(experiment, "storage", None)
        here = (storage.parent, storage.name)
        if (storage.is_local and isinstance(getattr(saved, "storage_filesystem", None), pyarrow.fs.LocalFileSystem)
                and (saved.storage_fs_path, saved.experiment_dir_name) != here):
            log.info("Tune's search state names the experiment %s/%s; new trials go to %s instead",
                     saved.storage_fs_path, saved.experiment_dir_name, storage.path)
            saved.storage_fs_path, saved.experiment_dir_name = here  # experiment.spec["storage"] is this object
            changed = True
        limiter = state.get("name:ConcurrencyLimiter") if isinstance(state, dict) else None
        if max_concurrent and isinstance(limiter, dict) and limiter.get("max_concurrent") not in (None, max_concurrent):
            limiter["max_concurrent"] = max_concurrent
            changed = True
        return changed

    return _edit_search_state(storage, relocate)


def _edit_search_state(storage: TuneStorage, edit) -> bool:
    """Apply ``edit(state) -> changed`` to Tune's newest saved search state (``search_gen_state-*.json``,
    cloudpickled: the search algorithm's ``Experiment`` and its ``ConcurrencyLimiter``), and write it
    back atomically if it changed. Returns whether it did."""
    path = _latest(storage, "search_gen_state-*.json")
    if path is None:
        return False
    state = ray.cloudpickle.loads(storage.read(path))
    if not edit(state):
        return False
    storage.write(path, ray.cloudpickle.dumps(state))
    return True


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


def told_verdicts(router: ArmRouter) -> dict[str, object]:
    """Tune trial id → the finished Optuna trial its searcher was told, over every arm's study."""
    verdicts = {}
    for searcher in router.searchers.values():
        study = searcher._ot_study
        for t in study._storage.get_all_trials(study._study_id, deepcopy=False,
                                               states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
            trial_id = t.user_attrs.get(TUNE_TRIAL_ATTR)
            if trial_id:
                verdicts[trial_id] = t
    return verdicts


def _outcome(told) -> Outcome:
    if told.state == TrialState.COMPLETE:
        return Outcome(COMPLETED)
    if told.state == TrialState.PRUNED:
        return Outcome(PRUNED, pruned_at_epoch=told.user_attrs.get(PRUNED_AT_ATTR))
    return Outcome(FAILED, reason="failed before the study was interrupted (Optuna's verdict)")


def _told_result(last_result: dict, told) -> dict:
    """The trial's last result as its searcher was told it (a lagging snapshot holds an older one):
    what a study without MLflow adds up, and what the progress view shows."""
    result = dict(last_result)
    budget = result.get(BUDGET_KEY)
    if told.state == TrialState.COMPLETE:
        result.update({EPOCH_KEY: budget, **dict(zip(METRICS, told.values))})
    elif told.state == TrialState.PRUNED:
        if told.user_attrs.get(PRUNED_AT_ATTR) is not None:
            result[EPOCH_KEY] = told.user_attrs[PRUNED_AT_ATTR]
        result.update(dict(zip(METRICS, told.user_attrs.get(RUNG_VALUES_ATTR, ()))))
    else:
        result[FAILURE_KEY] = result.get(FAILURE_KEY) or _outcome(told).reason
    return result


def _release_concurrency_slots(storage: TuneStorage, trial_ids: set[str]) -> None:
    """Tune's ``ConcurrencyLimiter`` frees a trial's slot when the trial completes; a trial settled
    before the restore never completes again, so its slot is freed in the saved search state (else
    each one would lower ``max_concurrent`` for good, and with 1 the study would wait forever)."""
    def free(state) -> bool:
        limiter = state.get("name:ConcurrencyLimiter") if isinstance(state, dict) else None
        freed = trial_ids & set(limiter.get("live_trials", ())) if isinstance(limiter, dict) else set()
        if not freed:
            return False
        limiter["live_trials"] = limiter["live_trials"] - freed
        limiter["num_unfinished_live_trials"] = max(0, limiter.get("num_unfinished_live_trials", 0) - len(freed))
        return True

    _edit_search_state(storage, free)


def settle_ended_trials(storage: TuneStorage, router: ArmRouter, study: StudyRun | None) -> int:
    """Mark ended in Tune's last snapshot every trial whose searcher was told its verdict after it.

    The Optuna storage is written when a trial ends; Tune's snapshot comes later (when the next trial
    is added, or on Tune's clock). A driver killed in between left a snapshot in which the trial still
    runs: restored so, it trained again from its checkpoint, and MO-ASHA, now ranking it among more
    trials, could stop it, so that MLflow said "pruned" where Optuna said COMPLETE (seen in CI). The
    trial is set TERMINATED with its told result, and its MLflow run is ended with the same verdict
    when the kill came before :class:`~orchestrator.tune.callbacks.RunFinalizer` did it. Returns how many.
    """
    path = _latest_state(storage)
    if path is None:
        return 0
    state = json.loads(storage.read(path))
    verdicts = told_verdicts(router)
    settled = []
    for entry in state.get("trial_data", []):
        trial = json.loads(entry[0])
        told = verdicts.get(trial.get("trial_id"))
        if told is None or trial.get("status") in _ENDED:
            continue
        runtime = json.loads(entry[1])
        runtime["last_result"] = _told_result(runtime.get("last_result") or {}, told)
        trial["status"] = "TERMINATED"
        entry[0], entry[1] = json.dumps(trial, indent=2), json.dumps(runtime, indent=2)
        settled.append((trial["trial_id"], storage.describe(storage.join(str(trial.get("relative_logdir")))), told))
    if not settled:
        return 0
    # The slots first: a resume killed between the two writes settles the trials again, and finds
    # their slots already free; the other way round their slots would stay taken.
    _release_concurrency_slots(storage, {trial_id for trial_id, _, _ in settled})
    storage.write(path, json.dumps(state).encode())
    if study is not None:
        client = study.client()
        for trial_id, trial_dir, told in settled:
            run = find_trial_run(client, study, trial_id)
            if run is None or run.data.tags.get(TAG_STATUS) in FINISHED:
                continue  # RunFinalizer ended it before the kill (or it never opened one)
            outcome = _outcome(told)
            finish_run(client, run.info.run_id, outcome, trial_dir, keep_reason=TAG_REASON in run.data.tags)
            if run.info.status == "KILLED":  # marked interrupted by a graceful stop: it had ended after all
                client.set_terminated(run.info.run_id, status="FAILED" if outcome.status == FAILED else "FINISHED")
    log.warning("%d trial(s) ended after Tune's last snapshot; restored as ended, with the verdict Optuna holds",
                len(settled))
    return len(settled)
