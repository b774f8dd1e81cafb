"""``write_report``: a trials table in, the report folder out.

Layout of ``out_dir``: ``trials.parquet``/``.csv`` (every trial, ranked), ``fronts.parquet``/``.csv``
(rank-1 trials of each condition and method), ``gains.csv`` (the proposed method against each
baseline, when the study has both), ``report.md``, ``report.html`` and ``figures/*.png``. Everything is derived from
the one table, so rewriting a report after more trials finish is just calling this again.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .figures import write_figures
from .fronts import front_table, rank_trials
from .gains import method_gains
from .html import render_html
from .markdown import render_markdown
from .picker import parse_constraint
from .picker import pick as pick_trials
from .schema import ReportMeta, conform
from .tables import write_table
from .views import FIGURES_DIR


def write_report(trials: pd.DataFrame, meta: ReportMeta, out_dir: Path, pick: str | None = None) -> dict[str, Path]:
    """Write the whole report; return its files by name (``trials_parquet``, ``report_html``, figure stems…).

    Raises ``ValueError`` before writing anything if the table misses required columns, has
    values of the wrong type, or ``pick`` is not a valid constraint (e.g. ``"accuracy>=0.85"``).
    """
    ranked = rank_trials(conform(trials))
    constraint = parse_constraint(pick) if pick is not None else None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "trials_parquet": out_dir / "trials.parquet",
        "trials_csv": out_dir / "trials.csv",
        "fronts_parquet": out_dir / "fronts.parquet",
        "fronts_csv": out_dir / "fronts.csv",
        "report_md": out_dir / "report.md",
        "report_html": out_dir / "report.html",
    }
    write_table(ranked, meta, paths["trials_parquet"], paths["trials_csv"])
    write_table(front_table(ranked), meta, paths["fronts_parquet"], paths["fronts_csv"])
    gains = method_gains(ranked)
    if len(gains):
        paths["gains_csv"] = out_dir / "gains.csv"
        gains.to_csv(paths["gains_csv"], index=False)
    picked = pick_trials(ranked, constraint) if constraint is not None else None
    paths["report_md"].write_text(render_markdown(ranked, meta, picked, figures_dir=FIGURES_DIR), encoding="utf-8")
    paths["report_html"].write_text(render_html(ranked, meta, picked, figures_dir=FIGURES_DIR), encoding="utf-8")
    paths.update(write_figures(ranked, meta.reference, out_dir / FIGURES_DIR))
    return paths
