"""The study folder: one place on the driver holding everything a study needs to resume.

    <storage_path>/<name>/     (<state_path>/<name>/ when storage_path is object storage)
        spec.yaml              the validated spec (relative paths already pinned)
        study.json             spec hash, MLflow store and parent run, versions, creation time
        optuna.db              one Optuna study per arm (optuna-dashboard can open it), unless the
                               spec names a database (optuna_storage: postgresql://…)
        mlflow.db, mlartifacts/  the embedded MLflow store when no tracking_uri is given
        tune/                  Ray Tune's experiment (trials, checkpoints, searcher state); with object
                               storage it is <storage_path>/<name>/tune instead (orchestrator.tune.storage)
        scheduler_state.json   the pruning scheduler's rungs (Tune does not checkpoint schedulers)
        classifiers/           the stage-0 classifier cache shared by the trials on this node
        checkpoints/           front members' checkpoints the report fetched from object storage
        semtune.log            what the libraries logged (trial tracebacks too); the terminal stays quiet

The folder may move (another parent, another machine's mount): everything in it is found from the
folder a study is run or resumed from, never from a path written when it started. ``study.json``
says whether the MLflow store is the embedded one, and the embedded store's URI is derived from the
folder each time the record is read.

Credentials in a URI (``tracking_uri: http://user:secret@host``) are masked in ``spec.yaml`` and
``study.json`` (:mod:`orchestrator.spec.redact`); a study read back connects with the credentials
of the environment (``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import yaml

from orchestrator.spec.redact import connectable_uri, redact_values
from orchestrator.spec.study import StudySpec


@dataclass
class StudyRecord:
    """``study.json``. ``tracking_uri`` is where the study logs; for the embedded store
    (``embedded_tracking``) it is the folder's own ``mlflow.db``, resolved when the record is read
    (the value written is only the one of that time, for people reading the file). Written with
    credentials masked; read back without them (see :meth:`StudyFolder.read_record`)."""

    name: str
    spec_hash: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    semtune_version: str
    git_commit: str | None
    created: str
    embedded_tracking: bool = False
    optuna_storage: str | None = None  # the database of the Optuna studies; None: the folder's optuna.db


def git_commit(cwd: Path | None = None) -> str | None:
    """The commit of the code running the study, if it runs from a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class StudyFolder:
    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def for_spec(cls, spec: StudySpec) -> "StudyFolder":
        return cls(Path(spec.state_path or spec.storage_path) / spec.name)

    # -- named places --------------------------------------------------------------------------
    @property
    def spec_file(self) -> Path:
        return self.path / "spec.yaml"

    @property
    def record_file(self) -> Path:
        return self.path / "study.json"

    @property
    def tune_dir(self) -> Path:
        return self.path / "tune"

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.path / 'optuna.db'}"

    @property
    def embedded_tracking_uri(self) -> str:
        return f"sqlite:///{self.path / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str:
        return (self.path / "mlartifacts").resolve().as_uri()

    @property
    def scheduler_state(self) -> Path:
        return self.path / "scheduler_state.json"

    @property
    def classifier_cache(self) -> Path:
        return self.path / "classifiers"

    @property
    def log_file(self) -> Path:
        """Everything Ray, Tune, MLflow and Optuna logged during the study, trial tracebacks included."""
        return self.path / "semtune.log"

    # -- state ---------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.record_file.is_file()

    def write_spec(self, spec: StudySpec) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(redact_values(spec.model_dump(mode="json")), sort_keys=False)
        self.spec_file.write_text(f"# written by semtune; spec hash {spec.spec_hash()}\n{text}")

    def read_record(self) -> StudyRecord:
        """``study.json``, with the embedded MLflow store taken from this folder, wherever it is now:
        its URI is this folder's ``mlflow.db``, and when the folder moved, its artifact URIs are
        moved along (:func:`~orchestrator.tracking.study_run.relocate_artifacts`), so that neither a
        resumed study nor a report writes artifacts under the old place. A server's URI comes without
        the credentials ``study.json`` masked: MLflow then takes them from the environment."""
        doc = json.loads(self.record_file.read_text())
        known = {f.name for f in fields(StudyRecord)}
        record = StudyRecord(**{k: v for k, v in doc.items() if k in known})
        if "embedded_tracking" not in doc:  # written before the flag: the folder's own mlflow.db is embedded
            record.embedded_tracking = is_own_store(record.tracking_uri, record.name)
        if record.embedded_tracking:
            record.tracking_uri = self.embedded_tracking_uri
            if (self.path / "mlflow.db").is_file():
                from orchestrator.tracking.study_run import relocate_artifacts  # MLflow's side; imported late

                relocate_artifacts(self.path / "mlflow.db", record.experiment_id, self.artifact_location)
        else:
            record.tracking_uri = connectable_uri(record.tracking_uri)
        return record

    def write_record(self, record: StudyRecord) -> None:
        tmp = self.record_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(redact_values(asdict(record)), indent=1))
        os.replace(tmp, self.record_file)


def optuna_storage_url(spec: StudySpec, folder: StudyFolder) -> str:
    """Where the study's Optuna studies live: the database ``optuna_storage`` names, else the folder's ``optuna.db``."""
    return spec.optuna_storage or folder.optuna_url


def is_own_store(tracking_uri: str | None, name: str) -> bool:
    """Whether ``tracking_uri`` is a study folder's embedded store: ``sqlite:///…/<name>/mlflow.db``
    (how a ``study.json`` from before ``embedded_tracking`` names it, absolute to where the folder was)."""
    return bool(tracking_uri) and tracking_uri.startswith("sqlite:") and tracking_uri.endswith(f"/{name}/mlflow.db")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
