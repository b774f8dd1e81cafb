"""``study.yaml``: the validated description of a whole study.

One pydantic model per section. Every problem becomes an ``error: <field path>: <reason>``
line (see :class:`trainables.config.ConfigError`); nothing here imports Ray, Optuna or torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator, BaseModel, ValidationInfo, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

import search_spaces
from orchestrator.objectives import METRICS
from trainables.bandwidth import latent_channels
from trainables.config import (
    METHODS, ConfigError, DataConfig, Method, build_trial_config, problems_from_validation_error, resolve_paths,
)


def _fraction(v: Any) -> Any:
    """Accept ``1/12`` style strings for ratios (YAML reads them as text)."""
    if isinstance(v, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*/\s*\d+(\.\d+)?\s*", v):
        num, den = (float(x) for x in v.split("/"))
        if den == 0:
            raise ValueError(f"division by zero in {v!r}")
        return num / den
    return v


def _reachable_kn(v: float, info: ValidationInfo) -> float:
    """k/n in (0, 1] and reachable with whole latent channels for the study's image size."""
    if not 0 < v <= 1:
        raise ValueError(f"k/n must be in (0, 1] (got {v:g})")
    size = (info.context or {}).get("image_size", (32, 32))
    if size is not None:  # None: an invalid image size, named once at dataset.image_size
        latent_channels(v, *size)  # raises ValueError with the reason
    return v


KnRatio = Annotated[float, BeforeValidator(_fraction), AfterValidator(_reachable_kn)]


class _Section(BaseModel):
    """No NaN or infinity anywhere: they pass every ``ge``/``le`` bound unnoticed or break arithmetic."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


# -- search space --------------------------------------------------------------------------------


class FloatRange(_Section):
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


class IntRange(_Section):
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


class Choices(_Section):
    choices: list[Scalar] = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _distinct(cls, v):
        if len({json.dumps(x) for x in v}) != len(v):
            raise ValueError("choices must be distinct")
        return v


class Fixed(_Section):
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


_LIMITS = {"alpha1": (0, 1, False), "alpha2": (0, 1, False), "tau": (0, math.inf, True), "proj_dim": (0, 4096, True)}


class SearchSpace(_Section):
    """α1, α2 ∈ [0, 1]; τ > 0; projection dimension a positive integer. Omitted = the trial default."""

    alpha1: FloatParam | None = None
    alpha2: FloatParam | None = None
    tau: FloatParam | None = None
    proj_dim: IntParam | None = None

    @field_validator("alpha1", "alpha2", "tau", "proj_dim")
    @classmethod
    def _bounds(cls, p, info: ValidationInfo):
        name = info.field_name
        if p is None:
            return p
        lo, hi, lo_open = _LIMITS[name]
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


# -- the other sections --------------------------------------------------------------------------


class Conditions(_Section):
    """The channel-condition grid: every SNR × every k/n gets its own Optuna study."""

    snr_db: list[float] = Field(min_length=1)
    kn: list[KnRatio] = Field(min_length=1)

    @field_validator("snr_db", "kn")
    @classmethod
    def _distinct(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("values must be distinct")
        return v


class SamplerSpec(_Section):
    name: Literal["nsga2", "tpe", "gp", "random", "grid"] = "nsga2"
    population_size: int | None = Field(None, ge=2, description="NSGA-II population")
    n_startup_trials: int | None = Field(None, ge=0, description="TPE/GP random start-up trials")


class PrunerSpec(_Section):
    """``moasha`` (Pareto-aware, default) or an Optuna pruner on the declared ``scalarization``."""

    name: Literal["moasha", "successive_halving", "hyperband", "median", "wilcoxon", "none"] = "moasha"
    grace_epochs: int = Field(1, ge=1)
    reduction_factor: float = Field(3, gt=1)
    scalarization: dict[str, float] | None = None
    n_startup_trials: int = Field(2, ge=0)
    n_warmup_steps: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _scalarization(self):
        optuna_pruners = ("successive_halving", "hyperband", "median", "wilcoxon")
        if self.name in optuna_pruners and not self.scalarization:
            raise ValueError(f"pruner {self.name!r} needs a scalarization, e.g. {{accuracy: 1.0, psnr: 0.02}}")
        if self.scalarization:
            unknown = sorted(set(self.scalarization) - set(METRICS))
            if unknown:
                raise ValueError(f"scalarization names unknown metrics {unknown}; use {list(METRICS)}")
            if not all(math.isfinite(w) for w in self.scalarization.values()):
                raise ValueError("scalarization weights must be finite")
        if self.name in optuna_pruners and not float(self.reduction_factor).is_integer():
            raise ValueError(f"Optuna's pruners need an integer reduction_factor (got {self.reduction_factor})")
        return self


class Budget(_Section):
    trials_per_condition: int = Field(ge=1)
    max_concurrent: int = Field(2, ge=1)
    stage1_epochs: int = Field(ge=1)
    stage2_epochs: int = Field(ge=0)
    max_failures: int = Field(0, ge=0, description="retries of a trial that raised (node loss…)")


class Resources(_Section):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)

    @field_validator("gpu")
    @classmethod
    def _fraction_or_whole(cls, v):
        if v > 1 and not float(v).is_integer():
            raise ValueError(f"more than one GPU must be a whole number (got {v})")
        return v


class ReportSpec(_Section):
    """Hypervolume reference point: chance accuracy for 10 classes and 10 dB PSNR by default."""

    reference_accuracy: float = Field(0.1, ge=0, le=1)
    reference_psnr: float = 10.0


class StudySpec(_Section):
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


# -- loading ------------------------------------------------------------------------------------


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


def _trial_problems(trial_doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Validate the ``trial`` section by building a TrialConfig from it, with study paths."""
    try:
        build_trial_config(trial_doc)
    except ConfigError as err:
        renamed = {"data": "dataset", "method": "methods"}
        out = []
        for path, reason in err.problems:
            head, _, rest = path.partition(".")
            out.append((renamed[head] + (f".{rest}" if rest else "") if head in renamed else f"trial.{path}", reason))
        return out
    return []


def _image_size(dataset: Any) -> tuple[int, int] | None:
    """The image size the k/n checks use; ``None`` when it is itself invalid (named at dataset.image_size)."""
    size = dataset.get("image_size", (32, 32)) if isinstance(dataset, dict) else (32, 32)
    try:
        return DataConfig(image_size=size).image_size
    except ValidationError:
        return None


def _with_preset(doc: dict[str, Any]) -> dict[str, Any]:
    """The preset under ``doc``; a search-space parameter is replaced whole ({low, high} -> {choices})."""
    try:
        preset = search_spaces.load_preset(str(doc["preset"]))
    except KeyError as err:
        raise ConfigError([("preset", err.args[0])]) from None
    rest = {k: v for k, v in doc.items() if k != "preset"}
    merged = search_spaces.merge(preset, rest)
    if isinstance(rest.get("search_space"), dict) and isinstance(preset.get("search_space"), dict):
        merged["search_space"] = {**preset["search_space"], **rest["search_space"]}
    return merged


def _pinned_paths(doc: dict[str, Any], base_dir: Path) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Relative paths made absolute against the study file's folder, and the paths that cannot be."""
    doc, problems = dict(doc), []
    for key, inner in (("dataset", "data"), ("trial", None)):  # resolve_paths reads TrialConfig documents
        if isinstance(doc.get(key), dict):
            try:
                pinned = resolve_paths({inner: doc[key]} if inner else doc[key], base_dir)
                doc[key] = pinned[inner] if inner else pinned
            except ConfigError as err:
                problems += [(path.replace("data", key, 1) if inner else f"{key}.{path}", reason)
                             for path, reason in err.problems]
    storage = doc.setdefault("storage_path", StudySpec.model_fields["storage_path"].default)  # the default too
    if isinstance(storage, str) and "://" not in storage:
        try:
            doc["storage_path"] = str((base_dir / Path(storage).expanduser()).resolve())
        except (ValueError, OSError, RuntimeError) as err:  # a NUL byte, ~unknown-user
            problems.append(("storage_path", f"not a usable path: {err}"))
    return doc, problems


def _grid_problems(spec: StudySpec) -> list[tuple[str, str]]:
    """The grid sampler needs a finite grid: say so at ``validate``, not when the study starts."""
    if spec.sampler.name != "grid":
        return []
    return [(f"search_space.{name}", "sampler 'grid' needs {choices: [...]}, {value: x} or an integer range, "
                                     "not a continuous range")
            for name, p in spec.search_space.defined().items() if isinstance(p, FloatRange)]


def build_spec(doc: dict[str, Any], base_dir: Path) -> StudySpec:
    """Validate a study document (preset merged in, relative paths pinned to ``base_dir``).

    Collects every problem it can find in one pass: paths, the sections' own checks, then the
    ``trial`` section built into a real TrialConfig for each method.
    """
    if not isinstance(doc, dict):
        raise ConfigError([("<root>", f"expected a mapping of fields, got {type(doc).__name__}")])
    doc, problems = _pinned_paths(_with_preset(doc) if "preset" in doc else doc, base_dir)
    spec = None
    try:
        spec = StudySpec.model_validate(doc, context={"image_size": _image_size(doc.get("dataset"))})
        problems += _grid_problems(spec)
    except ValidationError as err:
        problems += problems_from_validation_error(err)
    trial = doc.get("trial", {})
    if isinstance(trial, dict) and not any(p[0].startswith("trial") for p in problems):
        methods = spec.methods if spec else ["proposed"]
        for method in methods:
            base = base_trial_doc(spec, method) if spec else search_spaces.merge(
                trial, {"stage1": {"epochs": 1, "lr": 0.01}, "stage2": {"epochs": 1, "lr": 1e-4}})
            problems += [p for p in _trial_problems(base) if p not in problems]
    if problems:
        raise ConfigError(problems)
    return spec


def load_spec(path: str | Path) -> StudySpec:
    from orchestrator.yamlio import load_mapping

    p = Path(path)
    return build_spec(load_mapping(p), p.resolve().parent)


__all__ = ["METHODS", "StudySpec", "base_trial_doc", "build_spec", "load_spec"]
