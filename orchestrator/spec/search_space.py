"""The ``search_space`` section: each searched hyperparameter as a range, a set of choices or a fixed value."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

import search_spaces
from orchestrator.spec.base import Section


class FloatRange(Section):
    """A continuous range; ``log`` samples on a log scale; ``kn_choice`` (α1 only) adds α1 = k/n."""

    low: float
    high: float
    log: bool = False
    kn_choice: bool = False

    @model_validator(mode="after")
    def _ordered(self):
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0 (got {self.low})")
        return self


class IntRange(Section):
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0 (got {self.low})")
        return self


def _scalar(v: Any) -> Any:
    """A choice or fixed value is a finite number or a string: one clear error, not one per union member."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)) or (isinstance(v, float) and not math.isfinite(v)):
        raise ValueError(f"must be a finite number or a string (got {v!r})")
    return v


Scalar = Annotated[Union[float, int, str], BeforeValidator(_scalar)]


class Choices(Section):
    choices: list[Scalar] = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _distinct(cls, v):
        if len({json.dumps(x) for x in v}) != len(v):
            raise ValueError("choices must be distinct")
        return v


class Fixed(Section):
    value: Scalar


def _param_kind(v: Any) -> str | None:
    if isinstance(v, dict):
        return "<choices>" if "choices" in v else "<fixed>" if "value" in v else "<range>"
    if isinstance(v, BaseModel):
        return {Choices: "<choices>", Fixed: "<fixed>"}.get(type(v), "<range>")
    return None


def _scalar_is_fixed(v: Any) -> Any:
    """``tau: 0.1`` is shorthand for ``tau: {value: 0.1}``."""
    return {"value": v} if isinstance(v, (int, float, str)) and not isinstance(v, bool) else v


def _param(range_type: type) -> Any:
    return Annotated[
        Union[Annotated[range_type, Tag("<range>")], Annotated[Choices, Tag("<choices>")],
              Annotated[Fixed, Tag("<fixed>")]],
        Discriminator(_param_kind, custom_error_type="invalid_parameter",
                      custom_error_message="expected {low, high[, log]}, {choices: [...]} or {value: x}"),
        BeforeValidator(_scalar_is_fixed),
    ]


FloatParam = _param(FloatRange)
IntParam = _param(IntRange)
Param = Union[FloatRange, IntRange, Choices, Fixed]


def _param_bounds_problems(name: str, p: Param, lo: float, hi: float, lo_open: bool) -> list[str]:
    """Check every value a parameter can take against its allowed interval."""
    values: list[Any]
    if isinstance(p, (FloatRange, IntRange)):
        values = [p.low, p.high]
    elif isinstance(p, Choices):
        values = p.choices
    else:
        values = [p.value]
    bad = []
    for v in values:
        if name == "alpha1" and v == "kn":
            continue
        if isinstance(v, str) or isinstance(v, bool):
            bad.append(f"{v!r} is not a number")
            continue
        if (v <= lo if lo_open else v < lo) or v > hi:
            allowed = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}]" if math.isfinite(hi) else f"> {lo:g}"
            bad.append(f"must be {allowed} (got {v!r})")
    return bad




class SearchSpace(Section):
    """α1, α2 ∈ [0, 1]; τ > 0; projection dimension a positive integer. Omitted = the trial default."""

    alpha1: FloatParam | None = None
    alpha2: FloatParam | None = None
    tau: FloatParam | None = None
    proj_dim: IntParam | None = None

    @field_validator(*search_spaces.SEARCHABLE)
    @classmethod
    def _bounds(cls, p, info: ValidationInfo):
        name = info.field_name
        if p is None:
            return p
        lo, hi, lo_open = search_spaces.BOUNDS[name]
        problems = []
        if isinstance(p, FloatRange) and p.kn_choice and name != "alpha1":
            problems.append("kn_choice is only for alpha1")
        if name == "proj_dim" and isinstance(p, Choices) and not all(isinstance(c, int) for c in p.choices):
            problems.append("choices must be integers")
        problems += _param_bounds_problems(name, p, lo, hi, lo_open)
        if problems:
            raise ValueError("; ".join(problems))
        return p

    def defined(self) -> dict[str, Param]:
        return {k: v for k, v in ((n, getattr(self, n)) for n in search_spaces.SEARCHABLE) if v is not None}

