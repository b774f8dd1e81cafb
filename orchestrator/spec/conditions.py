"""Channel conditions: the channel model × SNR × k/n grid of a study, each with a stable, readable name."""

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
    channel: str = "awgn"

    @property
    def name(self) -> str:
        """``snr20_kn1-12`` under AWGN (the paper's channel), ``rayleigh_snr20_kn1-12`` under another model."""
        base = f"snr{self.snr_db:g}_kn{kn_label(self.kn)}"
        return base if self.channel == "awgn" else f"{self.channel}_{base}"

    def as_config(self) -> dict:
        return {"condition": self.name, "channel_model": self.channel, "snr_db": self.snr_db, "kn": self.kn}


def condition_grid(spec: StudySpec) -> list[Condition]:
    """Every channel model × every SNR × every k/n, in the order the study file lists them."""
    c = spec.conditions
    return [Condition(float(s), float(k), m) for m in c.channel for s in c.snr_db for k in c.kn]
