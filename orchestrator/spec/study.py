"""``StudySpec``: the validated description of a whole study, and the trial document it implies."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

import search_spaces
from orchestrator.spec.base import Section
from orchestrator.spec.search_space import SearchSpace
from orchestrator.spec.sections import Budget, Conditions, PrunerSpec, ReportSpec, Resources, SamplerSpec
from trainables.config import DataConfig, Method


class StudySpec(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    methods: list[Method] = Field(default_factory=lambda: ["proposed"], min_length=1)
    dataset: DataConfig = DataConfig()
    trial: dict[str, Any] = Field(default_factory=dict, description="TrialConfig fields shared by all trials")
    conditions: Conditions
    search_space: SearchSpace = SearchSpace()
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    budget: Budget
    resources: Resources = Resources()
    tracking_uri: str | None = None
    storage_path: str = Field(
        "semtune-studies", description="where Tune keeps the trials' results and checkpoints: a folder every node "
                                       "mounts (the study folder is <storage_path>/<name>), or object storage "
                                       "(s3://bucket/prefix, gs://…, any URI pyarrow opens)")
    state_path: str | None = Field(
        None, description="with object storage only: the local folder holding the study folder <state_path>/<name> "
                          "(Optuna, the scheduler's rungs, study.json, the embedded MLflow store); "
                          "default semtune-studies beside the study file")
    optuna_storage: str | None = Field(
        None, description="a database URL for the Optuna studies (postgresql://user@host/db; the password from "
                          "PGPASSWORD or ~/.pgpass) instead of the study folder's optuna.db")
    ray_address: str | None = None
    seed: int = Field(0, ge=0, lt=2**32, description="Optuna's samplers take 0 <= seed < 2**32")
    report: ReportSpec = ReportSpec()
    replay: str | None = Field(
        None, description="a learning-curve table (Parquet, `python -m bench.curves`): every trial is served from "
                          "it epoch by epoch instead of trained, through the same Tune run, samplers and pruning "
                          "(benchmarks of the search); the search space must be the table's grid")
    mlflow: bool = Field(
        True, description="log the study and every trial to MLflow; false only for benchmarks: no runs, and "
                          "`semtune report` has nothing to read")

    @field_validator("methods")
    @classmethod
    def _distinct_methods(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("methods must be distinct")
        return v

    @field_validator("trial")
    @classmethod
    def _no_study_owned_fields(cls, v):
        """Fields the study sets per trial; errors are raised at their own path (``trial.method``)."""
        owned = {"method": "methods", "data": "dataset", "seed": "seed"}
        errors = [((key,), f"set by the study's {where!r} section") for key, where in owned.items() if key in v]
        for stage in ("stage1", "stage2"):
            if stage in v and not isinstance(v[stage], dict):
                errors.append(((stage,), f"expected a mapping of fields (got {v[stage]!r})"))
            elif isinstance(v.get(stage), dict) and "epochs" in v[stage]:
                errors.append(((stage, "epochs"), f"set by budget.{stage}_epochs"))
        if errors:
            raise ValidationError.from_exception_data("trial", [
                InitErrorDetails(type=PydanticCustomError("study_owned", reason), loc=loc, input=v)
                for loc, reason in errors])
        return v

    @field_validator("mlflow")
    @classmethod
    def _no_server_without_mlflow(cls, v, info):
        if not v and info.data.get("tracking_uri"):
            raise ValueError("false, but tracking_uri is set (nothing would be logged there); drop one of them")
        return v

    @model_validator(mode="after")
    def _first_rung_within_budget(self):
        epochs = self.budget.stage1_epochs + self.budget.stage2_epochs
        if self.pruner.grace_epochs is not None and self.pruner.grace_epochs > epochs:
            reason = f"{self.pruner.grace_epochs} is past the last epoch of a trial (budget: {epochs} epochs)"
            raise ValidationError.from_exception_data("pruner", [InitErrorDetails(
                type=PydanticCustomError("past_budget", reason), loc=("pruner", "grace_epochs"),
                input=self.pruner.grace_epochs)])
        return self

    def spec_hash(self) -> str:
        """The study's identity: a hash of what defines the science, not of where it runs.

        The fields in :data:`WHERE_FIELDS` are left out, so a study moved to another folder, run
        against another tracking server or Ray cluster, or given other resources, is the same study
        (``semtune run`` resumes it instead of refusing it).
        """
        return _digest(science_dump(self))

    def legacy_spec_hash(self) -> str:
        """The hash of the whole spec, paths and addresses included, as the ``study.json`` of a study
        started before the hash left them out holds it; used only to recognise such a study again."""
        return _digest(self.model_dump(mode="json"))


# What a study's hash leaves out: where it runs and where its files are, never what it computes.
# Paths are those `load_spec` pins absolute (they change when a checkout or a study folder moves);
# the rest are addresses and capacity. A dataset is identified by its name, split and sizes, which
# stay in the hash; a classifier checkpoint file by its bytes, which stage 0 hashes into the
# classifier cache key. Each entry is a path of keys into ``model_dump(mode="json")``.
WHERE_FIELDS: tuple[tuple[str, ...], ...] = (
    ("storage_path",),          # the study folder's parent, or the object storage of its trials
    ("state_path",),            # the study folder's parent with object storage
    ("tracking_uri",),          # the MLflow server's address (the embedded store lives in the folder)
    ("ray_address",),           # the Ray cluster's address
    ("optuna_storage",),        # the Optuna database's address (its studies are named after the study)
    ("resources",),             # CPUs/GPUs per trial: how fast, not what
    ("budget", "max_concurrent"),
    ("budget", "max_failures"),  # retries after a lost node
    ("report",),                # the report's reference point; trials never read it
    ("mlflow",),                # whether MLflow records the trials, not what they compute
    ("dataset", "root"),
    ("dataset", "search_dirs"),
    ("trial", "classifier", "search_dirs"),
    ("trial", "classifier", "cache_dir"),
)
# Hashed by kind only: "auto" and null stay as they are, a file path counts as "<file>".
PATH_OR_KIND_FIELDS: tuple[tuple[str, ...], ...] = (("trial", "classifier", "checkpoint"), ("replay",))


def science_dump(spec: StudySpec) -> dict[str, Any]:
    """``spec.model_dump(mode="json")`` without :data:`WHERE_FIELDS` (what :meth:`StudySpec.spec_hash` hashes)."""
    doc = spec.model_dump(mode="json")
    for keys in WHERE_FIELDS:
        node = doc
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(keys[-1], None)
    for keys in PATH_OR_KIND_FIELDS:
        node = doc
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(keys[-1]) not in (None, "auto"):
            node[keys[-1]] = "<file>"
    return doc


def _digest(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]



def base_trial_doc(spec: StudySpec, method: str) -> dict[str, Any]:
    """The TrialConfig document shared by every trial of ``method`` (before searched values)."""
    doc = search_spaces.merge(spec.trial, {
        "method": method,
        "data": spec.dataset.model_dump(mode="json"),
        "seed": spec.seed,
        "stage1": {"epochs": spec.budget.stage1_epochs},
        "stage2": {"epochs": spec.budget.stage2_epochs},
    })
    doc.setdefault("stage1", {}).setdefault("lr", 0.01)
    doc.setdefault("stage2", {}).setdefault("lr", 1e-4)
    return doc

