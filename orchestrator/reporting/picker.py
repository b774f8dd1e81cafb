"""Pick one trial per condition from a constraint such as ``"accuracy>=0.85"``.

Among the completed trials that meet the constraint, the one with the best *other* objective
wins (ties: the better constrained objective). For a lower bound (``>=``, ``>``) the winner is
always on the condition's front: anything dominating it would also qualify and beat it. For an
upper bound it is on the front of the trials that qualify, and its ``pareto_rank`` says where
it stands among all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.objectives import METRICS

from .fronts import conditions, rank_trials, rankable

_OPS = {">=": np.greater_equal, "<=": np.less_equal, ">": np.greater, "<": np.less}
_PATTERN = re.compile(r"^\s*([A-Za-z_]\w*)\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_UNITS = {"accuracy": "a fraction in [0, 1]", "psnr": "dB"}


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str
    value: float

    @property
    def other(self) -> str:
        """The objective maximised among the trials that meet the constraint."""
        return next(m for m in METRICS if m != self.metric)

    def holds(self, df: pd.DataFrame) -> np.ndarray:
        return _OPS[self.op](df[self.metric].to_numpy(float), self.value)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def parse_constraint(text: str) -> Constraint:
    """``"metric OP number"`` with OP one of >=, <=, >, <; whitespace anywhere is fine."""
    match = _PATTERN.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"constraint {text!r} is malformed: expected 'METRIC OP NUMBER' with METRIC in {list(METRICS)} "
            f"and OP one of {list(_OPS)}, e.g. 'accuracy>=0.85' or 'psnr >= 30'"
        )
    metric, op, number = match.groups()
    if metric not in METRICS:
        raise ValueError(f"constraint {text!r} names unknown metric {metric!r}; known metrics: {list(METRICS)}")
    value = float(number)
    if metric == "accuracy" and not 0.0 <= value <= 1.0:
        raise ValueError(
            f"constraint {text!r}: accuracy is {_UNITS['accuracy']}, got {value:g} (did you mean {value / 100:g}?)"
        )
    return Constraint(metric, op, value)


def pick(df: pd.DataFrame, constraint: str | Constraint) -> pd.DataFrame:
    """One row per condition: the picked trial (``result == "picked"``) or ``result == "none"``.

    Columns: ``condition``, ``constraint``, ``result``, ``note`` and then the trial's columns
    (null when nothing qualifies).
    """
    c = parse_constraint(constraint) if isinstance(constraint, str) else constraint
    ranked = rank_trials(df)
    candidates = ranked[rankable(ranked)]
    rows = []
    for condition in conditions(ranked):
        group = candidates[candidates["condition"] == condition]
        ok = group[c.holds(group)]
        if ok.empty:
            closest = group[c.metric].max() if c.op in (">=", ">") else group[c.metric].min()
            note = f"no completed trial meets {c}" + (f" (closest {c.metric}: {closest:.4g})" if len(group) else "")
            rows.append({"condition": condition, "constraint": str(c), "result": "none", "note": note})
            continue
        winner = ok.sort_values([c.other, c.metric], ascending=False, kind="stable").iloc[0]
        note = f"best {c.other} among {len(ok)} completed trial(s) meeting {c}"
        rows.append(
            {"condition": condition, "constraint": str(c), "result": "picked", "note": note, **winner.to_dict()}
        )
    columns = ["condition", "constraint", "result", "note", *[k for k in ranked.columns if k != "condition"]]
    out = pd.DataFrame(rows, columns=columns)
    for name in ranked.columns:  # keep the table's dtypes despite the "none" rows
        out[name] = out[name].astype(ranked[name].dtype)
    return out
