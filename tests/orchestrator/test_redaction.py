"""Credentials in URIs never leave the process: masked in every file, MLflow field, report and log line.

Unit tests of :mod:`orchestrator.spec.redact`, then the study's own writing path on a real
``mlflow server`` (the spec → the study folder → the parent run → a trial run → the report),
with the credentials in the tracking URI: the server runs without authentication and ignores them.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.spec import load_spec
from orchestrator.spec.redact import connectable_uri, redact_uri, redact_values
from orchestrator.tracking.credentials import JOB_CONFIG_VAR, worker_runtime_env
from orchestrator.tracking.runs import StudyRun, as_params, as_tags, run_url
from trainables.config import ConfigError

SECRETS = ("s3cret", "hunter2", "tok3n")


# ---------------------------------------------------------------- redact_uri

@pytest.mark.parametrize("uri, expected", [
    ("http://alice:s3cret@127.0.0.1:5000", "http://alice:***@127.0.0.1:5000"),
    ("https://alice:s3cret@mlflow.example.com/prefix/", "https://alice:***@mlflow.example.com/prefix/"),
    ("s3://AKIAKEY:s3cret@bucket/mlflow", "s3://AKIAKEY:***@bucket/mlflow"),
    ("s3://AKIAKEY:s3c/ret+x@bucket/mlflow", "s3://AKIAKEY:***@bucket/mlflow"),  # AWS secrets hold '/'
    ("postgresql+psycopg2://mlflow:p%40ss@db:5432/mlflow", "postgresql+psycopg2://mlflow:***@db:5432/mlflow"),
    ("http://h:9000/b?access_key=AK&secret_key=s3cret&region=eu",
     "http://h:9000/b?access_key=***&secret_key=***&region=eu"),
    ("https://h/x?X-Amz-Signature=abc&X-Amz-Credential=def&sig=tok3n&v=1",
     "https://h/x?X-Amz-Signature=***&X-Amz-Credential=***&sig=***&v=1"),
    ("http://h/?token=tok3n#frag", "http://h/?token=***#frag"),
    ("http://h/?password=hunter2&api_key=k", "http://h/?password=***&api_key=***"),
])
def test_passwords_and_secret_query_values_are_masked(uri, expected):
    assert redact_uri(uri) == expected


@pytest.mark.parametrize("text", [
    "http://127.0.0.1:5000", "https://mlflow.example.com/", "sqlite:////abs/path/semtune-studies/q/mlflow.db",
    "sqlite:///relative/mlflow.db", "file:///tmp/mlartifacts", "ray://10.0.0.9:10001", "10.0.0.9:6379", "auto",
    "/mnt/shared/semtune-studies", "1/12", "", "http://alice@host:5000",  # a username alone is no secret
    "http://127.0.0.1:5000/#/experiments/1/runs/abc?workflowType=machine_learning",  # the query is in the fragment
    "mlflow-artifacts://host:5000/1/abc/artifacts", "http://h/x?region=eu&bucket=b",
])
def test_uris_without_credentials_are_unchanged(text):
    assert redact_uri(text) == text
    assert connectable_uri(text) == text


def test_every_uri_in_a_text_is_masked():
    line = ("MLflow: http://alice:s3cret@h:5000 (experiment 1); failed to reach 'http://bob:hunter2@g/api?token=tok3n'"
            " [run](http://carol:s3cret@h:5000/#/experiments/1/runs/r)")
    assert redact_uri(line) == ("MLflow: http://alice:***@h:5000 (experiment 1); failed to reach "
                                "'http://bob:***@g/api?token=***' "
                                "[run](http://carol:***@h:5000/#/experiments/1/runs/r)")


def test_documents_are_masked_string_by_string():
    doc = {"name": "s", "tracking_uri": "http://alice:s3cret@h:5000", "resources": {"cpu": 2, "gpu": 0.5},
           "dataset": {"search_dirs": ["/data", "s3://k:hunter2@b/d"]}, "seed": 0, "ray_address": None}
    assert redact_values(doc) == {**doc, "tracking_uri": "http://alice:***@h:5000",
                                  "dataset": {"search_dirs": ["/data", "s3://k:***@b/d"]}}


@pytest.mark.parametrize("real, read_back", [
    ("http://alice:s3cret@127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("postgresql://mlflow:s3cret@db:5432/mlflow?sslmode=require&password=hunter2",
     "postgresql://db:5432/mlflow?sslmode=require"),
    ("http://h:5000/?token=tok3n", "http://h:5000/"),
])
def test_a_masked_uri_read_back_connects_with_the_environments_credentials(real, read_back):
    """What redaction masked is dropped, so MLflow's MLFLOW_TRACKING_USERNAME/PASSWORD are what is sent."""
    assert connectable_uri(redact_uri(real)) == read_back
    assert connectable_uri(real) == real  # a URI the user gave is used as it is


# ---------------------------------------------------------------- where semtune writes or shows one

def test_mlflow_params_tags_and_links_are_masked():
    params = {p.key: p.value for p in as_params({"tracking_uri": "http://alice:s3cret@h:5000", "n": 3, "x": None})}
    assert params == {"tracking_uri": "http://alice:***@h:5000", "n": "3", "x": ""}
    tags = as_tags({"semtune.failure_reason": "ConnectionError: http://alice:s3cret@h:5000/api unreachable"})
    assert tags[0].value == "ConnectionError: http://alice:***@h:5000/api unreachable"
    assert run_url("http://alice:s3cret@h:5000/", "1", "r") == \
        "http://alice:***@h:5000/#/experiments/1/runs/r?workflowType=machine_learning"


def test_the_study_run_is_pickled_without_credentials():
    """Tune writes the pickled StudyRun into the study folder (``tuner.pkl``): workers use the environment."""
    study = StudyRun("http://alice:s3cret@127.0.0.1:5000", "1", "r", "s")
    blob = pickle.dumps(study)
    assert b"s3cret" not in blob
    assert pickle.loads(blob).tracking_uri == "http://alice:***@127.0.0.1:5000"
    assert pickle.loads(blob).client().tracking_uri == "http://127.0.0.1:5000"
    assert study.client().tracking_uri == study.tracking_uri  # the driver's own copy keeps what it was given


def test_the_study_log_and_the_summary_are_masked(tmp_path):
    from orchestrator.study.outcome import StudyOutcome, summary_lines
    from orchestrator.study.quiet import study_log
    from orchestrator.tracking.study_run import add_up

    log_file = tmp_path / "semtune.log"
    with study_log(log_file):
        lg = logging.getLogger("mlflow.test_redaction")
        lg.warning("connecting to %s", "http://alice:s3cret@h:5000")
        try:
            raise ConnectionError("http://bob:hunter2@h:5000/api/2.0/mlflow/runs/create")
        except ConnectionError:
            lg.exception("request failed")
    text = log_file.read_text()
    assert "http://alice:***@h:5000" in text and "http://bob:***@h:5000/api" in text
    assert not any(s in text for s in SECRETS)
    outcome = StudyOutcome(tmp_path, "http://alice:s3cret@h:5000", "1", "r", add_up([]), 0, [], log_file)
    lines = "\n".join(summary_lines(outcome))
    assert "MLflow: http://alice:***@h:5000" in lines and "browse: http://alice:***@h:5000/#/" in lines
    assert "s3cret" not in lines


def test_workers_get_the_credential_variables_a_job_does_not_already_pass(monkeypatch):
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", JOB_CONFIG_VAR):
        monkeypatch.delenv(var, raising=False)
    assert worker_runtime_env() is None
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret")
    assert worker_runtime_env() == {"env_vars": {"MLFLOW_TRACKING_USERNAME": "alice",
                                                 "MLFLOW_TRACKING_PASSWORD": "s3cret"}}
    # `ray job submit --runtime-env` already passes the password: Ray would refuse it twice
    job = {"runtime_env": {"env_vars": {"MLFLOW_TRACKING_PASSWORD": "s3cret"}}}
    monkeypatch.setenv(JOB_CONFIG_VAR, json.dumps(job))
    assert worker_runtime_env() == {"env_vars": {"MLFLOW_TRACKING_USERNAME": "alice"}}


def test_credentials_of_the_tracking_uri_reach_the_workers_through_the_environment(monkeypatch):
    """Workers get the URI masked (StudyRun pickles so): the driver hands them its password as variables."""
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", JOB_CONFIG_VAR):
        monkeypatch.delenv(var, raising=False)
    assert worker_runtime_env("http://alice:s3%2Fcret@127.0.0.1:5000") == {
        "env_vars": {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "s3/cret"}}
    assert worker_runtime_env("http://alice:***@127.0.0.1:5000") is None  # read back masked: nothing to hand over
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "from-env")  # the environment wins
    assert worker_runtime_env("http://alice:s3cret@h:5000")["env_vars"]["MLFLOW_TRACKING_PASSWORD"] == "from-env"


# ---------------------------------------------------------------- end to end on a real MLflow server

def _assert_clean(where: str, text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"{where} holds {leaked}"


@pytest.mark.slow
def test_nothing_the_study_writes_holds_the_credentials(write_study, mlflow_server, tmp_path):
    """The spec → study folder → parent run → trial run → report path of ``semtune run`` and ``semtune report``,
    with credentials in ``tracking_uri`` and ``ray_address`` (no Ray, no training: only what is written)."""
    from orchestrator.outcomes import COMPLETED, Outcome
    from orchestrator.reporting import write_report
    from orchestrator.study.folder import StudyFolder
    from orchestrator.study.preflight import check_tracking
    from orchestrator.study.runner import _open_tracking
    from orchestrator.tracking.collect import collect, locate_study
    from orchestrator.tracking.runs import TrialRun
    from orchestrator.tracking.study_run import record_trial_end

    creds_uri = mlflow_server.replace("http://", "http://alice:s3cret@")
    spec = load_spec(write_study(name="secret", tracking_uri=creds_uri,
                                 ray_address="ray://bob:hunter2@10.0.0.9:10001?token=tok3n"))
    folder = StudyFolder.for_spec(spec)
    check_tracking(creds_uri)  # the preflight reaches the server (urllib cannot open a URL with a password)
    with pytest.raises(ConfigError) as refused:  # nothing answers there: the one line masks the password
        check_tracking("http://alice:s3cret@127.0.0.1:9")
    _assert_clean("the preflight's error", str(refused.value))
    folder.write_spec(spec)
    record = _open_tracking(spec, folder)  # what `semtune run` does once its preflight passed
    assert record.tracking_uri == creds_uri  # the study itself connects with what it was given

    spec_text, record_text = folder.spec_file.read_text(), folder.record_file.read_text()
    _assert_clean("spec.yaml", spec_text)
    _assert_clean("study.json", record_text)
    masked = mlflow_server.replace("http://", "http://alice:***@")
    assert f"tracking_uri: {masked}" in spec_text and json.loads(record_text)["tracking_uri"] == masked

    client = MlflowClient(mlflow_server)  # no credentials: the server ignores them
    parent = client.get_run(record.parent_run_id)
    assert parent.data.params["tracking_uri"] == masked
    assert parent.data.params["ray_address"] == "ray://bob:***@10.0.0.9:10001?token=***"
    _assert_clean("the parent run's params", json.dumps(parent.data.params))
    _assert_clean("the parent run's tags", json.dumps(parent.data.tags))
    _assert_clean("the experiment's tags", json.dumps(client.get_experiment(record.experiment_id).tags))
    artifact = Path(client.download_artifacts(record.parent_run_id, "spec.yaml", str(tmp_path)))
    _assert_clean("the spec artifact", artifact.read_text())

    # a trial in a worker: it gets the StudyRun pickled, without credentials
    study = pickle.loads(pickle.dumps(StudyRun(record.tracking_uri, record.experiment_id, record.parent_run_id,
                                               spec.name)))
    run = TrialRun.open(study, "t1", "snr20_kn1-12/proposed/t1", "snr20_kn1-12", "proposed",
                        {"snr_db": 20, "kn_requested": 1 / 12, "cfg.data.root": creds_uri})
    run.log_epoch({"epoch": 3, "accuracy": 0.5, "psnr": 20.0})
    record_trial_end(study, "t1", "snr20_kn1-12", "proposed", Outcome(COMPLETED), None)
    _assert_clean("the trial run's params", json.dumps(client.get_run(run.run_id).data.params))

    # `semtune report STUDY_DIR` reconnects from study.json (without credentials) ...
    assert folder.read_record().tracking_uri == mlflow_server
    assert len(collect(locate_study(str(folder.path))).trials) == 1
    # ... and with `--tracking-uri` holding them, the report masks them
    collected = collect(locate_study(str(folder.path), tracking_uri=creds_uri))
    files = write_report(collected.trials, collected.meta, tmp_path / "report")
    assert collected.trials["mlflow_run_url"].iloc[0].startswith(masked + "/#/experiments/")
    for name, path in files.items():
        _assert_clean(f"report file {name}", Path(path).read_bytes().decode("utf-8", "replace"))
    assert masked in Path(files["report_md"]).read_text()
