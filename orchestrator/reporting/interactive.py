"""The report's plotly figures: fronts per condition, the paper's Fig. 3–4 view, hypervolume over time.

Data come from :mod:`.views` so these plots show what the PNGs of :mod:`.figures` show. Each
completed or pruned point carries ``customdata = [hover text, run URL]``; the page's click handler
opens the URL.
"""

from __future__ import annotations

from html import escape

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from orchestrator.outcomes import PRUNED
from .fronts import rankable
from .views import AXIS_TITLES, color, hover_fields, kn_label, kn_ticks, label, methods, staircase

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _points(df: pd.DataFrame, method: str, faint: bool) -> go.Scatter:
    hover = [
        "<br>".join(f"{k}: {escape(str(v))}" for k, v in hover_fields(r))
        + (
            f"<br><a href='{escape(r['mlflow_run_url'])}'>MLflow run</a> (click the point to open)"
            if r["mlflow_run_url"]
            else ""
        )
        for _, r in df.iterrows()
    ]
    return go.Scatter(
        x=df["psnr"],
        y=df["accuracy"],
        mode="markers",
        name=f"{label(method)}{' (pruned)' if faint else ''}",
        legendgroup=method,
        marker=dict(
            color=color(method),
            size=7 if faint else 9,
            opacity=0.25 if faint else 0.9,
            symbol="x" if faint else "circle",
        ),
        customdata=list(zip(hover, df["mlflow_run_url"])),
        hovertemplate="%{customdata[0]}<extra></extra>",
        hoverlabel=dict(bgcolor="white", bordercolor=color(method), font=dict(color="#222")),
    )


def front_figure(trials: pd.DataFrame, front: pd.DataFrame, condition: str) -> go.Figure:
    fig = go.Figure()
    done = trials[rankable(trials)]
    pruned = trials[(trials["status"] == PRUNED) & trials["accuracy"].notna() & trials["psnr"].notna()]
    for m in methods(trials):
        if (pruned["method"] == m).any():
            fig.add_trace(_points(pruned[pruned["method"] == m], m, faint=True))
        if (done["method"] == m).any():
            fig.add_trace(_points(done[done["method"] == m], m, faint=False))
    for m in methods(front):  # each method's own front (an arm's), in its colour
        xs, ys = staircase(front[front["method"] == m])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"{label(m)} front",
                                 line=dict(color=color(m), width=1.5), hoverinfo="skip"))
    fig.update_layout(title=condition, xaxis_title=AXIS_TITLES["psnr"], yaxis_title=AXIS_TITLES["accuracy"], height=450)
    return fig


def vs_kn_figure(best: pd.DataFrame, paper: pd.DataFrame, snr: float) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy vs k/n", "PSNR vs k/n"))
    ticks = kn_ticks(best["kn"], paper["kn"])
    for col, metric in enumerate(("accuracy", "psnr"), start=1):
        for m in methods(best):
            b = best[best["method"] == m]
            fig.add_trace(
                go.Scatter(
                    x=b["kn"],
                    y=b[metric],
                    mode="lines+markers",
                    name=label(m),
                    legendgroup=m,
                    showlegend=col == 1,
                    marker=dict(color=color(m), size=8),
                    line=dict(color=color(m)),
                    customdata=b["n_trials"],
                    hovertemplate=f"{label(m)}<br>k/n %{{x:.4f}}<br>best {metric} %{{y:.4f}}"
                    "<br>of %{customdata} completed trial(s)<extra></extra>",
                ),
                row=1,
                col=col,
            )
        ref, with_accuracy = paper[paper["metric"] == metric], set(paper.loc[paper["metric"] == "accuracy", "method"])
        for m, r in ref.groupby("method", sort=False):
            notes = [f"{'derived' if d else 'stated'}: {escape(s)}" for d, s in zip(r["derived"], r["source"])]
            fig.add_trace(
                go.Scatter(
                    x=r["kn"],
                    y=r["value"],
                    mode="markers",
                    name=f"paper: {label(m)}",
                    legendgroup=f"paper-{m}",
                    showlegend=metric == "accuracy" or m not in with_accuracy,
                    marker=dict(symbol="star-open", size=14, color=color(m), line=dict(width=2)),
                    customdata=notes,
                    hovertemplate=f"paper, {label(m)}<br>k/n %{{x:.4f}}: %{{y}}<br>%{{customdata}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(
            type="log",
            tickvals=ticks,
            ticktext=[kn_label(k) for k in ticks],
            title_text=AXIS_TITLES["kn"],
            row=1,
            col=col,
        )
        fig.update_yaxes(title_text=AXIS_TITLES[metric], row=1, col=col)
    fig.update_layout(title=f"SNR {snr:g} dB", height=420)
    return fig


def hypervolume_figure(progress: pd.DataFrame) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("by trials finished", "by epochs spent (all trials)"))
    single = progress["method"].nunique() <= 1
    for i, ((condition, method), p) in enumerate(progress.groupby(["condition", "method"], sort=False)):
        name = condition if single else f"{condition} {label(method)}"
        for col, x in enumerate(("trials_finished", "epochs_spent"), start=1):
            fig.add_trace(
                go.Scatter(
                    x=p[x],
                    y=p["hypervolume"],
                    mode="lines+markers",
                    line_shape="hv",
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    line=dict(color=_PALETTE[i % len(_PALETTE)]),
                    customdata=p["trial_id"],
                    hovertemplate=f"{escape(name)}<br>{x.replace('_', ' ')} %{{x}}<br>hypervolume %{{y:.4f}}"
                    "<br>after %{customdata}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_yaxes(title_text="hypervolume (accuracy·dB)", row=1, col=1)
    fig.update_xaxes(title_text="trials finished", row=1, col=1)
    fig.update_xaxes(title_text="epochs spent", row=1, col=2)
    fig.update_layout(height=420)
    return fig
