"""``semtune report`` end to end: real tiny studies on a real local Ray, read back from MLflow.

(a) the study folder's sqlite store and (b) a real ``mlflow server`` the trials logged to over
http; each reported by folder and by experiment name (CLI subprocesses). Checked: the Parquet
round trip (schema + metadata), statuses and ranks against MLflow, report artifacts on the
parent run, rank tags, one loadable model per front member and none elsewhere, ``--pick``,
idempotence, the Kodak grid's numbers, and one-line errors.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import ray
import torch
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.cli import main as cli_main
from orchestrator.reporting import arrow_schema, read_report_table
from orchestrator.tracking.publish import MODEL_NAME, find_checkpoint, member_module
from orchestrator.tracking.tags import TAG_FRONT, TAG_MODEL, TAG_RANK
from orchestrator.spec import load_spec
from orchestrator.study.runner import run_study
from orchestrator.study.folder import StudyFolder

pytestmark = pytest.mark.slow
SHARED = Path(os.environ.get("SEMTUNE_TEST_SHARED") or Path(__file__).resolve().parents[2].parent / "shared")
KODAK = SHARED / "data" / "kodak"


# 1 + 1 epochs and MO-ASHA with a quota of one per rung (reduction factor 4), so pruning is likely.
REPORT_STUDY = {"pruner": {"reduction_factor": 4}, "budget": {"stage1_epochs": 1, "stage2_epochs": 1}}


def _run_study(tmp: Path, doc: dict):
    path = tmp / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return run_study(load_spec(path))


def semtune_report(*args, cwd=None) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (the study's tracking URI must not leak from this process)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "report", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a running cluster
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def sqlite_study(tmp_path_factory, study_doc):
    tmp = tmp_path_factory.mktemp("sqlite-study")
    return _run_study(tmp, study_doc(tmp / "studies", "rep-sqlite", **REPORT_STUDY))


@pytest.fixture(scope="module")
def http_study(tmp_path_factory, study_doc, mlflow_server):
    tmp = tmp_path_factory.mktemp("http-study")
    return _run_study(tmp, study_doc(tmp / "studies", "rep-http", tracking_uri=mlflow_server, **REPORT_STUDY))


@pytest.fixture(scope="module")
def sqlite_report(sqlite_study):
    """By folder, default ``--out``, a pick every completed trial meets, and the Kodak grid if Kodak is here."""
    kodak = ["--kodak", KODAK, "--kodak-images", 1] if KODAK.is_dir() else []
    done = semtune_report(sqlite_study.folder, "--pick", "accuracy>=0", *kodak)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, sqlite_study.folder / "report"


def _trial_runs(outcome) -> dict:
    client = MlflowClient(outcome.tracking_uri)
    runs = client.search_runs([outcome.experiment_id], f"tags.`mlflow.parentRunId` = '{outcome.parent_run_id}'",
                              max_results=1000)
    return {r.info.run_id: r for r in runs}


def check_report(out: Path, outcome) -> pd.DataFrame:
    """The report folder agrees with MLflow; MLflow holds the report, the ranks and the front models."""
    trials, meta = read_report_table(out / "trials.parquet")
    fronts, front_meta = read_report_table(out / "fronts.parquet")
    record = StudyFolder(outcome.folder).read_record()
    assert meta == front_meta
    assert (meta.study_name, meta.spec_hash, meta.tracking_uri, meta.experiment_id) == (
        record.name, record.spec_hash, outcome.tracking_uri, outcome.experiment_id)
    assert meta.reference == (0.1, 10.0)
    assert meta.classifier == "resnet20"  # a CPU-sized study says which classifier it used
    assert "ResNet-20 (a CPU-sized stand-in" in (out / "report.md").read_text()
    schema = pq.read_schema(out / "trials.parquet")
    assert [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in arrow_schema()]
    assert all(f.metadata[b"description"] for f in schema)

    runs = _trial_runs(outcome)
    client = MlflowClient(outcome.tracking_uri)
    assert sorted(trials["mlflow_run_id"]) == sorted(runs)
    for row in trials.itertuples():
        run = runs[row.mlflow_run_id]
        assert row.trial_id == run.data.tags["semtune.trial_id"] and row.status == run.data.tags["semtune.status"]
        assert row.epochs_run == int(run.data.metrics["epoch"]) and row.epochs_total == 2
        assert row.accuracy == pytest.approx(client.get_metric_history(row.mlflow_run_id, "accuracy")[-1].value)
        assert row.psnr == pytest.approx(run.data.metrics["psnr"])
        assert row.kn_achieved == pytest.approx(float(run.data.params["kn_achieved"]), abs=1e-6)
        if outcome.tracking_uri.startswith("http"):
            assert row.mlflow_run_url == f"{outcome.tracking_uri}/#/experiments/{outcome.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning"
        else:
            assert row.mlflow_run_url == ""
        ranked = not pd.isna(row.pareto_rank)
        assert ranked == (row.status == "completed")  # ranks exist only for completed trials
        if row.status == "pruned":
            assert row.pruned_at_epoch == row.epochs_run == 1
        tags = run.data.tags
        if ranked:
            assert tags[TAG_RANK] == str(row.pareto_rank)
            assert tags[TAG_FRONT] == ("true" if row.pareto_rank == 1 else "false")
        else:
            assert TAG_RANK not in tags and TAG_FRONT not in tags
        assert (tags.get(TAG_MODEL) == "true") == (row.pareto_rank == 1 if ranked else False)
    assert set(fronts["mlflow_run_id"]) == set(trials.loc[trials["pareto_rank"].eq(1).fillna(False), "mlflow_run_id"])
    assert set(trials["condition"]) == set(fronts["condition"]) == {"snr20_kn1-12", "snr20_kn1-6"}

    # one logged model per front member, none for anyone else
    sources = [m.source_run_id for m in client.search_logged_models([outcome.experiment_id])]
    assert sorted(sources) == sorted(fronts["mlflow_run_id"])

    parent = {a.path for a in client.list_artifacts(outcome.parent_run_id, "report")}
    assert {f"report/{n}" for n in ("report.md", "report.html", "trials.parquet", "trials.csv", "fronts.parquet",
                                    "fronts.csv", "figures")} <= parent
    figures = {a.path for a in client.list_artifacts(outcome.parent_run_id, "report/figures")}
    assert {f"report/figures/front_{c}.png" for c in fronts["condition"]} <= figures
    return trials


def check_front_models(outcome, fronts_run_ids, cifar_dir) -> None:
    """Each front model loads by run id, runs on real CIFAR-10 images and equals its checkpoint."""
    images = np.load(cifar_dir / "test.npz")["images"][:4]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    runs = _trial_runs(outcome)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(outcome.tracking_uri)
    try:
        for run_id in fronts_run_ids:
            model = mlflow.pytorch.load_model(f"runs:/{run_id}/{MODEL_NAME}")
            with torch.no_grad():
                x_hat, logits = model(x, torch.Generator().manual_seed(3))
                ref_hat, ref_logits = member_module(find_checkpoint(runs[run_id].data.tags["semtune.trial_dir"]))(
                    x, torch.Generator().manual_seed(3))
            assert x_hat.shape == x.shape and logits.shape == (4, 10)
            assert 0 <= float(x_hat.min()) and float(x_hat.max()) <= 1
            assert torch.allclose(x_hat, ref_hat) and torch.allclose(logits, ref_logits)
            assert model.snr_db == float(runs[run_id].data.params["snr_db"])
    finally:
        mlflow.set_tracking_uri(previous)


def pick_lines(stdout: str) -> dict[str, str]:
    """Summary lines ``<condition> <method>: …`` by condition (these studies have one method)."""
    return {line.split()[0]: line for line in stdout.splitlines() if line.startswith("snr20_kn")}


def test_report_from_the_sqlite_store_by_folder(sqlite_study, sqlite_report, synthetic_cifar_dir):
    done, out = sqlite_report
    trials = check_report(out, sqlite_study)
    front = trials[trials["pareto_rank"].eq(1).fillna(False)]
    check_front_models(sqlite_study, front["mlflow_run_id"], synthetic_cifar_dir)
    assert f"files: {out.resolve()}" in done.stdout
    # --pick accuracy>=0: every condition names a front member (a lower bound always picks on the front)
    lines = pick_lines(done.stdout)
    assert set(lines) == {"snr20_kn1-12", "snr20_kn1-6"}
    for condition, line in lines.items():
        trial = re.search(r"pick accuracy>=0: trial (\w+)", line).group(1)
        assert trial in set(front.loc[front["condition"] == condition, "trial_id"]), line
        assert re.search(r"front \d+, hypervolume \d+\.\d{4}", line)


def test_report_by_experiment_name_is_idempotent(sqlite_study, sqlite_report, tmp_path):
    """Same rows by name + --tracking-uri; models are not logged twice; a pick nobody meets says so."""
    _, first_out = sqlite_report
    client = MlflowClient(sqlite_study.tracking_uri)
    models_before = client.search_logged_models([sqlite_study.experiment_id])
    done = semtune_report("rep-sqlite", "--tracking-uri", sqlite_study.tracking_uri, "--pick", "accuracy>=1",
                          "--out", tmp_path / "again")
    assert done.returncode == 0, done.stderr[-3000:]
    first, _ = read_report_table(first_out / "trials.parquet")
    again, _ = read_report_table(tmp_path / "again" / "trials.parquet")
    assert first.sort_values("trial_id").reset_index(drop=True).equals(again.sort_values("trial_id").reset_index(drop=True))
    assert len(client.search_logged_models([sqlite_study.experiment_id])) == len(models_before)
    assert "model already logged" in done.stdout and "model logged as" not in done.stdout
    lines = pick_lines(done.stdout)
    assert len(lines) == 2 and all("pick: no completed trial meets accuracy>=1" in line for line in lines.values())


def test_report_over_http_by_folder_and_by_name(http_study, mlflow_server, sqlite_study, sqlite_report, tmp_path,
                                                synthetic_cifar_dir):
    """(b): the folder's study.json points at the server; by name the report lands in ./report-<name>."""
    done = semtune_report(http_study.folder)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = check_report(http_study.folder / "report", http_study)
    check_front_models(http_study, trials.loc[trials["pareto_rank"].eq(1).fillna(False), "mlflow_run_id"], synthetic_cifar_dir)
    by_name = semtune_report("rep-http", "--tracking-uri", mlflow_server, "--no-models", cwd=tmp_path)
    assert by_name.returncode == 0, by_name.stderr[-3000:]
    again, _ = read_report_table(tmp_path / "report-rep-http" / "trials.parquet")
    assert sorted(again["mlflow_run_id"]) == sorted(trials["mlflow_run_id"])
    # pruned trials are listed as pruned (MO-ASHA with quota 1 prunes in nearly every pair of tiny studies)
    both = [read_report_table(p / "report" / "trials.parquet")[0] for p in (http_study.folder, sqlite_study.folder)]
    assert any((t["status"] == "pruned").any() for t in both)


@pytest.mark.skipif(not KODAK.is_dir(), reason=f"{KODAK} is absent")
def test_kodak_reconstruction_grid(sqlite_study, sqlite_report, kodak_dir, tmp_path):
    """The CLI drew one grid per condition and linked it; the numbers match an independent computation."""
    from PIL import Image
    from torchmetrics.image import MultiScaleStructuralSimilarityIndexMeasure

    from orchestrator.reporting import conform, rank_trials
    from orchestrator.tracking.collect import collect, locate_study
    from orchestrator.tracking.publish import load_member
    from orchestrator.reporting.reconstructions import reconstruction_grids

    _, out = sqlite_report
    md = (out / "report.md").read_text()
    client = MlflowClient(sqlite_study.tracking_uri)
    for condition in ("snr20_kn1-12", "snr20_kn1-6"):
        png = out / "figures" / f"reconstructions_{condition}.png"
        assert png.is_file() and f"](figures/{png.name})" in md
        assert f"report/figures/{png.name}" in {a.path for a in client.list_artifacts(sqlite_study.parent_run_id,
                                                                                        "report/figures")}
    source = locate_study(str(sqlite_study.folder))
    study = collect(source)
    ranked = rank_trials(conform(study.trials))
    grids, notes = reconstruction_grids(ranked, lambda r: load_member(source, r, study.run_tags[r["mlflow_run_id"]]),
                                        kodak_dir, tmp_path, n_images=1, max_members=1, seed=5)
    assert not notes and [g.condition for g in grids] == ["snr20_kn1-12", "snr20_kn1-6"]
    grid = grids[0]
    assert grid.path.is_file() and grid.psnr.shape == grid.ms_ssim.shape == (1, 1)

    # independently: the MLflow model, the PNG read with PIL, PSNR in numpy, MS-SSIM from torchmetrics
    with Image.open(kodak_dir / grid.images[0]) as img:
        x = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    run_id = ranked.loc[ranked["trial_id"] == grid.trial_ids[0], "mlflow_run_id"].item()
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(sqlite_study.tracking_uri)
    try:
        model = mlflow.pytorch.load_model(f"runs:/{run_id}/{MODEL_NAME}")
    finally:
        mlflow.set_tracking_uri(previous)
    with torch.no_grad():
        x_hat = model(x, torch.Generator().manual_seed(5))[0]
    x_hat = x_hat.clamp(0, 1)
    psnr = 10 * np.log10(1 / np.mean((x_hat.double().numpy() - x.double().numpy()) ** 2))
    ms_ssim = float(MultiScaleStructuralSimilarityIndexMeasure(data_range=1.0)(x_hat, x))
    assert grid.psnr[0, 0] == pytest.approx(psnr, abs=1e-3)
    assert grid.ms_ssim[0, 0] == pytest.approx(ms_ssim, abs=1e-4)
    shown = re.fullmatch(r"(\d+\.\d\d) dB / MS-SSIM (\d\.\d{4})", grid.labels[0][0])
    assert abs(float(shown.group(1)) - psnr) <= 0.0051 and abs(float(shown.group(2)) - ms_ssim) <= 0.00006


def test_unknown_experiment_and_non_study_folder_fail_in_one_line(sqlite_study, tmp_path, capsys):
    assert cli_main(["report", "no-such-study", "--tracking-uri", sqlite_study.tracking_uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: STUDY: no MLflow experiment named 'no-such-study' at {sqlite_study.tracking_uri}"]
    assert cli_main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: STUDY: {tmp_path} is not a semtune study folder (no study.json)"]
