"""Channel conditions: the SNR × k/n grid of a study, each with a stable, readable name."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from orchestrator.spec.study import StudySpec


def kn_label(kn: float) -> str:
    """``1/12`` → ``"1-12"``, ``0.4`` → ``"1-2.5"``: names that survive file systems and URLs."""
    inv = 1 / kn
    if abs(inv - round(inv)) < 1e-9:
        return f"1-{round(inv)}"
    frac = Fraction(kn).limit_denominator(1000)
    if abs(float(frac) - kn) < 1e-9 and frac.numerator != 1:
        return f"{frac.numerator}-{frac.denominator}"
    return f"1-{inv:.4g}"


@dataclass(frozen=True)
class Condition:
    snr_db: float
    kn: float

    @property
    def name(self) -> str:
        return f"snr{self.snr_db:g}_kn{kn_label(self.kn)}"

    def as_config(self) -> dict:
        return {"condition": self.name, "snr_db": self.snr_db, "kn": self.kn}


def condition_grid(spec: StudySpec) -> list[Condition]:
    """Every SNR × every k/n, in the order the study file lists them."""
    return [Condition(float(s), float(k)) for s in spec.conditions.snr_db for k in spec.conditions.kn]
