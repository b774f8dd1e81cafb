"""``study.yaml`` → a validated :class:`StudySpec`.

One pydantic model per section; every problem becomes an ``error: <field path>: <reason>`` line
(see :class:`trainables.config.ConfigError`). Nothing here imports Ray, Optuna or torch, so
``semtune validate`` stays fast.

- :mod:`.yamlio`: safe YAML reading; :mod:`.load`: presets, paths, one-pass validation;
- :mod:`.study`: the whole spec; :mod:`.sections` and :mod:`.search_space`: its parts;
- :mod:`.conditions`: the SNR × k/n grid and its names; :mod:`.arms`: condition × method, searched apart;
- :mod:`.redact`: credentials in addresses, masked wherever semtune writes or shows one.
"""

from orchestrator.spec.arms import Arm, study_arms
from orchestrator.spec.conditions import Condition, condition_grid, kn_label
from orchestrator.spec.load import build_spec, load_spec
from orchestrator.spec.search_space import Choices, Fixed, FloatRange, IntRange, Param, SearchSpace
from orchestrator.spec.sections import Budget, Conditions, PrunerSpec, ReportSpec, Resources, SamplerSpec
from orchestrator.spec.study import StudySpec, base_trial_doc

__all__ = [
    "Arm", "Budget", "Choices", "Condition", "Conditions", "Fixed", "FloatRange", "IntRange", "Param", "PrunerSpec",
    "ReportSpec", "Resources", "SamplerSpec", "SearchSpace", "StudySpec", "base_trial_doc", "build_spec",
    "condition_grid", "kn_label", "load_spec", "study_arms",
]
