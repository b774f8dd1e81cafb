"""``report.md``: the study's outcome as text, readable in a terminal, a PR or a wiki.

Same content as the HTML minus the interactive plots, which are linked as PNGs instead.
"""

from __future__ import annotations

import pandas as pd

from .fronts import compute_budget, conditions, front_table, hypervolumes
from .schema import ReportMeta
from .views import (
    HYPERVOLUME_PNG,
    front_display,
    front_png,
    meta_display,
    pick_display,
    snrs,
    stopped_display,
    vs_kn_png,
)


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""
    lines = ["| " + " | ".join(map(_cell, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def md_link(text: str, url: str) -> str:
    """``[text](url)``, or just ``text`` when there is no URL."""
    return f"[{text}]({url.replace(' ', '%20').replace(')', '%29')})" if url else text


def render_markdown(
    trials: pd.DataFrame,
    meta: ReportMeta,
    picked: pd.DataFrame | None = None,
    figures_dir: str = "figures",
    html_name: str = "report.html",
) -> str:
    """The whole report as Markdown; figure links are relative to the report's folder."""
    ref = meta.reference
    fronts = front_table(trials)
    hv = {h["condition"]: h for h in hypervolumes(trials, ref).to_dict("records")}
    budget = compute_budget(trials)
    out = [
        f"# Study report: {meta.study_name}",
        "",
        md_table(meta_display(meta)),
        "",
        f"**PSNR** is {meta.psnr_definition}. **Accuracy** is top-1 (a fraction) on the evaluation split after the "
        "last epoch a trial ran. Fronts rank completed trials only: pruned and failed ones are listed below, "
        "never ranked.",
        "",
        f"Interactive version: [{html_name}]({html_name}).",
        "",
        "## Pareto fronts per condition",
    ]
    for condition in conditions(trials):
        h = hv[condition]
        out += [
            "",
            f"### {condition}",
            "",
            f"Trials: {h['n_trials']} ({h['n_completed']} completed, {h['n_pruned']} pruned, {h['n_failed']} failed, "
            f"{h['n_running']} running). Front: {h['front_size']} trial(s). "
            f"Hypervolume: **{h['hypervolume']:.4f}** (reference accuracy {ref[0]:g}, PSNR {ref[1]:g} dB).",
            "",
        ]
        front = fronts[fronts["condition"] == condition]
        out.append(
            md_table(front_display(front, md_link))
            if len(front)
            else "_No completed trial with finite objectives yet._"
        )
        out += ["", f"![front {condition}]({figures_dir}/{front_png(condition)})"]
    out += [
        "",
        "## Compute",
        "",
        f"Epochs trained: {budget['epochs_run']} of the {budget['epochs_no_pruning']} a run without pruning would need "
        f"(every trial to its full budget): {budget['epochs_saved']} saved, **{budget['fraction_saved']:.1%}**.",
        "",
        "## Pruned and failed trials",
        "",
        md_table(stopped) if len(stopped := stopped_display(trials, md_link)) else "None.",
    ]
    if picked is not None:
        out += [
            "",
            f"## Pick: `{picked['constraint'].iloc[0]}`" if len(picked) else "## Pick",
            "",
            md_table(pick_display(picked)),
        ]
    out += ["", "## Figures", ""]
    out += [f"- [{c}]({figures_dir}/{front_png(c)})" for c in conditions(trials)]
    out += [f"- [accuracy and PSNR vs k/n at SNR {s:g} dB]({figures_dir}/{vs_kn_png(s)})" for s in snrs(trials)]
    out += [f"- [hypervolume over time]({figures_dir}/{HYPERVOLUME_PNG})", ""]
    return "\n".join(out)
