"""(b) The driver of a real study is SIGKILLed mid-study; ``semtune resume`` completes it.

The study runs in a subprocess (``semtune run``, its own local Ray), is killed once some trials have
finished and others are mid-training, and is resumed with ``semtune resume``. Afterwards nothing is
lost or duplicated (:func:`study_cli.assert_resumed_whole`). The graceful stop (SIGTERM, as
``ray job stop`` sends it) is drilled on real ``ray start`` processes in ``test_ray_jobs.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.spec import load_spec
from orchestrator.study.folder import StudyFolder
from study_cli import SEMTUNE, assert_resumed_whole, semtune_env, wait_mid_study  # tests/ is on the pythonpath

pytestmark = pytest.mark.slow


def test_killed_driver_resumes_without_lost_or_duplicated_runs(write_study, tmp_path):
    """SIGKILL: nothing runs on the driver's side; its local Ray goes with it, as with a lost head."""
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
        before = wait_mid_study(folder, lambda: proc.poll() is None)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only; its local Ray notices and shuts down
        proc.wait(timeout=120)
        time.sleep(3)
    finally:
        try:  # whatever of that Ray session is still alive goes too, as after a lost head node
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
    record = folder.read_record()
    assert MlflowClient(record.tracking_uri).get_run(record.parent_run_id).info.status == "RUNNING"  # nobody closed it
    assert len(before) < n_expected

    done = subprocess.run([*SEMTUNE, "resume", str(folder.path)], cwd=tmp_path, env=semtune_env(),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "resuming study 'killed'" in done.stderr
    assert f"study finished: {n_expected} trials" in done.stdout, done.stdout
    assert_resumed_whole(folder, n_expected, before)
