"""``StudySpec``: the validated description of a whole study, and the trial document it implies."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import Field, ValidationError, field_validator
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
    storage_path: str = "semtune-studies"
    ray_address: str | None = None
    seed: int = Field(0, ge=0, lt=2**32, description="Optuna's samplers take 0 <= seed < 2**32")
    report: ReportSpec = ReportSpec()

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

    def spec_hash(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]



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

