"""(d) The driver of a real study is killed mid-study; ``semtune resume`` completes it.

The study runs in a subprocess (``semtune run``, its own local Ray), is killed (SIGKILL, or SIGTERM) once
some trials have finished and others are mid-training, and is resumed with ``semtune resume``.
Afterwards: exactly the spec's number of trials, one MLflow run each (found by trial id), none
RUNNING, each run's metric history one point per epoch (a resumed trial continued its own run),
and every Optuna trial that ran to a result matches its run's status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import optuna
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from orchestrator.spec import load_spec
from orchestrator.study.folder import StudyFolder
from study_cli import SEMTUNE, semtune_env, trial_runs  # tests/ is on the pytest pythonpath

pytestmark = pytest.mark.slow
OPTUNA_STATE = {"completed": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}


def _wait_mid_study(folder: StudyFolder, proc: subprocess.Popen, timeout_s: float = 300) -> list:
    """Poll MLflow until one trial has finished and another has logged an epoch but not finished."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert proc.poll() is None, f"the study ended before it could be interrupted (rc {proc.returncode})"
        if folder.exists() and (folder.path / "mlflow.db").exists():
            record = folder.read_record()
            runs = trial_runs(MlflowClient(record.tracking_uri), record.experiment_id)
            finished = [r for r in runs if r.data.tags.get("semtune.status") in OPTUNA_STATE]
            training = [r for r in runs if r.data.tags.get("semtune.status") == "running" and r.data.metrics]
            if finished and training:
                return runs
        time.sleep(0.5)
    pytest.fail("the study never reached a state with finished and running trials")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_interrupted_driver_resumes_without_lost_or_duplicated_runs(write_study, tmp_path, sig):
    """SIGKILL: nothing runs on the driver's side. SIGTERM (``ray job stop``): a graceful stop that
    saves Tune's state, marks the unfinished trials' runs KILLED/interrupted and exits with 130."""
    path = write_study(name="killed", budget={"trials_per_condition": 4, "max_concurrent": 2,
                                              "stage1_epochs": 2, "stage2_epochs": 2},
                       pruner={"name": "moasha", "grace_epochs": 1, "reduction_factor": 2})
    spec = load_spec(path)
    folder = StudyFolder.for_spec(spec)
    n_expected = spec.budget.trials_per_condition * len(spec.conditions.kn) * len(spec.conditions.snr_db)

    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen([*SEMTUNE, "run", str(path)], cwd=tmp_path, env=semtune_env(), stdout=log, stderr=log,
                            start_new_session=True)
    try:
        before = _wait_mid_study(folder, proc)
        os.kill(proc.pid, sig)  # the driver only; its local Ray notices and shuts down
        proc.wait(timeout=120)
        time.sleep(3)
    finally:
        try:  # whatever of that Ray session is still alive goes too, as after a lost head node
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
    record = folder.read_record()
    client = MlflowClient(record.tracking_uri)
    parent = client.get_run(record.parent_run_id).info.status
    if sig == signal.SIGKILL:
        assert parent == "RUNNING"  # nobody closed it: the driver was killed
    else:
        assert proc.returncode == 130, (tmp_path / "run.log").read_text()[-3000:]
        assert "study interrupted" in (tmp_path / "run.log").read_text()
        assert parent == "KILLED"
        runs = trial_runs(client, record.experiment_id)
        assert not [r for r in runs if r.info.status == "RUNNING"]
        assert all(r.info.status == "KILLED" for r in runs if r.data.tags["semtune.status"] == "interrupted")
    assert len(before) < n_expected

    done = subprocess.run([*SEMTUNE, "resume", str(folder.path)], cwd=tmp_path, env=semtune_env(),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "resuming study 'killed'" in done.stderr
    assert f"study finished: {n_expected} trials" in done.stdout, done.stdout

    runs = trial_runs(client, record.experiment_id)
    ids = [r.data.tags["semtune.trial_id"] for r in runs]
    assert len(ids) == len(set(ids)) == n_expected
    assert not [r for r in trial_runs(client, record.experiment_id, ViewType.ALL) if r.info.status == "RUNNING"]
    assert client.get_run(record.parent_run_id).info.status == "FINISHED"
    for r in runs:
        assert r.info.status in ("FINISHED", "FAILED")
        status = r.data.tags["semtune.status"]
        assert status in ("completed", "pruned"), (status, r.data.tags.get("semtune.failure_reason"))
        epochs = [m.step for m in client.get_metric_history(r.info.run_id, "accuracy")]
        assert epochs == list(range(1, int(r.data.metrics["epoch"]) + 1)), (r.data.tags["semtune.trial_id"], epochs)
    # Trials that ran before the kill kept their runs (same run ids), so nothing was lost.
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
            run = by_trial.get(t.user_attrs.get("tune_trial_id"))
            if run is not None:
                assert t.state.name == OPTUNA_STATE[run.data.tags["semtune.status"]]
                told += 1
    assert told == n_expected
