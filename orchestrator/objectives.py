"""The study's objectives, declared once as (metric name, mode) pairs."""

from __future__ import annotations

OBJECTIVES: tuple[tuple[str, str], ...] = (("accuracy", "max"), ("psnr", "max"))
METRICS = tuple(name for name, _ in OBJECTIVES)
MODES = tuple(mode for _, mode in OBJECTIVES)
