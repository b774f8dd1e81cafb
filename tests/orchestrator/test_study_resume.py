"""(b) The driver of a real study is SIGKILLed mid-study; ``semtune resume`` completes it.

The study runs in a subprocess (``semtune run``, its own local Ray), is killed once some trials have
finished and others are mid-training, and is resumed with ``semtune resume``. Afterwards nothing is
lost or duplicated (:func:`study_cli.assert_resumed_whole`). It runs twice: with semtune's snapshot
policy, and with added trials forcing no snapshot and Tune's clock out of reach, so that the
kill leaves trials Tune's record lacks and the resume must adopt them. The graceful stop (SIGTERM, as
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
from orchestrator.tune.storage import TuneStorage
from study_cli import (ORPHANS_ENV, SEMTUNE, assert_adopted, assert_resumed_whole, semtune_env,  # tests/ is on the pythonpath
                       unrecorded_by_tune, wait_mid_study)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("env", [{}, ORPHANS_ENV], ids=["policy", "orphans"])
def test_killed_driver_resumes_without_lost_or_duplicated_runs(write_study, tmp_path, env):
    """SIGKILL: nothing runs on the driver's side; its local Ray goes with it, as with a lost head."""
    # With orphans the kill waits for a trial Tune's record lacks to be mid-training, without a rung
    # that could stop it meanwhile; pruning decisions across a resume are drilled in the first run.
    pruner = {"name": "none"} if env else {"name": "moasha", "grace_epochs": 1, "reduction_factor": 2}
    path = write_study(name="killed", budget={"trials_per_condition": 4, "max_concurrent": 2,
                                              "stage1_epochs": 2, "stage2_epochs": 2}, pruner=pruner)
    spec = load_spec(path)
    folder = StudyFolder.for_spec(spec)
    n_expected = spec.budget.trials_per_condition * len(spec.conditions.kn) * len(spec.conditions.snr_db)

    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen([*SEMTUNE, "run", str(path)], cwd=tmp_path, env=semtune_env(**env), stdout=log, stderr=log,
                            start_new_session=True)
    try:
        before = wait_mid_study(folder, lambda: proc.poll() is None,
                                training_ok=unrecorded_by_tune(TuneStorage.local(folder.tune_dir)) if env
                                else lambda run: True)
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

    done = subprocess.run([*SEMTUNE, "resume", str(folder.path)], cwd=tmp_path, env=semtune_env(**env),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "resuming study 'killed'" in done.stderr
    assert f"study finished: {n_expected} trials" in done.stdout, done.stdout
    assert_resumed_whole(folder, n_expected, before)
    if env:  # the kill came after trials that only Optuna had recorded: they were adopted, not replaced
        assert_adopted(folder.log_file.read_text())
