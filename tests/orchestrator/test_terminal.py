"""What a person sees: a quiet terminal, exit codes that mean something, tracebacks kept where they belong.

Real ``semtune run`` processes (local Ray, the embedded MLflow store, Optuna's sqlite storage).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

SEMTUNE = [sys.executable, "-m", "orchestrator.cli"]
ROOT = Path(__file__).resolve().parents[2]
NOISE = [r"Traceback", r"\bINFO\b", r"Configuration for experiment", r"[Tt]ensor[Bb]oard", r"alembic",
         r"Creating initial MLflow database tables", r"RAY_AUTH_MODE", r"tune\.py"]


def semtune(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(SEMTUNE + list(args), cwd=ROOT, capture_output=True, text=True, timeout=900)


def folder_of(study: Path) -> Path:
    doc = yaml.safe_load(study.read_text())
    return Path(doc["storage_path"]) / doc["name"]


def test_quiet_terminal_and_the_failing_trial_s_traceback(write_study):
    """One trial diverges (tau = 1e-40), one completes: exit 0, only the table and the summary."""
    study = write_study(name="quiet", search_space={"alpha1": 0.5, "tau": {"choices": [1e-40, 0.5]}},
                        conditions={"snr_db": [20], "kn": ["1/12"]}, sampler={"name": "grid"},
                        pruner={"name": "none"}, budget={"trials_per_condition": 2})
    r = semtune("run", str(study))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    for pattern in NOISE:
        assert not re.search(pattern, out), (pattern, out[-3000:])
    assert "condition" in r.stderr and "elapsed" in r.stderr  # the progress table, with the time
    assert "study finished: 2 trials — 1 completed, 1 failed" in r.stdout
    log_file = folder_of(study) / "semtune.log"
    assert f"log (trial tracebacks): {log_file}" in r.stdout
    assert "Traceback" in log_file.read_text() and "TrialDiverged" in log_file.read_text()

    record = yaml.safe_load((folder_of(study) / "study.json").read_text())
    client = MlflowClient(record["tracking_uri"])
    failed = client.search_runs([record["experiment_id"]], filter_string="tags.`semtune.status` = 'failed'")
    assert len(failed) == 1
    trace = Path(client.download_artifacts(failed[0].info.run_id, "failure_traceback.txt")).read_text()
    assert trace.startswith("Traceback") and "TrialDiverged: training loss is nan" in trace
    experiment = client.get_experiment(record["experiment_id"])
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on runs
    parent = client.get_run(record["parent_run_id"])
    assert "semtune report" in parent.data.tags["mlflow.note.content"]


def test_a_study_without_a_completed_trial_exits_non_zero(write_study):
    """Every trial diverges: exit 1, the most common reason in one line, and no epoch counted as saved.

    Nothing is searched, so the arm has one configuration and runs one trial (``orchestrator.spec.arms``)."""
    study = write_study(name="allfail", search_space={"alpha1": 0.5, "tau": 1e-40},
                        conditions={"snr_db": [20], "kn": ["1/12"]}, pruner={"name": "none"},
                        budget={"trials_per_condition": 2})
    r = semtune("run", str(study))
    assert r.returncode == 1, (r.stdout + r.stderr)[-3000:]
    assert "Traceback" not in r.stdout + r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert errors == ["error: study: no trial completed in any condition and method, so there is no front; most common "
                      "failure (1 trial): TrialDiverged: training loss is nan in stage 1"], r.stderr
    assert "(0% saved by pruning)" in r.stdout
    assert "report:" not in r.stdout  # nothing to report

    rep = semtune("report", str(folder_of(study)), "--no-models")
    assert rep.returncode == 1, rep.stdout + rep.stderr
    assert "Traceback" not in rep.stdout + rep.stderr
    assert [ln for ln in rep.stderr.splitlines() if ln.startswith("error:")] == [
        "error: STUDY: no trial of study 'allfail' completed, so no condition has a front "
        "(1 trial: 1 failed; most common failure: TrialDiverged: training loss is nan in stage 1)"]
    assert (folder_of(study) / "report" / "trials.csv").is_file()  # the failures are still tabulated
