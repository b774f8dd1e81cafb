"""The trials table: one row per trial, declared once here and used by every writer and reader.

``COLUMNS`` is the single source of truth: the Parquet schema (with each description stored as
field metadata), the required-column check of :func:`conform` and ``COLUMNS.md`` all follow it.
:class:`ReportMeta` is what a report says about where its rows came from.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import NamedTuple

import pandas as pd
import pyarrow as pa

from orchestrator.outcomes import STATUSES


class Column(NamedTuple):
    name: str
    type: pa.DataType
    description: str
    required: bool = False  # the input table must have it; optional ones are filled with nulls
    nullable: bool = True


_TS = pa.timestamp("ms", tz="UTC")
_KEY = {"required": True, "nullable": False}  # must be present and never null
_NEEDED = {"required": True}  # must be present, may be null (e.g. no metric for a failed trial)
_EVAL = "on the tuning images (the report says which) after the last epoch run; null if none"

COLUMNS: list[Column] = [
    Column("trial_id", pa.string(), "Ray Tune trial id", **_KEY),
    Column("condition", pa.string(), "channel condition, e.g. 'snr20_kn1-12'; fronts are per condition", **_KEY),
    Column("method", pa.string(), "proposed | deepjscc | deepjscc_ft | deepsc", **_KEY),
    Column("channel", pa.string(), "channel model (awgn | rayleigh | rayleigh_nocsi | tdl), part of the condition"),
    Column("snr_db", pa.float64(), "channel SNR in dB the trial trained and was evaluated at", **_KEY),
    Column("kn_requested", pa.float64(), "bandwidth ratio k/n asked for in the study spec", **_KEY),
    Column("kn_achieved", pa.float64(), "k/n the codec really uses (whole latent channels); plots use it", **_NEEDED),
    Column("alpha1", pa.float64(), "resolved stage-1 weight of L_rec; null for methods without a stage 1"),
    Column("alpha1_choice", pa.string(), "'kn' for the paper's alpha1 = k/n heuristic, else the number as text"),
    Column("alpha2", pa.float64(), "stage-2 weight of L_rec; null if n/a"),
    Column("tau", pa.float64(), "contrastive temperature; null if n/a"),
    Column("proj_dim", pa.int64(), "projection-head output dimension; null if n/a"),
    Column("accuracy", pa.float64(), f"top-1 accuracy (a fraction) {_EVAL}", **_NEEDED),
    Column("psnr", pa.float64(), f"PSNR in dB (see the report's PSNR definition) {_EVAL}", **_NEEDED),
    Column("ssim", pa.float64(), f"SSIM {_EVAL}"),
    Column("epochs_run", pa.int64(), "epochs the trial actually trained (both stages)", **_KEY),
    Column("epochs_total", pa.int64(), "the trial's full epoch budget had it not been stopped", **_KEY),
    Column("status", pa.string(), "completed | pruned | failed | running", **_KEY),
    Column("pruned_at_epoch", pa.int64(), "epoch at which the scheduler stopped the trial; null unless pruned"),
    Column("failure_reason", pa.string(), "error that ended the trial; null unless failed"),
    Column("pareto_rank", pa.int64(), "rank within the condition (1 = front); completed, finite trials only"),
    Column("mlflow_run_id", pa.string(), "MLflow run id of the trial", **_KEY),
    Column("mlflow_run_url", pa.string(), "link to the run in the MLflow UI; empty when there is none", nullable=False),
    Column("start_time", _TS, "when the trial started (UTC)"),
    Column("end_time", _TS, "when the trial finished (UTC); null while running"),
    Column("final_accuracy", pa.float64(), "top-1 accuracy on the final images, never tuned on; null unless scored"),
    Column("final_psnr", pa.float64(), "PSNR in dB on the final images, never tuned on; null unless scored"),
]
COLUMN_NAMES = [c.name for c in COLUMNS]
REQUIRED_COLUMNS = [c.name for c in COLUMNS if c.required]
METADATA_KEY = b"semtune"

# chance accuracy for 10 classes and 10 dB: see ReportMeta.reference
DEFAULT_REFERENCE = (0.1, 10.0)


def arrow_schema(meta: ReportMeta | None = None) -> pa.Schema:
    """The Parquet schema: descriptions as field metadata, ``meta`` as JSON under ``b"semtune"``."""
    fields = [pa.field(c.name, c.type, c.nullable, {b"description": c.description.encode()}) for c in COLUMNS]
    return pa.schema(fields, metadata=None if meta is None else {METADATA_KEY: meta.to_json().encode()})


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Check ``df`` against the schema and return it with the schema's columns, order and dtypes.

    Missing optional columns become nulls and extra columns are dropped, so the reader of MLflow
    and the writers agree on one shape: floats as float64 (NaN = null), integers as nullable
    ``Int64``, strings as pandas strings, times as ``datetime64[ms, UTC]``.
    """
    missing = [name for name in REQUIRED_COLUMNS if name not in df.columns]
    if missing:
        raise ValueError(f"trials table misses required columns {missing} (it has {list(df.columns)})")
    out = pd.DataFrame(index=range(len(df)))
    for col in COLUMNS:
        values = df[col.name].reset_index(drop=True) if col.name in df.columns else pd.Series([None] * len(df))
        if col.name == "mlflow_run_url":
            values = values.fillna("")
        out[col.name] = _cast(values, col)
        if not col.nullable and out[col.name].isna().any():
            bad = out.loc[out[col.name].isna(), "trial_id"].tolist() if "trial_id" in out else []
            raise ValueError(f"column {col.name!r} must not be null (null for trials {bad})")
    unknown = sorted(set(out["status"]) - set(STATUSES))
    if unknown:
        raise ValueError(f"column 'status' has values {unknown}; allowed: {list(STATUSES)}")
    return out


def _cast(values: pd.Series, col: Column) -> pd.Series:
    try:
        if pa.types.is_timestamp(col.type):
            return pd.to_datetime(values, utc=True).astype("datetime64[ms, UTC]")
        if pa.types.is_integer(col.type):
            return pd.to_numeric(values).astype("Int64")
        if pa.types.is_floating(col.type):
            return pd.to_numeric(values).astype("float64")
        return values.astype("str")  # pandas keeps nulls as nulls here
    except (TypeError, ValueError) as err:
        raise ValueError(f"column {col.name!r} cannot be read as {col.type}: {err}") from err


def from_arrow(table: pa.Table) -> pd.DataFrame:
    """Arrow → the pandas dtypes :func:`conform` produces (nullable integers stay integers)."""
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _semtune_version() -> str:
    try:  # the installed distribution's version, whatever the layout of the import path
        return version("semtune")
    except PackageNotFoundError:
        return "unknown"


def _psnr_definition() -> str:
    from trainables.metrics import PSNR_DEFINITION  # loads torch: only when a report is made

    return PSNR_DEFINITION


@dataclass(frozen=True)
class ReportMeta:
    """Where a report's rows came from, stored with every table so a file explains itself.

    ``reference`` is the hypervolume's (accuracy, PSNR dB) corner, fixed rather than taken from
    the data so hypervolumes compare across studies and conditions: 0.1 is chance accuracy for
    10 classes, and 10 dB lies below any decoder that learned anything (a constant mid-grey
    image already scores ≈12 dB on the CIFAR-10 test set). Trials not beating it in both
    objectives add nothing.
    """

    study_name: str
    spec_hash: str
    tracking_uri: str
    experiment_id: str
    reference: tuple[float, float] = DEFAULT_REFERENCE
    classifier: str = ""  # the downstream model, e.g. "resnet20": CPU-sized studies must say so
    scores: str = ""  # which images each number comes from (trainables.data.describe_split)
    semtune_version: str = field(default_factory=_semtune_version)
    psnr_definition: str = field(default_factory=_psnr_definition)
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def __post_init__(self):
        ref = tuple(float(v) for v in self.reference)
        if len(ref) != 2 or not all(math.isfinite(v) for v in ref):
            raise ValueError(f"reference must be two finite numbers (accuracy, psnr), got {self.reference!r}")
        object.__setattr__(self, "reference", ref)
        if self.created_at.tzinfo is None:
            raise ValueError(f"created_at must be timezone-aware, got {self.created_at!r}")

    def to_json(self) -> str:
        data = asdict(self)
        data["reference"] = list(self.reference)
        data["created_at"] = self.created_at.isoformat()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ReportMeta:
        data = json.loads(text)
        data["reference"] = tuple(data["reference"])
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        return cls(**data)
