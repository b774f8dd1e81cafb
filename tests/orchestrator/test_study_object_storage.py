"""A study on object storage: Tune's trials, checkpoints and snapshots on a real S3-compatible server
(moto on 127.0.0.1), the driver's state in the local study folder; killed mid-study, resumed from there.

The endpoint is named in ``storage_path`` (``?endpoint_override=…&scheme=http``) and the credentials come
from the environment, as on a cluster where every node has them."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import yaml

from orchestrator.spec import load_spec
from orchestrator.study.folder import StudyFolder
from orchestrator.tracking.tags import TAG_TRIAL_DIR
from orchestrator.tune.storage import remote_tune_storage
from study_cli import (ORPHANS_ENV, SEMTUNE, assert_adopted, assert_resumed_whole, semtune_env,  # tests/ is on the pythonpath
                       unrecorded_by_tune, wait_mid_study)

pytestmark = pytest.mark.slow


def test_a_study_on_object_storage_is_killed_and_resumed_from_there(write_study, tmp_path, s3_server, monkeypatch):
    """Killed while trials that only Optuna recorded have checkpoints on the server (no snapshot forced by
    an added trial, Tune's own clock an hour): the resume adopts them from there. semtune's snapshot policy
    itself is drilled locally (test_study_resume.py); the server adds nothing to it."""
    env = ORPHANS_ENV
    credentials = {k: v for k, v in s3_server.env.items() if k != "AWS_ENDPOINT_URL_S3"}  # the URI names the endpoint
    for k, v in credentials.items():  # for this process's reads of the server too
        monkeypatch.setenv(k, v)
    root = "studies"  # one server for the session: a folder per test
    path = write_study(name="on-s3", storage_path=s3_server.uri(root),
                       budget={"trials_per_condition": 4, "max_concurrent": 2, "stage1_epochs": 2, "stage2_epochs": 2},
                       pruner={"name": "none"})  # the storage is drilled here; MO-ASHA's resume in test_study_resume
    spec = load_spec(path)
    folder = StudyFolder.for_spec(spec)
    assert folder.path == tmp_path / "semtune-studies" / "on-s3"  # state_path's default, beside the study file
    n_expected = spec.budget.trials_per_condition * len(spec.conditions.kn) * len(spec.conditions.snr_db)

    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen([*SEMTUNE, "run", str(path)], cwd=tmp_path, env=semtune_env(**credentials, **env),
                            stdout=log, stderr=log, start_new_session=True)
    try:
        training_ok = unrecorded_by_tune(remote_tune_storage(spec.storage_path, spec.name))
        before = wait_mid_study(folder, lambda: proc.poll() is None, training_ok=training_ok)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=120)
        time.sleep(3)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
    assert len(before) < n_expected
    assert any(k.startswith(f"{root}/on-s3/tune/experiment_state-") for k in s3_server.keys(root))

    done = subprocess.run([*SEMTUNE, "resume", str(folder.path)], cwd=tmp_path, env=semtune_env(**credentials, **env),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"study finished: {n_expected} trials" in done.stdout, done.stdout
    runs = assert_resumed_whole(folder, n_expected, before)
    assert_adopted(folder.log_file.read_text())

    # Tune's experiment is on the server, nothing of it in the study folder; the runs point there.
    keys = s3_server.keys(f"{root}/on-s3")
    assert not (folder.path / "tune").exists()
    assert yaml.safe_load(folder.spec_file.read_text().split("\n", 1)[1])["storage_path"] == spec.storage_path
    for run in runs:
        trial_dir = run.data.tags[TAG_TRIAL_DIR]
        assert trial_dir.startswith(f"s3://semtune-test/{root}/on-s3/tune/"), trial_dir
        prefix = trial_dir.removeprefix("s3://semtune-test/")
        assert any(k.startswith(f"{prefix}/checkpoint_") and k.endswith("/state.pt") for k in keys), (trial_dir, keys)

    # The report logs the front members as MLflow models from their checkpoints on the server.
    report = subprocess.run([*SEMTUNE, "report", str(folder.path)], cwd=tmp_path, env=semtune_env(**credentials),
                            capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr[-4000:]
    assert "model logged as runs:/" in report.stdout, report.stdout[-3000:]
    assert "no checkpoint under" not in report.stdout
    assert list((folder.path / "checkpoints").glob("*/checkpoint_*/state.pt"))

    # A new study of the same name from another folder would restore this one's experiment: refused.
    again = write_study(name="on-s3", storage_path=s3_server.uri(root), state_path=str(tmp_path / "elsewhere"),
                        pruner={"name": "none"})
    refused = subprocess.run([*SEMTUNE, "run", str(again)], cwd=tmp_path, env=semtune_env(**credentials),
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert refused.stderr.strip().startswith("error: storage_path:"), refused.stderr
    assert "already holds the Tune experiment of a study named 'on-s3'" in refused.stderr
    assert "Traceback" not in refused.stderr
