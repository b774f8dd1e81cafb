"""The plain sections of ``study.yaml``: conditions, sampler, pruner, budget, resources, report."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from orchestrator.objectives import METRICS
from orchestrator.spec.base import Section
from trainables.bandwidth import KN_TOLERANCE, latent_channels
from trainables.config import ChannelConfig


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
    context = info.context or {}
    size = context.get("image_size", (32, 32))
    if size is not None:  # None: an invalid image size, named once at dataset.image_size
        latent_channels(v, *size, tolerance=context.get("kn_tolerance", KN_TOLERANCE))  # raises with the reason
    return v


KnRatio = Annotated[float, BeforeValidator(_fraction), AfterValidator(_reachable_kn)]


CHANNEL_MODELS = get_args(ChannelConfig.model_fields["model"].annotation)  # trainables.channel's models


class Conditions(Section):
    """The channel-condition grid: every channel model × SNR × k/n (× method) gets its own Optuna study."""

    channel: list[Literal[CHANNEL_MODELS]] = Field(
        ["awgn"], min_length=1, description="channel models (trainables.channel): " + ", ".join(CHANNEL_MODELS))
    snr_db: list[float] = Field(min_length=1)
    kn: list[KnRatio] = Field(min_length=1)

    @field_validator("channel", "snr_db", "kn")
    @classmethod
    def _distinct(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("values must be distinct")
        return v


SAMPLER_NAMES = ("nsga2", "tpe", "gp", "random", "grid")


class SamplerSpec(Section):
    """The Optuna sampler of every arm. TPE by default: in ``python -m bench`` (replayed studies under
    MO-ASHA) it held more of the grid's front than NSGA-II, GP and random sampling at equal epochs."""

    name: Literal[SAMPLER_NAMES] = "tpe"
    population_size: int | None = Field(None, ge=2, description="NSGA-II population")
    n_startup_trials: int | None = Field(None, ge=0, description="TPE/GP random start-up trials")


OPTUNA_PRUNERS = ("successive_halving", "hyperband", "median", "wilcoxon")  # rank a declared scalarisation
PRUNER_NAMES = ("moasha", *OPTUNA_PRUNERS, "none")


class PrunerSpec(Section):
    """``moasha`` (Pareto-aware, default) or an Optuna pruner on the declared ``scalarization``."""

    name: Literal[PRUNER_NAMES] = "moasha"
    grace_epochs: int | None = Field(
        None, ge=1, description="the first rung: no trial is stopped before this epoch; default the first epoch "
                                "of stage 2 (budget.stage1_epochs + 1), or 1 for a study without a stage 2")
    reduction_factor: float = Field(3, gt=1)
    scalarization: dict[str, float] | None = None
    n_startup_trials: int = Field(2, ge=0)
    n_warmup_steps: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _scalarization(self):
        if self.name in OPTUNA_PRUNERS and not self.scalarization:
            raise ValueError(f"pruner {self.name!r} needs a scalarization, e.g. {{accuracy: 1.0, psnr: 0.02}}")
        if self.scalarization:
            unknown = sorted(set(self.scalarization) - set(METRICS))
            if unknown:
                raise ValueError(f"scalarization names unknown metrics {unknown}; use {list(METRICS)}")
            if not all(math.isfinite(w) for w in self.scalarization.values()):
                raise ValueError("scalarization weights must be finite")
            if not any(self.scalarization.values()):
                raise ValueError("scalarization needs at least one non-zero weight")
        if self.name in OPTUNA_PRUNERS and not float(self.reduction_factor).is_integer():
            raise ValueError(f"Optuna's pruners need an integer reduction_factor (got {self.reduction_factor})")
        return self

    def first_rung(self, stage1_epochs: int, max_epochs: int) -> int:
        """``grace_epochs`` when set, else the first epoch of stage 2. In ``python -m bench`` the grid's
        final front could not be told from stage-1 results (its members ranked in the middle there;
        ``front_foresight`` in replay.json) and became clear one epoch into stage 2: MO-ASHA with TPE
        kept 0.81 of the front's hypervolume with rungs at epochs 1 and 3, 0.97 with its rung at 5."""
        if self.grace_epochs is not None:
            return self.grace_epochs
        return stage1_epochs + 1 if stage1_epochs < max_epochs else 1


class Budget(Section):
    trials_per_condition: int = Field(ge=1)
    max_concurrent: int = Field(2, ge=1)
    stage1_epochs: int = Field(ge=1)
    stage2_epochs: int = Field(ge=0)
    max_failures: int = Field(
        2, ge=0, description="retries of a trial that raised (a lost node, a killed worker), each from its last "
                             "checkpoint; a diverged loss is deterministic and fails at once, never retried")


class Resources(Section):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)

    @field_validator("gpu")
    @classmethod
    def _fraction_or_whole(cls, v):
        if v > 1 and not float(v).is_integer():
            raise ValueError(f"more than one GPU must be a whole number (got {v})")
        return v


class ReportSpec(Section):
    """Hypervolume reference point: chance accuracy for 10 classes and 10 dB PSNR by default."""

    reference_accuracy: float = Field(0.1, ge=0, le=1)
    reference_psnr: float = 10.0

