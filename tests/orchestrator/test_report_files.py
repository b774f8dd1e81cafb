"""write_report end to end on a synthetic study: Parquet/CSV round trips, report.md content, PNGs."""

from __future__ import annotations

import struct
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from orchestrator.pareto import hypervolume
from orchestrator.reporting import (
    COLUMNS,
    ReportMeta,
    conform,
    front_table,
    rank_trials,
    read_report_table,
    write_report,
)
from orchestrator.reporting.figures import DPI, pixel_size
from report_fixtures import synthetic_trials

META = ReportMeta(
    study_name="writer-test",
    spec_hash="sha256:feedbeef",
    tracking_uri="sqlite:///mlflow.db",
    experiment_id="7",
    reference=(0.1, 10.0),
    created_at=datetime(2026, 11, 3, 12, 0, tzinfo=timezone.utc),
)


@pytest.fixture(scope="module")
def trials() -> pd.DataFrame:
    return synthetic_trials(seed=1)


@pytest.fixture(scope="module")
def report(trials, tmp_path_factory) -> dict[str, Path]:
    return write_report(trials, META, tmp_path_factory.mktemp("report"), pick="accuracy>=0.85")


def test_all_files_are_written(report):
    for name in (
        "trials_parquet",
        "trials_csv",
        "fronts_parquet",
        "fronts_csv",
        "report_md",
        "report_html",
        "hypervolume",
    ):
        assert report[name].is_file() and report[name].stat().st_size > 0, name


@pytest.mark.parametrize("name", ["trials_parquet", "fronts_parquet"])
def test_parquet_schema_has_types_descriptions_and_metadata(report, name):
    schema = pq.read_schema(report[name])
    assert schema.names == [c.name for c in COLUMNS]
    for col in COLUMNS:
        field = schema.field(col.name)
        assert field.type == col.type, col.name
        assert field.nullable == col.nullable, col.name
        assert field.metadata[b"description"].decode() == col.description
    assert ReportMeta.from_json(schema.metadata[b"semtune"]) == META


def test_trials_round_trip(report, trials):
    df, meta = read_report_table(report["trials_parquet"])
    assert meta == META
    pd.testing.assert_frame_equal(df, rank_trials(conform(trials)))


def test_fronts_round_trip_and_hold_only_rank_one(report, trials):
    df, meta = read_report_table(report["fronts_parquet"])
    assert meta == META
    pd.testing.assert_frame_equal(df, conform(front_table(trials)))
    assert (df["pareto_rank"] == 1).all() and (df["status"] == "completed").all()


def test_ranks_only_on_completed_rows(report):
    df, _ = read_report_table(report["trials_parquet"])
    assert df.loc[df["status"] != "completed", "pareto_rank"].isna().all()
    done = df[df["status"] == "completed"]
    assert done["pareto_rank"].notna().all()  # every completed synthetic trial has finite objectives
    assert set(df.loc[df["pareto_rank"] == 1, "trial_id"]) == set(
        read_report_table(report["fronts_parquet"])[0]["trial_id"]
    )


@pytest.mark.parametrize("stem", ["trials", "fronts"])
def test_csv_twins_have_the_same_rows(report, stem):
    parquet, _ = read_report_table(report[f"{stem}_parquet"])
    csv = pd.read_csv(report[f"{stem}_csv"])
    assert list(csv.columns) == list(parquet.columns)
    assert csv["trial_id"].tolist() == parquet["trial_id"].tolist()
    pd.testing.assert_series_equal(csv["accuracy"], parquet["accuracy"], check_exact=False)
    assert csv["pareto_rank"].fillna(-1).astype(int).tolist() == parquet["pareto_rank"].fillna(-1).astype(int).tolist()


def test_reader_rejects_foreign_parquet(tmp_path, trials):
    path = tmp_path / "other.parquet"
    trials.to_parquet(path)
    with pytest.raises(ValueError, match="not written by semtune"):
        read_report_table(path)


def test_report_md_lists_conditions_fronts_hypervolumes_and_stopped_trials(report, trials):
    text = report["report_md"].read_text()
    assert META.psnr_definition in text and META.spec_hash in text
    for (condition, method), group in trials.groupby(["condition", "method"]):  # one front per method
        assert f"### {condition}" in text
        done = group[group["status"] == "completed"]
        hv = hypervolume(done[["accuracy", "psnr"]].to_numpy(), META.reference)
        assert f"hypervolume **{hv:.4f}**" in text
    for _, row in front_table(trials).iterrows():
        assert row["mlflow_run_id"] in text
        if row["mlflow_run_url"]:
            assert f"[{row['mlflow_run_id']}]({row['mlflow_run_url']})" in text
    for _, row in trials[trials["status"] == "pruned"].iterrows():
        assert f"| {row['trial_id']} |" in text and f"pruned at epoch {row['pruned_at_epoch']}" in text
    for reason in trials.loc[trials["status"] == "failed", "failure_reason"]:
        assert reason in text
    assert "## Pick: `accuracy>=0.85`" in text and "saved" in text
    assert "figures/hypervolume.png" in text and "report.html" in text


def test_pngs_are_paper_sized(report, trials):
    kinds = {"hypervolume": "hypervolume"}
    kinds |= {k: "front" for k in report if k.startswith("front_")}
    kinds |= {k: "vs_kn" for k in report if k.startswith("vs_kn_")}
    assert sum(k.startswith("front_") for k in kinds) == trials["condition"].nunique()
    assert {k for k in kinds if k.startswith("vs_kn_")} == {"vs_kn_snr20", "vs_kn_snr5"}
    for name, kind in kinds.items():
        data = report[name].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", name
        assert struct.unpack(">II", data[16:24]) == pixel_size(kind), name
        assert pixel_size(kind)[0] == round(3.5 * DPI)
        with Image.open(report[name]) as img:
            img.verify()
        with Image.open(report[name]) as img:
            assert img.size == pixel_size(kind) and img.info["dpi"] == pytest.approx((DPI, DPI), abs=0.5)


def test_missing_columns_raise_before_anything_is_written(trials, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=r"misses required columns \['accuracy'\]"):
        write_report(trials.drop(columns=["accuracy"]), META, out)
    with pytest.raises(ValueError, match="unknown metric"):
        write_report(trials, META, out, pick="loss<=1")
    assert not out.exists()


def test_meta_validates_its_reference():
    with pytest.raises(ValueError, match="reference"):
        ReportMeta("s", "h", "u", "1", reference=(0.1,))
