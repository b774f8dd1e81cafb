"""Preflight: every way a study cannot start fails in seconds with one ``error: <field>: <reason>``
line, exit code 2 and no traceback, and leaves nothing RUNNING in MLflow or Optuna.

Each case runs the real ``semtune run`` in a subprocess (real Ray, real MLflow and Optuna stores).
Downloads are made impossible by pointing the proxies at a closed port on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SEMTUNE = [sys.executable, "-m", "orchestrator.cli"]
ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def offline_env(tmp_path: Path) -> dict[str, str]:
    proxy = f"http://127.0.0.1:{_closed_port()}"
    return {**os.environ, "http_proxy": proxy, "https_proxy": proxy, "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy,
            "no_proxy": "", "NO_PROXY": "", "SEMTUNE_MODEL_CACHE": str(tmp_path / "empty-model-cache"),
            "RAY_ADDRESS": ""}


def run_semtune(study: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(SEMTUNE + ["run", str(study)], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=300)


def running_left(folder: Path) -> list[str]:
    """RUNNING MLflow runs and Optuna trials in the study folder's stores (none may exist at all)."""
    left = []
    for db, query in (("mlflow.db", "select run_uuid from runs where status = 'RUNNING'"),
                      ("optuna.db", "select trial_id from trials where state = 'RUNNING'")):
        if (folder / db).exists():
            with sqlite3.connect(folder / db) as con:
                left += [f"{db}:{row[0]}" for row in con.execute(query)]
    return left


def assert_refused(r: subprocess.CompletedProcess, field: str, *words: str) -> None:
    out = (r.stdout + r.stderr)
    assert r.returncode == 2, out[-3000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr[-3000:]
    assert errors[0].startswith(f"error: {field}: "), errors[0]
    for w in words:
        assert w in errors[0], errors[0]
    assert "Traceback" not in out


CASES = {
    "missing data, downloads impossible": (
        lambda tmp: {"dataset": {"search_dirs": [str(tmp / "no-data")], "root": str(tmp / "cifar-cache")}},
        "dataset", ("train.npz", "downloading CIFAR-10")),
    "missing checkpoint, downloads impossible": (
        lambda tmp: {"trial": {"classifier": {"checkpoint": "auto", "search_dirs": [str(tmp / "no-models")],
                                              "finetune_epochs": 0}}},
        "trial.classifier.checkpoint", ("resnet20",)),
    "unreachable tracking server": (
        lambda tmp: {"tracking_uri": f"http://127.0.0.1:{_closed_port()}"},
        "tracking_uri", ("no MLflow server answers",)),
    "GPUs on a CPU-only cluster": (
        lambda tmp: {"resources": {"cpu": 1, "gpu": 0.5}},
        "resources.gpu", ("0.5 GPU", "0 GPUs")),
    "unreachable object storage": (
        lambda tmp: {"storage_path": f"s3://bucket/x?endpoint_override=127.0.0.1:{_closed_port()}&scheme=http"},
        "storage_path", ("cannot write to s3://bucket/x", "Could not connect", "AWS_*")),
    "unreachable Optuna database": (
        lambda tmp: {"optuna_storage": f"postgresql://semtune@127.0.0.1:{_closed_port()}/optuna"},
        "optuna_storage", ("cannot open postgresql://semtune@127.0.0.1", "OperationalError", "PGPASSWORD")),
    "unwritable storage": (
        lambda tmp: {"storage_path": str(tmp / "a-file" / "studies")},
        "storage_path", ("cannot write",)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_preflight_refuses_with_one_line(case, tmp_path, write_study):
    overrides, field, words = CASES[case]
    (tmp_path / "a-file").write_text("a file, not a folder")
    study = write_study(name="pre", **overrides(tmp_path))
    r = run_semtune(study, offline_env(tmp_path))
    assert_refused(r, field, *words)
    import yaml

    storage = Path(yaml.safe_load(study.read_text())["storage_path"])
    folder = storage / "pre"
    assert running_left(folder) == []
    assert not (folder / "mlflow.db").exists() and not (folder / "tune").exists()  # nothing was started
