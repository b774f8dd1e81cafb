"""A study's Optuna trials in a real PostgreSQL (``optuna_storage``) instead of the study folder's sqlite
file; the password from the environment (``PGPASSWORD``), not the URL."""

from __future__ import annotations

import subprocess

import optuna
import pytest
from mlflow.tracking import MlflowClient

from orchestrator.spec import load_spec
from orchestrator.study.folder import StudyFolder
from orchestrator.tune.search import TUNE_TRIAL_ATTR
from study_cli import SEMTUNE, semtune_env, trial_runs  # tests/ is on the pythonpath

pytestmark = pytest.mark.slow
BUDGET = {"trials_per_condition": 2, "max_concurrent": 2, "stage1_epochs": 1, "stage2_epochs": 1}


def _semtune(tmp_path, postgres, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SEMTUNE, *args], cwd=tmp_path, env=semtune_env(**postgres.env),
                          capture_output=True, text=True, timeout=600)


def _refused(done: subprocess.CompletedProcess, *words: str) -> None:
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-3000:]
    assert errors[0].startswith("error: optuna_storage: ") and all(w in errors[0] for w in words), errors[0]
    assert "Traceback" not in done.stderr


def test_a_study_keeps_its_optuna_trials_in_postgresql(write_study, tmp_path, postgres, monkeypatch):
    path = write_study(name="pg", optuna_storage=postgres.url, budget=BUDGET)
    spec = load_spec(path)
    folder = StudyFolder.for_spec(spec)
    n_expected = BUDGET["trials_per_condition"] * len(spec.conditions.kn) * len(spec.conditions.snr_db)
    done = _semtune(tmp_path, postgres, "run", str(path))
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"study finished: {n_expected} trials" in done.stdout, done.stdout

    assert not (folder.path / "optuna.db").exists()
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    storage = optuna.storages.RDBStorage(postgres.url)
    arms = [n for n in optuna.get_all_study_names(storage) if n.startswith("pg/") and not n.endswith("/pruning")]
    told = {t.user_attrs[TUNE_TRIAL_ATTR]: t.state.name
            for name in arms for t in optuna.load_study(study_name=name, storage=storage).trials}
    record = folder.read_record()
    runs = trial_runs(MlflowClient(record.tracking_uri), record.experiment_id)
    assert set(told) == {r.data.tags["semtune.trial_id"] for r in runs} and len(told) == n_expected
    assert set(told.values()) <= {"COMPLETE", "PRUNED"}

    # Started again with the folder's sqlite file, it would train every trial again: refused.
    done = _semtune(tmp_path, postgres, "run", str(write_study(name="pg", budget=BUDGET)))
    _refused(done, "keeps its Optuna trials in postgresql://semtune@127.0.0.1", "set optuna_storage")
    # A new study of the same name, in another folder, would go on with these trials: refused.
    elsewhere = write_study(name="pg", optuna_storage=postgres.url, budget=BUDGET, storage_path=str(tmp_path / "b"))
    _refused(_semtune(tmp_path, postgres, "run", str(elsewhere)), "already holds the Optuna studies", "'pg'")
    assert not (tmp_path / "b" / "pg" / "study.json").exists()
    # A wrong password: one line, no traceback.
    done = subprocess.run([*SEMTUNE, "run", str(elsewhere)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env=semtune_env(PGPASSWORD="wrong"))
    _refused(done, "password authentication failed", "PGPASSWORD")
