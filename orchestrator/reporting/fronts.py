"""Pareto ranks, fronts, hypervolumes and compute spent, per condition and method, from the trials table.

Each method has its own front in each condition (an arm, :mod:`orchestrator.spec.arms`): a
baseline is compared with the proposed method front against front (:mod:`.gains`), never ranked
against it.

Only completed trials with finite objectives are ranked: a pruned trial's last values are
low-fidelity (it never trained its full budget) and a failed one has none, so both are listed
in reports but never placed on a front. The sorting and the hypervolume are moocore's, reached
through :mod:`orchestrator.pareto`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import search_spaces
from orchestrator.outcomes import COMPLETED, RUNNING, STATUSES
from orchestrator.objectives import METRICS
from orchestrator.pareto import hypervolume, hypervolume_trace, pareto_ranks

from .schema import DEFAULT_REFERENCE


def rankable(df: pd.DataFrame) -> np.ndarray:
    """True for completed trials whose objectives are all finite."""
    finite = np.isfinite(df[list(METRICS)].astype(float).to_numpy()).all(axis=1)
    return (df["status"] == COMPLETED).to_numpy() & finite


def methods(df: pd.DataFrame) -> list[str]:
    """Methods present, the four known ones first in a fixed order so colours, legends and tables agree."""
    present = list(dict.fromkeys(df["method"]))
    known = search_spaces.METHOD_PARAMETERS
    return [m for m in known if m in present] + sorted(m for m in present if m not in known)


def conditions(df: pd.DataFrame) -> list[str]:
    """Condition names in reading order: highest SNR first, then increasing k/n."""
    keys = df.groupby("condition", sort=False).agg(snr=("snr_db", "first"), kn=("kn_requested", "first"))
    return keys.sort_values(["snr", "kn"], ascending=[False, True], kind="stable").index.tolist()


def rank_trials(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with ``pareto_rank`` set per condition and method (null for unranked trials)."""
    out = df.copy()
    ok = rankable(out)
    arm = (out["condition"].astype(str) + "\x00" + out["method"].astype(str)).to_numpy()
    points = out[list(METRICS)].to_numpy(float)
    ranks = np.zeros(len(out), dtype="int64")  # 0 = not ranked; positional, so any index works
    for a in pd.unique(arm[ok]):
        chosen = ok & (arm == a)
        ranks[chosen] = pareto_ranks(points[chosen])
    out["pareto_rank"] = pd.Series(ranks, index=out.index, dtype="Int64").mask(ranks == 0)
    return out


def front_table(df: pd.DataFrame) -> pd.DataFrame:
    """Rank-1 trials of every condition and method, best accuracy first."""
    ranked = rank_trials(df)
    front = ranked[ranked["pareto_rank"].eq(1).fillna(False).astype(bool)]
    order = front["condition"].map({c: i for i, c in enumerate(conditions(ranked))})
    by_method = front["method"].map({m: i for i, m in enumerate(methods(ranked))})
    front = front.assign(_order=order, _method=by_method).sort_values(
        ["_order", "_method", *METRICS], ascending=[True, True, False, False], kind="stable")
    return front.drop(columns=["_order", "_method"]).reset_index(drop=True)



def hypervolumes(df: pd.DataFrame, ref=DEFAULT_REFERENCE) -> pd.DataFrame:
    """Per condition and method: hypervolume of its completed trials w.r.t. ``ref``, status counts, front size."""
    ranked = rank_trials(df.reset_index(drop=True))
    ok = pd.Series(rankable(ranked), index=ranked.index)
    rows = []
    for condition in conditions(ranked):
        in_condition = ranked[ranked["condition"] == condition]
        for method in methods(in_condition):
            group = in_condition[in_condition["method"] == method]
            points = group.loc[ok[group.index], list(METRICS)].to_numpy(float)
            counts = group["status"].value_counts()
            rows.append(
                {
                    "condition": condition,
                    "method": method,
                    "snr_db": float(group["snr_db"].iloc[0]),
                    "hypervolume": hypervolume(points, ref),
                    "n_trials": len(group),
                    **{f"n_{s}": int(counts.get(s, 0)) for s in STATUSES},
                    "front_size": int(group["pareto_rank"].eq(1).fillna(False).sum()),
                    "ref_accuracy": float(ref[0]),
                    "ref_psnr": float(ref[1]),
                }
            )
    return pd.DataFrame(rows)


def hypervolume_progress(df: pd.DataFrame, ref=DEFAULT_REFERENCE) -> pd.DataFrame:
    """Per condition and method, one row per finished trial in the order trials finished: the
    hypervolume of that method's completed trials up to that moment.

    Trials are ordered by ``end_time`` (those without one, last, in table order); running trials
    have not finished and are left out. Pruned and failed trials get a row too, carrying the
    hypervolume forward: they cost compute (``epochs_spent``) without moving the front, which is
    what a reader of this curve wants to see. Before the first completed trial the hypervolume is 0.
    """
    df = df.reset_index(drop=True)
    ok = pd.Series(rankable(df), index=df.index)
    columns = ["condition", "method", "trial_id", "end_time", "trials_finished", "epochs_spent", "hypervolume"]
    rows = []
    for condition in conditions(df):
        in_condition = df[df["condition"] == condition]
        for method in methods(in_condition):
            group = in_condition[in_condition["method"] == method]
            done = group[group["status"] != RUNNING].sort_values("end_time", kind="stable", na_position="last")
            if done.empty:
                continue
            keep = ok[done.index].to_numpy()
            completed = hypervolume_trace(done.loc[keep, list(METRICS)].to_numpy(float), ref)
            # after the i-th finished trial: the hypervolume of the completed trials among the first i
            trace = np.concatenate([[0.0], completed])[np.cumsum(keep)]
            rows.append(pd.DataFrame({
                "condition": condition,
                "method": method,
                "trial_id": done["trial_id"].to_numpy(),
                "end_time": done["end_time"].to_numpy(),
                "trials_finished": np.arange(1, len(done) + 1),
                "epochs_spent": done["epochs_run"].astype("int64").cumsum().to_numpy(),
                "hypervolume": trace.astype(float),
            }, columns=columns))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


def compute_budget(df: pd.DataFrame) -> dict:
    """Epochs trained vs. the epochs a run without pruning would need (Σ of every trial's budget)."""
    run = int(df["epochs_run"].sum())
    full = int(df["epochs_total"].sum())
    return {
        "epochs_run": run,
        "epochs_no_pruning": full,
        "epochs_saved": full - run,
        "fraction_saved": (full - run) / full if full else 0.0,
    }
