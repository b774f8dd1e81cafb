"""The study space as plain data: which hyperparameters each method has, and the study presets.

Nothing here imports Ray, Optuna or torch. A preset is a partial ``study.yaml`` document
(``presets/<name>.yaml``); a study file that says ``preset: <name>`` starts from it and
overrides any field.
"""

from __future__ import annotations

import math
from importlib import resources
from typing import Any

import yaml

# The searched hyperparameters each method actually uses (a baseline without a parameter
# is not sampled over it, so the samplers spend no trials on knobs that do nothing).
METHOD_PARAMETERS: dict[str, tuple[str, ...]] = {
    "proposed": ("alpha1", "alpha2", "tau", "proj_dim"),
    "deepjscc": (),
    "deepjscc_ft": ("alpha2",),
    "deepsc": ("alpha1",),  # its stage 2 retrains the classifier on the received images only
}
# Every searchable hyperparameter with the interval its values must lie in: (low, high, low is open).
BOUNDS: dict[str, tuple[float, float, bool]] = {
    "alpha1": (0, 1, False),
    "alpha2": (0, 1, False),
    "tau": (0, math.inf, True),
    "proj_dim": (0, 4096, True),
}
SEARCHABLE = tuple(BOUNDS)


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files(__name__).joinpath("presets").iterdir()
                  if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The preset's document; ``KeyError`` naming the known presets if there is none."""
    if name not in preset_names():
        raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    return yaml.safe_load(resources.files(__name__).joinpath("presets", f"{name}.yaml").read_text())


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else in ``override`` replaces ``base``."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
