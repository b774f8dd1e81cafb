"""Study arms: one (channel condition, method) pair each, the unit that is searched and pruned.

Each arm has its own Optuna study, its own MO-ASHA rungs and its own front: a baseline never
competes with the proposed method for a rung's quota, and each method's sampler learns only
from its own trials over only the parameters that method uses (``search_spaces.METHOD_PARAMETERS``).
An arm's trial budget is ``budget.trials_per_condition``, or the number of distinct
configurations its method has when that is smaller (plain DeepJSCC searches nothing: one trial).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import search_spaces
from orchestrator.spec.conditions import Condition, condition_grid
from orchestrator.spec.search_space import Choices, Fixed, FloatRange, IntRange, SearchSpace
from orchestrator.spec.study import StudySpec


ARM_KEY = "arm"  # the Tune config key that names a trial's arm (the schedulers group by it)


@dataclass(frozen=True)
class Arm:
    condition: Condition
    method: str
    trials: int

    @property
    def name(self) -> str:
        return f"{self.condition.name}/{self.method}"

    def as_config(self) -> dict:
        return {ARM_KEY: self.name, **self.condition.as_config(), "method": self.method}


def method_space(space: SearchSpace, method: str) -> dict:
    """The searched parameters ``method`` uses, with their definitions."""
    used = search_spaces.METHOD_PARAMETERS[method]
    return {name: p for name, p in space.defined().items() if name in used}


def configurations(space: SearchSpace, method: str) -> float:
    """How many distinct configurations ``method`` has in ``space`` (``inf`` with a continuous range)."""
    n = 1.0
    for p in method_space(space, method).values():
        if isinstance(p, FloatRange):
            return math.inf
        if isinstance(p, IntRange):
            n *= len(range(p.low, p.high + 1, p.step))
        elif isinstance(p, Choices):
            n *= len(p.choices)
        else:
            assert isinstance(p, Fixed)
    return n


def study_arms(spec: StudySpec) -> list[Arm]:
    """Every condition × every method, condition-major, in the order the study file lists them."""
    budget = {m: int(min(spec.budget.trials_per_condition, configurations(spec.search_space, m)))
              for m in spec.methods}
    return [Arm(c, m, budget[m]) for c in condition_grid(spec) for m in spec.methods]
