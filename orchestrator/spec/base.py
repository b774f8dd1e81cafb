"""The base of every section of ``study.yaml``: frozen, no unknown keys, no NaN or infinity."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """No NaN or infinity anywhere: they pass every ``ge``/``le`` bound unnoticed or break arithmetic."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
