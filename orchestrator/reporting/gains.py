"""The paper's headline comparison, computed from the fronts: what the proposed method gains over
each baseline in accuracy at every SNR and k/n, and the PSNR it pays for it.

Each method's point is the best-accuracy member of its front in that condition (so the
comparison uses the same trials the fronts show; the paper compares per-method curves the same
way: the accuracy each method reaches, and the PSNR it then has). Gains are in accuracy points
(percent); the PSNR cost is the baseline's PSNR minus the proposed method's, so a positive cost
is what the proposed method gives up. A condition where either side has no front is left out.
"""

from __future__ import annotations

import pandas as pd

from .fronts import conditions, front_table

PROPOSED = "proposed"
COLUMNS = ["condition", "snr_db", "kn_achieved", "baseline", "proposed_accuracy", "baseline_accuracy",
           "accuracy_gain_points", "proposed_psnr", "baseline_psnr", "psnr_cost_db"]


def best_accuracy_points(trials: pd.DataFrame) -> pd.DataFrame:
    """Per condition and method: the front member with the highest accuracy (ties: higher PSNR)."""
    front = front_table(trials)
    if front.empty:
        return front
    best = front.sort_values(["accuracy", "psnr"], ascending=False, kind="stable")
    return best.drop_duplicates(["condition", "method"]).reset_index(drop=True)


def method_gains(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per condition and baseline that both have a front (see the module docstring)."""
    best = best_accuracy_points(trials)
    rows = []
    for condition in conditions(trials):
        here = best[best["condition"] == condition].set_index("method") if len(best) else pd.DataFrame()
        if PROPOSED not in here.index:
            continue
        ours = here.loc[PROPOSED]
        for baseline in (m for m in here.index if m != PROPOSED):
            theirs = here.loc[baseline]
            rows.append({
                "condition": condition, "snr_db": float(ours["snr_db"]), "kn_achieved": float(ours["kn_achieved"]),
                "baseline": baseline,
                "proposed_accuracy": float(ours["accuracy"]), "baseline_accuracy": float(theirs["accuracy"]),
                "accuracy_gain_points": 100 * (float(ours["accuracy"]) - float(theirs["accuracy"])),
                "proposed_psnr": float(ours["psnr"]), "baseline_psnr": float(theirs["psnr"]),
                "psnr_cost_db": float(theirs["psnr"]) - float(ours["psnr"]),
            })
    return pd.DataFrame(rows, columns=COLUMNS)
