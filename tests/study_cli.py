"""Running studies as a user does, in a subprocess, and reading their trial runs back from MLflow."""

from __future__ import annotations

import os
import sys

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

SEMTUNE = [sys.executable, "-m", "orchestrator.cli"]


def semtune_env(**extra: str) -> dict:
    """This environment without a tracking URI or Ray address of the machine's, Ray's token
    authentication off (the study starts its own local Ray), and ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    return {**env, "RAY_AUTH_MODE": "disabled", **extra}


def trial_runs(client: MlflowClient, experiment_id: str, view=ViewType.ACTIVE_ONLY) -> list:
    """Every trial run of the experiment (``semtune.kind`` = trial)."""
    return client.search_runs([experiment_id], filter_string="tags.`semtune.kind` = 'trial'",
                              run_view_type=view, max_results=1000)


# A trial run's final semtune.status -> the state of its Optuna trial.
OPTUNA_STATE = {"completed": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}


def wait_mid_study(folder, still_running, timeout_s: float = 300, training_ok=lambda run: True) -> list:
    """Poll the study's MLflow runs until one trial has finished and another (one that
    ``training_ok(run)`` accepts) has logged an epoch but not finished; return the runs then.
    ``still_running()`` says whether the study's driver lives."""
    import time

    import pytest

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert still_running(), "the study ended before it could be interrupted"
        if folder.exists():
            record = folder.read_record()
            runs = trial_runs(MlflowClient(record.tracking_uri), record.experiment_id)
            finished = [r for r in runs if r.data.tags.get("semtune.status") in OPTUNA_STATE]
            training = [r for r in runs if r.data.tags.get("semtune.status") == "running" and r.data.metrics
                        and training_ok(r)]
            if finished and training:
                return runs
        time.sleep(0.5)
    pytest.fail("the study never reached a state with finished and running trials")


# Added trials force no snapshot and Tune's clock is out of reach: a kill leaves trials to adopt.
ORPHANS_ENV = {"SEMTUNE_SNAPSHOT_SHARE": "0", "TUNE_GLOBAL_CHECKPOINT_S": "3600"}


def unrecorded_by_tune(storage):
    """For ``wait_mid_study(training_ok=…)``: a trial run whose trial Tune's newest snapshot in ``storage``
    (a TuneStorage) lacks and that has checkpointed, so that the kill leaves a trial to adopt that
    continues from its checkpoint."""
    import json

    def ok(run) -> bool:
        states = storage.glob("experiment_state-*.json")
        if not states:
            return False
        try:
            known = {json.loads(t)["trial_id"] for t, _ in json.loads(storage.read(states[-1]))["trial_data"]}
        except ValueError:  # read while Tune was copying it to the storage
            return False
        trial_id = run.data.tags["semtune.trial_id"]
        return trial_id not in known and any(storage.glob("checkpoint_*", d) for d in storage.glob(f"*_{trial_id}"))
    return ok


def assert_adopted(log_text: str) -> None:
    """The resume adopted trials that Tune's last snapshot lacked, one at least continuing from its
    checkpoint, and Tune numbered that trial's checkpoints on from it."""
    import re

    adopted = re.search(r"(\d+) trial\(s\) were added after .* \((\d+) continue from a checkpoint\)", log_text)
    assert adopted and int(adopted[2]) >= 1, adopted
    assert "Error handling checkpoint" not in log_text


def assert_gracefully_interrupted(client: MlflowClient, record) -> None:
    """After a graceful stop: the parent run KILLED, no trial run RUNNING, the unfinished ones KILLED
    with status ``interrupted``."""
    assert client.get_run(record.parent_run_id).info.status == "KILLED"
    runs = trial_runs(client, record.experiment_id)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert all(r.info.status == "KILLED" for r in runs if r.data.tags["semtune.status"] == "interrupted")


def assert_resumed_whole(folder, n_expected: int, before: list) -> list:
    """A study interrupted and resumed lost and duplicated nothing: exactly ``n_expected`` trials, one
    MLflow run each (by trial id), none RUNNING, each run's metric history one point per epoch (a
    resumed trial continued its own run), the runs seen ``before`` the interruption kept, and every
    Optuna trial that ran to a result matching its run's status. Returns the trial runs."""
    import optuna

    from orchestrator.tune.search import TUNE_TRIAL_ATTR

    record = folder.read_record()
    client = MlflowClient(record.tracking_uri)
    runs = trial_runs(client, record.experiment_id)
    ids = [r.data.tags["semtune.trial_id"] for r in runs]
    assert len(ids) == len(set(ids)) == n_expected, sorted(ids)
    assert not [r for r in trial_runs(client, record.experiment_id, ViewType.ALL) if r.info.status == "RUNNING"]
    assert client.get_run(record.parent_run_id).info.status == "FINISHED"
    for r in runs:
        assert r.info.status in ("FINISHED", "FAILED")
        status = r.data.tags["semtune.status"]
        assert status in ("completed", "pruned"), (status, r.data.tags.get("semtune.failure_reason"))
        epochs = [m.step for m in client.get_metric_history(r.info.run_id, "accuracy")]
        assert epochs == list(range(1, int(r.data.metrics["epoch"]) + 1)), (r.data.tags["semtune.trial_id"], epochs)
    # Trials that ran before the interruption kept their runs (same run ids), so nothing was lost.
    survivors = {r.info.run_id for r in runs}
    kept = [r for r in before if r.data.tags.get("semtune.status") in OPTUNA_STATE]
    assert kept and all(r.info.run_id in survivors for r in kept)

    storage = optuna.storages.RDBStorage(folder.optuna_url)
    by_trial = {r.data.tags["semtune.trial_id"]: r for r in runs}
    told = 0
    for summary in optuna.get_all_study_summaries(storage):
        if summary.study_name.endswith("/pruning"):
            continue
        for t in optuna.load_study(study_name=summary.study_name, storage=storage).trials:
            assert t.state != optuna.trial.TrialState.RUNNING, (summary.study_name, t.number)
            run = by_trial.get(t.user_attrs.get(TUNE_TRIAL_ATTR))
            if run is not None:
                assert t.state.name == OPTUNA_STATE[run.data.tags["semtune.status"]]
                told += 1
    assert told == n_expected
    return runs
