"""Paper-ready PNGs of the report's views: single column (3.5 in wide), 300 dpi.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so writing a report never
switches the caller's backend or opens a window. Sizes are exact (no ``bbox_inches="tight"``):
a PNG is ``round(width·DPI) × round(height·DPI)`` pixels, which the layout engine fills.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from orchestrator.outcomes import PRUNED
from .fronts import conditions, front_table, hypervolume_progress, rankable
from .paper_reference import paper_points
from .views import (
    AXIS_TITLES,
    HYPERVOLUME_PNG,
    best_by_kn,
    color,
    front_png,
    kn_label,
    kn_ticks,
    label,
    methods,
    snrs,
    staircase,
    vs_kn_png,
)

DPI = 300
COLUMN_WIDTH_IN = 3.5
SIZES_IN = {"front": (COLUMN_WIDTH_IN, 2.6), "vs_kn": (COLUMN_WIDTH_IN, 4.6), "hypervolume": (COLUMN_WIDTH_IN, 4.6)}
_RC = {
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "legend.fontsize": 6,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
}
_MARKERS = {"proposed": "o", "deepjscc": "s", "deepjscc_ft": "^", "deepsc": "D"}


def pixel_size(kind: str) -> tuple[int, int]:
    """(width, height) in pixels of the PNGs of ``kind`` ("front", "vs_kn" or "hypervolume")."""
    w, h = SIZES_IN[kind]
    return round(w * DPI), round(h * DPI)


def write_figures(trials: pd.DataFrame, reference, out_dir: Path) -> dict[str, Path]:
    """All PNGs into ``out_dir``, returned by file stem."""
    import matplotlib

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    with matplotlib.rc_context(_RC):
        front = front_table(trials)
        for condition in conditions(trials):
            fig = _front(trials[trials["condition"] == condition], front[front["condition"] == condition], condition)
            paths[Path(front_png(condition)).stem] = _save(fig, out_dir / front_png(condition))
        best = best_by_kn(trials)
        for snr in snrs(trials):
            fig = _vs_kn(best[best["snr_db"] == snr], paper_points(snr), snr)
            paths[Path(vs_kn_png(snr)).stem] = _save(fig, out_dir / vs_kn_png(snr))
        fig = _hypervolume(hypervolume_progress(trials, reference), reference)
        paths[Path(HYPERVOLUME_PNG).stem] = _save(fig, out_dir / HYPERVOLUME_PNG)
    return paths


def _new(kind: str, rows: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=SIZES_IN[kind], dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(rows, 1, squeeze=False)[:, 0])


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _front(trials: pd.DataFrame, front: pd.DataFrame, condition: str) -> Figure:
    fig, (ax,) = _new("front")
    done = trials[rankable(trials)]
    pruned = trials[(trials["status"] == PRUNED) & trials["accuracy"].notna() & trials["psnr"].notna()]
    for m in methods(trials):
        p = pruned[pruned["method"] == m]
        ax.scatter(p["psnr"], p["accuracy"], s=8, marker=_MARKERS.get(m, "o"), color=color(m), alpha=0.2, linewidths=0)
        d = done[done["method"] == m]
        if len(d):
            ax.scatter(
                d["psnr"],
                d["accuracy"],
                s=12,
                marker=_MARKERS.get(m, "o"),
                color=color(m),
                label=label(m),
                linewidths=0,
            )
    for m in methods(front):  # each method's own front (an arm's), in its colour
        xs, ys = staircase(front[front["method"] == m])
        ax.plot(xs, ys, color=color(m), linewidth=0.8, label=f"{label(m)} front")
    ax.set(xlabel=AXIS_TITLES["psnr"], ylabel=AXIS_TITLES["accuracy"], title=f"{condition} (faint: pruned)")
    ax.grid(alpha=0.3, linewidth=0.4)
    ax.legend(loc="best", frameon=False)
    return fig


def _vs_kn(best: pd.DataFrame, paper: pd.DataFrame, snr: float) -> Figure:
    fig, axes = _new("vs_kn", rows=2)
    ticks = kn_ticks(best["kn"], paper["kn"])
    for ax, metric in zip(axes, ("accuracy", "psnr")):
        for m in methods(best):
            b = best[best["method"] == m]
            ax.plot(
                b["kn"],
                b[metric],
                marker=_MARKERS.get(m, "o"),
                markersize=3,
                linewidth=0.9,
                color=color(m),
                label=label(m),
            )
        ref = paper[paper["metric"] == metric]
        for m, r in ref.groupby("method", sort=False):
            ax.scatter(r["kn"], r["value"], marker="*", s=30, facecolors="none", edgecolors=color(m), linewidths=0.7)
        ax.set_xscale("log")
        ax.set_xticks(ticks, [kn_label(k) for k in ticks])
        ax.minorticks_off()
        ax.set(xlabel=AXIS_TITLES["kn"], ylabel=AXIS_TITLES[metric])
        ax.grid(alpha=0.3, linewidth=0.4)
    axes[0].set_title(f"SNR {snr:g} dB: best of the completed trials per k/n")
    handles, labels = axes[0].get_legend_handles_labels()
    for m in dict.fromkeys(paper["method"]):  # one hollow star per method the paper reports, in its colour
        handles.append(Line2D([], [], marker="*", linestyle="none", markerfacecolor="none", markeredgecolor=color(m)))
        labels.append(f"{label(m)} (paper)")
    fig.legend(handles, labels, loc="outside lower center", ncol=3, frameon=False)
    return fig


def _hypervolume(progress: pd.DataFrame, reference) -> Figure:
    fig, axes = _new("hypervolume", rows=2)
    for ax, x, xlabel in zip(
        axes, ("trials_finished", "epochs_spent"), ("trials finished", "epochs spent (all trials)")
    ):
        for (condition, method), p in progress.groupby(["condition", "method"], sort=False):
            name = condition if progress["method"].nunique() == 1 else f"{condition} {label(method)}"
            ax.step(p[x], p["hypervolume"], where="post", marker="o", markersize=2, linewidth=0.9, label=name)
        ax.set(xlabel=xlabel, ylabel="hypervolume (accuracy·dB)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3, linewidth=0.4)
    axes[0].set_title(f"Hypervolume w.r.t. (accuracy {reference[0]:g}, PSNR {reference[1]:g} dB)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=2, frameon=False)
    return fig
