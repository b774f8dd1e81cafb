"""(c) The MLflow server goes away mid-study and comes back: no metric lost, no trial failed.

``patiently`` retries only errors that say the server was away; a trial's epoch waits for a server
stopped and started again on the same port and store. Slow: a real study logging over http has its
server stopped for 30 s mid-training and restarted; it completes with every trial's run and every
epoch's metrics. MLflow's own retries are switched off (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``) so
that what is tested is semtune's waiting, not the client's back-off.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
from mlflow.tracking import MlflowClient

from orchestrator.outcomes import Outcome
from orchestrator.spec import load_spec
from orchestrator.study.folder import StudyFolder
from orchestrator.tracking import patience
from orchestrator.tracking.patience import is_outage, patiently
from orchestrator.tracking.runs import TrialRun
from servers import MlflowServer
from study_cli import SEMTUNE, semtune_env, trial_runs  # tests/ is on the pytest pythonpath



def test_only_an_outage_is_waited_out(monkeypatch):
    monkeypatch.setattr(patience, "PAUSE_S", 0.01)
    calls = []

    def refused():
        calls.append("refused")
        raise MlflowException("no such run", error_code=RESOURCE_DOES_NOT_EXIST)

    with pytest.raises(MlflowException, match="no such run"):
        patiently(refused)
    assert calls == ["refused"]  # a wrong request is not retried

    def away_twice():
        calls.append("away")
        if calls.count("away") <= 2:
            raise MlflowException("API request failed with exception: Connection refused")  # INTERNAL_ERROR
        return 7

    assert patiently(away_twice) == 7 and calls.count("away") == 3
    with pytest.raises(OSError):
        patiently(lambda: (_ for _ in ()).throw(ConnectionRefusedError()), patience_s=0.05)
    assert is_outage(OSError()) and not is_outage(ValueError())


def test_an_epoch_waits_for_the_server_to_come_back(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr(patience, "PAUSE_S", 0.2)
    server = MlflowServer(tmp_path).start()
    try:
        client = MlflowClient(server.url)
        run_id = client.create_run(client.create_experiment("outage")).info.run_id
        trial = TrialRun(client, run_id, last_step=0)
        trial.log_epoch({"epoch": 1, "accuracy": 0.25})
        server.stop()
        back = threading.Timer(3, server.start)
        back.start()
        with caplog.at_level(logging.WARNING, logger="orchestrator.tracking.patience"):
            trial.log_epoch({"epoch": 2, "accuracy": 0.5})  # the server is away: this waits, then logs
        back.join()
        trial.finish(Outcome("completed"))
        assert "MLflow unreachable" in caplog.text and "reachable again" in caplog.text
        history = [(m.step, m.value) for m in client.get_metric_history(run_id, "accuracy")]
        assert history == [(1, 0.25), (2, 0.5)]
        assert client.get_run(run_id).info.status == "FINISHED"
    finally:
        server.stop()


def _trained_runs(client: MlflowClient) -> list:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return [r for r in client.search_runs(experiments, filter_string="tags.`semtune.kind` = 'trial'")
            if r.data.metrics.get("epoch")]


@pytest.mark.slow
def test_a_study_outlasts_its_mlflow_server_stopped_for_30_s(write_study, tmp_path):
    (tmp_path / "server").mkdir()
    server = MlflowServer(tmp_path / "server").start()
    path = write_study(name="outage", tracking_uri=server.url, pruner={"name": "none"},
                       budget={"trials_per_condition": 1, "stage1_epochs": 2, "stage2_epochs": 2})
    spec = load_spec(path)
    n_expected = spec.budget.trials_per_condition * len(spec.conditions.kn)
    client = MlflowClient(server.url)
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen([*SEMTUNE, "run", str(path)], cwd=tmp_path, stdout=log, stderr=log, start_new_session=True,
                            env=semtune_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"))  # MLflow's own retries off
    try:
        deadline = time.time() + 300
        while not _trained_runs(client):
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.5)
        server.stop()  # mid-training: a trial has logged an epoch
        time.sleep(30)
        assert proc.poll() is None, "the study ended while its MLflow server was away"
        server.start()
        assert proc.wait(timeout=600) == 0, (tmp_path / "run.log").read_text()[-4000:]

        out = (tmp_path / "run.log").read_text()
        assert f"study finished: {n_expected} trials" in out, out[-3000:]
        record = StudyFolder.for_spec(spec).read_record()
        runs = trial_runs(client, record.experiment_id)
        assert len({r.data.tags["semtune.trial_id"] for r in runs}) == len(runs) == n_expected
        for r in runs:  # no trial failed, and every epoch of every trial is in MLflow once
            assert (r.info.status, r.data.tags["semtune.status"]) == ("FINISHED", "completed"), r.data.tags
            for metric in ("accuracy", "psnr", "epoch"):
                steps = [m.step for m in client.get_metric_history(r.info.run_id, metric)]
                assert steps == [1, 2, 3, 4], (r.data.tags["semtune.trial_id"], metric, steps)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        log.close()
        server.stop()
