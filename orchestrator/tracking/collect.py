"""Read a study's trials back from MLflow, the source of truth, into the report's trials table.

Everything comes from the tracking store through ``MlflowClient`` (never from Tune's folders),
so a report can be made from any machine that reaches the store: the study folder only says
where the store is (``study.json``). A study is found by its folder or by its experiment name.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from orchestrator.outcomes import BUDGET_KEY, EPOCH_KEY, FAILED, INTERRUPTED, RUNNING, STATUSES
from orchestrator.reporting.schema import COLUMN_NAMES, DEFAULT_REFERENCE, ReportMeta, conform
from orchestrator.spec import Condition
from orchestrator.spec.redact import redact_uri
from orchestrator.study.folder import StudyFolder
from orchestrator.tracking.runs import StudyRun, child_runs, run_url
from orchestrator.tracking.tags import (
    KIND_STUDY, TAG_CONDITION, TAG_KIND, TAG_METHOD, TAG_PRUNED_AT, TAG_REASON, TAG_SCORES, TAG_SPEC_HASH,
    TAG_STATUS, TAG_STUDY_FOLDER, TAG_TRIAL, TAG_VERSION,
)
from trainables.config import ConfigError

_FLOAT_PARAMS = ("snr_db", "kn_requested", "kn_achieved", "alpha1", "alpha2", "tau")


@dataclass(frozen=True)
class StudySource:
    """Where a study's runs live; ``folder`` is set when reporting from the study folder."""

    tracking_uri: str
    experiment_id: str
    experiment_name: str
    parent_run_id: str
    folder: Path | None = None

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri)


@dataclass(frozen=True)
class CollectedStudy:
    source: StudySource
    trials: pd.DataFrame  # conformed to the schema, not ranked yet
    meta: ReportMeta
    run_tags: dict[str, dict[str, str]]  # run id -> tags (trial folders, model bookkeeping)


def _problem(reason: str) -> ConfigError:
    """The one ``error: STUDY:`` line; it quotes the store's address, so credentials in it are masked."""
    return ConfigError([("STUDY", redact_uri(reason))])


def _check_store(uri: str) -> None:
    """A sqlite URI to a missing file would silently create an empty store: refuse it instead."""
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise ConfigError([("--tracking-uri", f"{uri} names no existing MLflow database")])


def locate_study(study: str, tracking_uri: str | None = None) -> StudySource:
    """``study`` is a study folder (its ``study.json`` names the store) or an experiment name.

    For a name the store is ``tracking_uri`` or ``$MLFLOW_TRACKING_URI``, and the study is the
    most recent parent run (tag ``semtune.kind=study``) of that experiment.
    """
    path = Path(study)
    if path.is_dir():
        folder = StudyFolder(path)
        if not folder.exists():
            raise _problem(f"{path} is not a semtune study folder (no study.json)")
        record = folder.read_record()
        uri = tracking_uri or record.tracking_uri
        _check_store(uri)
        client = MlflowClient(tracking_uri=uri)
        try:
            experiment = client.get_experiment(record.experiment_id)
            client.get_run(record.parent_run_id)
        except MlflowException as err:
            raise _problem(f"{uri} does not hold the study of {path}: {str(err).splitlines()[0]}") from None
        return StudySource(uri, record.experiment_id, experiment.name, record.parent_run_id, folder.path)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if path.exists() or not uri:
        raise _problem(f"{study!r} is not a study folder; to read it as an MLflow experiment name, "
                       "give --tracking-uri or set MLFLOW_TRACKING_URI")
    _check_store(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(study)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        raise _problem(f"no MLflow experiment named {study!r} at {uri}")
    parents = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{TAG_KIND}` = '{KIND_STUDY}'",
                                 order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        raise _problem(f"experiment {study!r} at {uri} has no semtune study run (tag {TAG_KIND}={KIND_STUDY})")
    parent = parents[0]
    folder = parent.data.tags.get(TAG_STUDY_FOLDER)
    return StudySource(uri, experiment.experiment_id, study, parent.info.run_id,
                       Path(folder) if folder and StudyFolder(Path(folder)).exists() else None)


def last_epoch_metrics(run) -> dict[str, float]:
    """Metrics logged at the step of the run's last ``epoch`` (step = global epoch).

    MLflow's latest value of a metric is the one with the highest step, so a metric missing
    from the last epoch (non-finite values are not logged) would show an older epoch's value;
    comparing steps keeps only values of the last epoch.
    """
    latest = {m.key: m for m in run.data.to_proto().metrics}
    if "epoch" not in latest:
        return {}
    step = latest["epoch"].step
    return {k: m.value for k, m in latest.items() if m.step == step}


def _number(text: str | None, kind=float):
    if text in (None, "", "None", "nan"):
        return None
    try:
        return kind(float(text))
    except ValueError:
        return None


def _spec_fallbacks(parent_params: dict[str, str]) -> tuple[dict[str, tuple[float, float, str]], dict[str, int]]:
    """Condition name -> (SNR, k/n, channel model), and epoch budgets, from the spec: for trials that failed
    before logging their own params (the driver then records them with tags only)."""
    try:
        grid = [Condition(float(s), float(k), m)
                for m in ast.literal_eval(parent_params.get("conditions.channel", "['awgn']"))
                for s in ast.literal_eval(parent_params.get("conditions.snr_db", "[]"))
                for k in ast.literal_eval(parent_params.get("conditions.kn", "[]"))]
    except (ValueError, SyntaxError):
        grid = []
    s1 = _number(parent_params.get("budget.stage1_epochs"), int) or 0
    s2 = _number(parent_params.get("budget.stage2_epochs"), int) or 0
    return {c.name: (c.snr_db, c.kn, c.channel) for c in grid}, {"deepjscc": s1, "*": s1 + s2}


def _time(ms: int | None):
    return pd.Timestamp(ms, unit="ms", tz="UTC") if ms else None


def trial_row(run, tracking_uri: str, experiment_id: str, fallbacks) -> dict:
    """One row of the trials table from one trial run."""
    tags, params = run.data.tags, run.data.params
    conditions, budgets = fallbacks
    metrics = last_epoch_metrics(run)
    condition = tags.get(TAG_CONDITION) or params.get("condition")
    method = tags.get(TAG_METHOD) or params.get("method")
    status = tags.get(TAG_STATUS)
    if status == INTERRUPTED:  # stopped with its study; `semtune resume` continues it
        status = RUNNING
    elif status not in STATUSES:  # e.g. a run closed by hand: fall back on MLflow's own status
        status = FAILED if run.info.status in ("FAILED", "KILLED") else RUNNING
    row = {k: _number(params.get(k)) for k in _FLOAT_PARAMS}
    snr, kn, channel = conditions.get(condition, (None, None, None))
    row.update(
        trial_id=tags.get(TAG_TRIAL), condition=condition, method=method,
        channel=params.get("channel") or channel or "awgn",  # runs before channel models were logged: AWGN
        snr_db=row["snr_db"] if row["snr_db"] is not None else snr,
        kn_requested=row["kn_requested"] if row["kn_requested"] is not None else kn,
        kn_achieved=metrics.get("kn_achieved", row["kn_achieved"]),
        alpha1_choice=params.get("alpha1_choice"), proj_dim=_number(params.get("proj_dim"), int),
        accuracy=metrics.get("accuracy"), psnr=metrics.get("psnr"), ssim=metrics.get("ssim"),
        epochs_run=int(metrics.get(EPOCH_KEY, 0)),
        epochs_total=_number(params.get(BUDGET_KEY), int) or budgets.get(method, budgets["*"]),
        status=status, pruned_at_epoch=_number(tags.get(TAG_PRUNED_AT), int), failure_reason=tags.get(TAG_REASON),
        mlflow_run_id=run.info.run_id, mlflow_run_url=run_url(tracking_uri, experiment_id, run.info.run_id),
        start_time=_time(run.info.start_time), end_time=None if status == RUNNING else _time(run.info.end_time),
        final_accuracy=metrics.get("final_accuracy"), final_psnr=metrics.get("final_psnr"),
    )
    return row


def collect(source: StudySource) -> CollectedStudy:
    """Every active trial run of the study (paged), as the trials table, plus the report's meta."""
    client = source.client()
    parent = client.get_run(source.parent_run_id)
    p = parent.data.params
    study = StudyRun(source.tracking_uri, source.experiment_id, source.parent_run_id, source.experiment_name)
    runs = child_runs(client, study)  # active runs only: orphans of an interruption are deleted
    fallbacks = _spec_fallbacks(p)
    rows = [trial_row(r, source.tracking_uri, source.experiment_id, fallbacks) for r in runs]
    trials = conform(pd.DataFrame(rows, columns=COLUMN_NAMES))
    reference = (_number(p.get("report.reference_accuracy")), _number(p.get("report.reference_psnr")))
    meta_args = {"semtune_version": parent.data.tags[TAG_VERSION]} if TAG_VERSION in parent.data.tags else {}
    meta = ReportMeta(
        study_name=p.get("name") or source.experiment_name,
        spec_hash=parent.data.tags.get(TAG_SPEC_HASH, ""),
        tracking_uri=redact_uri(source.tracking_uri),  # printed in the report
        experiment_id=source.experiment_id,
        reference=reference if None not in reference else DEFAULT_REFERENCE,
        classifier=p.get("trial.classifier.arch", "resnet56"),  # the TrialConfig default when the spec is silent
        scores=parent.data.tags.get(TAG_SCORES, ""),
        **meta_args,  # the version that ran the study: it produced the rows
    )
    return CollectedStudy(source, trials, meta, {r.info.run_id: dict(r.data.tags) for r in runs})
