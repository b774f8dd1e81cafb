"""Reports of a study: from the trials table (one row per trial) to Parquet/CSV, Markdown, HTML and PNGs.

The table's columns are declared once in :mod:`.schema`; ``COLUMNS.md`` beside this file explains
them and every plot. Entry point: :func:`write_report`.
"""

from .build import write_report
from .fronts import compute_budget, front_table, hypervolume_progress, hypervolumes, rank_trials
from .paper_reference import PAPER_POINTS, PaperPoint, paper_points
from .picker import Constraint, parse_constraint, pick
from .schema import COLUMNS, DEFAULT_REFERENCE, REQUIRED_COLUMNS, Column, ReportMeta, arrow_schema, conform
from .tables import read_report_table, write_table

__all__ = [
    "COLUMNS",
    "DEFAULT_REFERENCE",
    "PAPER_POINTS",
    "REQUIRED_COLUMNS",
    "Column",
    "Constraint",
    "PaperPoint",
    "ReportMeta",
    "arrow_schema",
    "compute_budget",
    "conform",
    "front_table",
    "hypervolume_progress",
    "hypervolumes",
    "paper_points",
    "parse_constraint",
    "pick",
    "rank_trials",
    "read_report_table",
    "write_report",
    "write_table",
]
