"""Argument checks for the scheduler classes, in Optuna's style (parameter, value, what it may be).

The schedulers are usable on their own, outside a study, so they check their own arguments; a
study's values were already validated by :mod:`orchestrator.spec` and pass these trivially.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_arg(ok: bool, name: str, value, allowed: str) -> None:
    if not ok:
        raise ValueError(f"The value of `{name}` is {value!r}, but must be {allowed}.")
