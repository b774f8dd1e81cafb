"""``report.md``: the study's outcome as text, readable in a terminal, a PR or a wiki.

Same content as the HTML minus the interactive plots, which are linked as PNGs instead.
"""

from __future__ import annotations

import pandas as pd

from .fronts import compute_budget, conditions, front_table, hypervolumes
from .gains import method_gains
from .schema import ReportMeta
from .views import (
    HYPERVOLUME_PNG,
    front_display,
    GAINS_NOTE,
    front_png,
    gains_display,
    label,
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
    hv = hypervolumes(trials, ref)
    budget = compute_budget(trials)
    out = [
        f"# Study report: {meta.study_name}",
        "",
        md_table(meta_display(meta)),
        "",
        f"**PSNR** is {meta.psnr_definition}. **Accuracy** is top-1 (a fraction) after the last epoch a trial ran; "
        f"which images: {meta.scores or 'not recorded'}. Each method has its own front in each condition; "
        "fronts rank completed trials only: pruned and failed ones are listed below, never ranked.",
        "",
        f"Interactive version: [{html_name}]({html_name}).",
        "",
        "## Pareto fronts per condition and method",
    ]
    for condition in conditions(trials):
        out += ["", f"### {condition}", ""]
        for h in hv[hv["condition"] == condition].to_dict("records"):
            out.append(
                f"- {label(h['method'])}: {h['n_trials']} trials ({h['n_completed']} completed, {h['n_pruned']} pruned, "
                f"{h['n_failed']} failed, {h['n_running']} running); front {h['front_size']} trial(s); "
                f"hypervolume **{h['hypervolume']:.4f}** (reference accuracy {ref[0]:g}, PSNR {ref[1]:g} dB).")
        out.append("")
        front = fronts[fronts["condition"] == condition]
        out.append(
            md_table(front_display(front, md_link))
            if len(front)
            else "_No completed trial with finite objectives yet._"
        )
        out += ["", f"![front {condition}]({figures_dir}/{front_png(condition)})"]
    out += [
        "",
        *gains_section(trials),
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


def gains_section(trials: pd.DataFrame) -> list[str]:
    """The proposed method against each baseline, from the fronts (empty without both)."""
    gains = method_gains(trials)
    if gains.empty:
        return []
    return ["## Proposed method vs baselines", "", GAINS_NOTE, "", md_table(gains_display(gains)), ""]
