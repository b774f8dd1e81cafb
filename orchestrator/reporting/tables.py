"""``trials.parquet`` / ``fronts.parquet`` and their CSV twins, and the reader that round-trips them.

Parquet keeps the types, each column's description (field metadata ``b"description"``) and the
report's :class:`ReportMeta` (file metadata ``b"semtune"``), so a table copied out of the report
folder still explains itself. The CSVs are for spreadsheets and carry only the rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .schema import METADATA_KEY, ReportMeta, arrow_schema, conform, from_arrow


def write_table(df: pd.DataFrame, meta: ReportMeta, parquet_path: Path, csv_path: Path | None = None) -> None:
    """Write ``df`` (conformed to the schema) as Parquet, and as CSV when ``csv_path`` is given."""
    rows = conform(df)
    table = pa.Table.from_pandas(rows, schema=arrow_schema(meta), preserve_index=False)
    table = table.replace_schema_metadata({METADATA_KEY: meta.to_json().encode()})  # drop pandas' own
    pq.write_table(table, parquet_path)
    if csv_path is not None:
        rows.to_csv(csv_path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")


def read_report_table(path: str | Path) -> tuple[pd.DataFrame, ReportMeta]:
    """Read a table :func:`write_table` wrote: the rows in the schema's dtypes, and the report's meta."""
    table = pq.read_table(path)
    metadata = table.schema.metadata or {}
    if METADATA_KEY not in metadata:
        raise ValueError(f"{path} has no {METADATA_KEY!r} metadata: it was not written by semtune's report writer")
    return from_arrow(table), ReportMeta.from_json(metadata[METADATA_KEY])
