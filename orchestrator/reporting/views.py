"""What the HTML, the PNGs and the Markdown all show, computed once so the three agree.

Colours, labels, file names, the front's staircase, the "best per k/n" table of the paper's
Fig. 3–4 view and the front table as display strings live here; the writers only draw.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pandas as pd

from orchestrator.outcomes import FAILED, PRUNED
from orchestrator.objectives import METRICS

from .fronts import conditions, methods, rankable
from .schema import ReportMeta

METHOD_LABELS = {"proposed": "Proposed (CL)", "deepjscc": "DeepJSCC", "deepjscc_ft": "DeepJSCC-ft", "deepsc": "DeepSC"}
METHOD_COLORS = {"proposed": "#d62728", "deepjscc": "#1f77b4", "deepjscc_ft": "#2ca02c", "deepsc": "#9467bd"}
_EXTRA_COLORS = ("#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
AXIS_TITLES = {"accuracy": "top-1 accuracy", "psnr": "PSNR (dB)", "kn": "achieved k/n"}


def label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def color(method: str) -> str:
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return _EXTRA_COLORS[sum(map(ord, method)) % len(_EXTRA_COLORS)]  # stable across runs


def snrs(df: pd.DataFrame) -> list[float]:
    return sorted({float(s) for s in df["snr_db"]}, reverse=True)


def kn_label(kn: float) -> str:
    """k/n as the paper writes it, 1/48 rather than 0.0208."""
    return f"1/{1 / kn:.3g}" if kn > 0 else f"{kn:g}"


def kn_ticks(ours, paper=(), min_ratio: float = 1.3) -> list[float]:
    """Tick positions on the log k/n axis: our achieved k/n, plus each of the paper's that is at
    least ``min_ratio`` away from every tick already placed (closer labels would overprint)."""
    ticks = sorted({float(k) for k in ours})
    for k in sorted({float(k) for k in paper}):
        if all(max(k, t) / min(k, t) >= min_ratio for t in ticks):
            ticks.append(k)
    return sorted(ticks)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def front_png(condition: str) -> str:
    return f"front_{safe_name(condition)}.png"


def vs_kn_png(snr_db: float) -> str:
    return f"vs_kn_snr{safe_name(f'{snr_db:g}')}.png"


HYPERVOLUME_PNG = "hypervolume.png"
FIGURES_DIR = "figures"  # the report folder's sub-folder of PNGs


def png_names(trials: pd.DataFrame) -> list[str]:
    """Every PNG a report holds, in reading order."""
    return [front_png(c) for c in conditions(trials)] + [vs_kn_png(s) for s in snrs(trials)] + [HYPERVOLUME_PNG]


def classifier_display(arch: str) -> str:
    """The downstream model, flagged when it is not the paper's ResNet-56."""
    if arch == "resnet20":
        return "ResNet-20 (a CPU-sized stand-in; the paper uses ResNet-56)"
    return {"resnet56": "ResNet-56 (as in the paper)", "": "not recorded"}.get(arch, arch)


def meta_display(meta: ReportMeta) -> pd.DataFrame:
    ref = meta.reference
    return pd.DataFrame(
        {
            "": [
                "study",
                "spec hash",
                "semtune",
                "tracking URI",
                "experiment id",
                "created (UTC)",
                "hypervolume reference",
                "downstream classifier",
                "scores",
            ],
            "value": [
                meta.study_name,
                meta.spec_hash,
                meta.semtune_version,
                meta.tracking_uri,
                meta.experiment_id,
                meta.created_at.isoformat(timespec="seconds"),
                f"accuracy {ref[0]:g}, PSNR {ref[1]:g} dB",
                classifier_display(meta.classifier),
                meta.scores or "not recorded",
            ],
        }
    )


def staircase(front: pd.DataFrame) -> tuple[list[float], list[float]]:
    """The front as a step line in (PSNR, accuracy): the edge of the region it dominates."""
    pts = sorted({(float(p), float(a)) for p, a in zip(front["psnr"], front["accuracy"])}, key=lambda t: (t[0], -t[1]))
    xs, ys = [], []
    for i, (x, y) in enumerate(pts):
        if i:
            xs.append(pts[i - 1][0])
            ys.append(y)
        xs.append(x)
        ys.append(y)
    return xs, ys


def best_by_kn(df: pd.DataFrame) -> pd.DataFrame:
    """Per SNR, method and achieved k/n: the best accuracy and the best PSNR over completed trials.

    Each objective's best is taken separately, as a paper's per-method curve reports each metric
    of its best model for that metric.
    """
    done = df[rankable(df)].assign(kn=lambda d: d["kn_achieved"].fillna(d["kn_requested"]).round(6))
    best = done.groupby(["snr_db", "method", "kn"], as_index=False).agg(
        accuracy=("accuracy", "max"), psnr=("psnr", "max"), n_trials=("trial_id", "size")
    )
    return best.sort_values(["snr_db", "method", "kn"], ascending=[False, True, True]).reset_index(drop=True)


def _num(value, fmt: str = ".3g") -> str:
    return "–" if value is None or pd.isna(value) else format(value, fmt)


def _alpha1(row) -> str:
    if row["alpha1_choice"] == "kn":
        return f"k/n ({_num(row['alpha1'])})"
    return _num(row["alpha1"])


def front_display(front: pd.DataFrame, link: Callable[[str, str], str]) -> pd.DataFrame:
    """Front members as strings; ``link(text, url)`` formats the run cell (``url`` may be empty)."""
    rows = []
    for _, r in front.iterrows():
        run = link(r["mlflow_run_id"], r["mlflow_run_url"])
        rows.append(
            {
                "method": label(r["method"]),
                "α1": _alpha1(r),
                "α2": _num(r["alpha2"]),
                "τ": _num(r["tau"]),
                "proj dim": _num(r["proj_dim"], "d"),
                "k/n": f"{kn_label(r['kn_achieved'])} ({_num(r['kn_achieved'], '.4f')})"
                if not pd.isna(r["kn_achieved"])
                else "–",
                "accuracy": _num(r["accuracy"], ".4f"),
                "PSNR (dB)": _num(r["psnr"], ".2f"),
                "SSIM": _num(r["ssim"], ".3f"),
                "epochs": f"{r['epochs_run']}/{r['epochs_total']}",
                "run": run,
            }
        )
    return pd.DataFrame(
        rows, columns=["method", "α1", "α2", "τ", "proj dim", "k/n", "accuracy", "PSNR (dB)", "SSIM", "epochs", "run"]
    )


def stopped_display(trials: pd.DataFrame, link: Callable[[str, str], str]) -> pd.DataFrame:
    """Pruned and failed trials with the epoch they were stopped at or why they failed."""
    stopped = trials[trials["status"].isin([PRUNED, FAILED])]
    why = [
        f"pruned at epoch {e}" if s == PRUNED else (f or "unknown")
        for s, e, f in zip(stopped["status"], stopped["pruned_at_epoch"], stopped["failure_reason"].fillna(""))
    ]
    return pd.DataFrame(
        {
            "condition": stopped["condition"],
            "trial": stopped["trial_id"],
            "method": stopped["method"].map(label),
            "status": stopped["status"],
            "epochs": [f"{r}/{t}" for r, t in zip(stopped["epochs_run"], stopped["epochs_total"])],
            "why": why,
            "run": [link(i, u) for i, u in zip(stopped["mlflow_run_id"], stopped["mlflow_run_url"])],
        }
    )


def pick_display(picked: pd.DataFrame) -> pd.DataFrame:
    """The picker's rows as strings ("–" where no trial qualified)."""
    return pd.DataFrame(
        {
            "condition": picked["condition"],
            "result": picked["result"],
            "trial": picked["trial_id"].fillna("–"),
            "method": picked["method"].map(label, na_action="ignore").fillna("–"),
            "accuracy": [_num(v, ".4f") for v in picked["accuracy"]],
            "PSNR (dB)": [_num(v, ".2f") for v in picked["psnr"]],
            "front rank": [_num(v, "d") for v in picked["pareto_rank"]],
            "note": picked["note"],
        }
    )


def hover_fields(row) -> list[tuple[str, str]]:
    """(name, value) pairs a point's tooltip lists: every hyperparameter, the objectives, the run."""
    return [
        ("trial", row["trial_id"]),
        ("method", label(row["method"])),
        ("status", row["status"]),
        ("α1", _alpha1(row)),
        ("α2", _num(row["alpha2"])),
        ("τ", _num(row["tau"])),
        ("proj dim", _num(row["proj_dim"], "d")),
        ("k/n", _num(row["kn_achieved"], ".4f")),
        *[(m, _num(row[m], ".4f")) for m in METRICS],
        ("SSIM", _num(row["ssim"], ".3f")),
        ("epochs", f"{row['epochs_run']}/{row['epochs_total']}"),
        ("run", row["mlflow_run_id"]),
    ]


GAINS_NOTE = ("Best-accuracy member of each method's front per condition (`gains.csv`); gain in accuracy points, "
              "PSNR cost = baseline PSNR − proposed PSNR. The paper reports up to +56 points over DeepJSCC at "
              "k/n 1/48, SNR 20 dB.")


def gains_display(gains: pd.DataFrame) -> pd.DataFrame:
    """The gains table (:func:`orchestrator.reporting.gains.method_gains`) for reading."""
    return pd.DataFrame({
        "condition": gains["condition"], "k/n": gains["kn_achieved"].map(kn_label),
        "baseline": gains["baseline"].map(label),
        "accuracy (proposed / baseline)": [f"{a:.3f} / {b:.3f}" for a, b in
                                           zip(gains["proposed_accuracy"], gains["baseline_accuracy"])],
        "gain (points)": gains["accuracy_gain_points"].map(lambda v: f"{v:+.1f}"),
        "PSNR (proposed / baseline, dB)": [f"{a:.2f} / {b:.2f}" for a, b in
                                           zip(gains["proposed_psnr"], gains["baseline_psnr"])],
        "PSNR cost (dB)": gains["psnr_cost_db"].map(lambda v: f"{v:+.2f}"),
    })
