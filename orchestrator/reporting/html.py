"""``report.html``: one self-contained page with interactive plots that opens offline.

plotly.js is inlined once in ``<head>`` (the same bundle ``include_plotlyjs=True`` inlines) and
every plot div is written with ``include_plotlyjs=False``, so the file needs no CDN and stays
one copy of the library however many plots it holds. Clicking a point opens its MLflow run.
"""

from __future__ import annotations

from html import escape

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from .fronts import compute_budget, conditions, front_table, hypervolume_progress, hypervolumes
from .interactive import front_figure, hypervolume_figure, vs_kn_figure
from .paper_reference import paper_points
from .schema import ReportMeta
from .gains import method_gains
from .views import (
    GAINS_NOTE, best_by_kn, front_display, gains_display, label, meta_display, pick_display, png_names, safe_name,
    snrs, stopped_display,
)

_CONFIG = {"displaylogo": False, "responsive": True}
_CLICK = """var gd = document.getElementById('{plot_id}');
gd.on('plotly_click', function (ev) {
  var d = ev.points[0].customdata;  // [hover text, run URL] on trial points only
  if (Array.isArray(d) && d[1]) { window.open(d[1], '_blank', 'noopener'); }
});"""
_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.2em .5em}
th{background:#f4f4f4}p.note{color:#555}.plot{margin-bottom:1em}"""


def html_link(text: str, url: str) -> str:
    return f'<a href="{escape(url)}" target="_blank" rel="noopener">{escape(text)}</a>' if url else escape(text)


def html_table(df: pd.DataFrame, raw: tuple[str, ...] = ()) -> str:
    """Cells escaped except the ``raw`` columns, which the caller built as safe HTML."""
    head = "".join(f"<th>{escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{v if c in raw else escape(str(v))}</td>" for c, v in zip(df.columns, row)) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _div(fig: go.Figure, name: str, clickable: bool = False) -> str:
    fig.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=40, b=50))
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=f"plot-{safe_name(name)}",
        config=_CONFIG,
        post_script=_CLICK if clickable else None,
        default_height=f"{fig.layout.height or 450}px",
    )


def render_html(
    trials: pd.DataFrame, meta: ReportMeta, picked: pd.DataFrame | None = None, figures_dir: str = "figures"
) -> str:
    """The whole report as one HTML document (plotly.js included)."""
    ref = meta.reference
    fronts, hv, gains = front_table(trials), hypervolumes(trials, ref), method_gains(trials)
    budget = compute_budget(trials)
    body = [
        f"<h1>Study report: {escape(meta.study_name)}</h1>",
        html_table(meta_display(meta)),
        f"<p><b>PSNR</b> is {escape(meta.psnr_definition)}. <b>Accuracy</b> is top-1 (a fraction) after the last "
        f"epoch a trial ran; which images: {escape(meta.scores or 'not recorded')}.</p>",
        f"<p>Compute: {budget['epochs_run']} epochs trained of the {budget['epochs_no_pruning']} a run without pruning "
        f"would need; <b>{budget['fraction_saved']:.1%}</b> saved by pruning.</p>",
        "<h2>Pareto fronts per condition and method</h2>",
        "<p class='note'>Each point is a completed trial, coloured by method; each method's staircase is its Pareto "
        "front (no other trial of that method is better in both accuracy and PSNR). Faint crosses are pruned trials at their last "
        "evaluation: low-fidelity values, never ranked. Hover for the hyperparameters; click a point to open its "
        "MLflow run.</p>",
    ]
    for condition in conditions(trials):
        front = fronts[fronts["condition"] == condition]
        body += [f"<h3>{escape(condition)}</h3>"] + [
            f"<p>{escape(label(h['method']))}: {h['n_trials']} trials: {h['n_completed']} completed, "
            f"{h['n_pruned']} pruned, {h['n_failed']} failed, {h['n_running']} running. Hypervolume "
            f"<b>{h['hypervolume']:.4f}</b> (reference accuracy {ref[0]:g}, PSNR {ref[1]:g} dB).</p>"
            for h in hv[hv["condition"] == condition].to_dict("records")
        ] + [
            _div(
                front_figure(trials[trials["condition"] == condition], front, condition),
                f"front-{condition}",
                clickable=True,
            ),
            html_table(front_display(front, html_link), raw=("run",))
            if len(front)
            else "<p>No completed trial yet.</p>",
        ]
    if len(gains):
        body += ["<h2>Proposed method vs baselines</h2>", f"<p class='note'>{escape(GAINS_NOTE)}</p>",
                 html_table(gains_display(gains))]
    body += [
        "<h2>Accuracy and PSNR vs bandwidth ratio (the paper's Fig. 3–4 view)</h2>",
        "<p class='note'>Per SNR, method and achieved k/n, the best accuracy and the best PSNR over completed trials "
        "(each its own best trial). Open stars are the values the paper states in its text (SNR 20 dB; some derived "
        "from stated differences, see hover); the paper used the official CIFAR-10, our data may differ slightly.</p>",
    ]
    best = best_by_kn(trials)
    body += [_div(vs_kn_figure(best[best["snr_db"] == s], paper_points(s), s), f"vs-kn-{s:g}") for s in snrs(trials)]
    body += [
        "<h2>Hypervolume over time</h2>",
        f"<p class='note'>Area dominated by each condition's completed trials above the reference (accuracy "
        f"{ref[0]:g}, PSNR {ref[1]:g} dB), after each completed trial; the x axes count every finished trial and "
        "every epoch trained, pruned and failed trials included. A flat end means the search stopped finding better "
        "trade-offs.</p>",
        _div(hypervolume_figure(hypervolume_progress(trials, ref)), "hypervolume"),
        "<h2>Pruned and failed trials</h2>",
        html_table(stopped, raw=("run",)) if len(stopped := stopped_display(trials, html_link)) else "<p>None.</p>",
    ]
    if picked is not None and len(picked):
        body += [f"<h2>Pick: {escape(picked['constraint'].iloc[0])}</h2>", html_table(pick_display(picked))]
    body += (
        ["<h2>Figures (PNG, 300 dpi)</h2><ul>"]
        + [f"<li><a href='{escape(figures_dir)}/{escape(p)}'>{escape(p)}</a></li>" for p in png_names(trials)]
        + ["</ul>"]
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(meta.study_name)}: semtune report</title><style>{_STYLE}</style>"
        "<script type='text/javascript'>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
