"""Write a report back into MLflow: files on the parent run, ranks on the trial runs, front models.

The report files go under ``report/`` of the study's parent run. Every ranked trial run gets
``semtune.pareto_rank`` and ``semtune.front_member`` (true/false, rewritten when a later report
re-ranks it). Each front member whose checkpoint is reachable gets one MLflow model,
:data:`MODEL_NAME`: a :class:`TransmitAndClassify` (encoder → power normalisation → AWGN at the
trial's SNR → decoder → classifier), loadable with
``mlflow.pytorch.load_model(f"runs:/{run_id}/{MODEL_NAME}")``. Only front members get one, to
keep storage small; ``semtune.model_logged=true`` makes that idempotent. A model that left the
front in a later report is kept (its run says ``front_member=false``).

Models are pickled (``serialization_format="pickle"``): loading needs ``semtune`` importable,
but works for any image size, which MLflow's default ``pt2`` export (fixed to one input shape)
would not. Load models only from a store you trust.
"""

from __future__ import annotations

import posixpath
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow
import pyarrow.fs
import torch
import yaml
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from torch import nn

from orchestrator.spec.redact import connectable_uri
from orchestrator.tracking.tags import TAG_CONDITION, TAG_FRONT, TAG_MODEL, TAG_MODEL_URI, TAG_RANK, TAG_TRIAL, TAG_TRIAL_DIR
from orchestrator.tune.storage import is_uri, remote_tune_storage

MODEL_NAME = "semantic_link"
REPORT_ARTIFACTS = "report"


class TransmitAndClassify(nn.Module):
    """A trained trial end to end: ``forward(x, generator=None) -> (x_hat, logits)``.

    ``x`` is a batch of [0, 1] RGB images with height and width divisible by 4; the channel
    adds noise at the trial's SNR (``snr_db``), drawn from ``generator`` when given so that a
    transmission can be repeated. The classifier sees the reconstruction, as in the paper.
    """

    def __init__(self, link: nn.Module, downstream: nn.Module, snr_db: float, kn_achieved: float):
        super().__init__()
        self.link = link
        self.downstream = downstream
        self.snr_db = float(snr_db)
        self.kn_achieved = float(kn_achieved)

    def transmit(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.link(x, generator).x_hat

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x_hat = self.transmit(x, generator)
        return x_hat, self.downstream(x_hat)


def find_checkpoint(trial_dir: str | None, study_folder: Path | None = None) -> Path | None:
    """The newest ``checkpoint_*`` of a trial's Tune folder, or None if it is not reachable here.

    The folder recorded in the run may have moved with its study folder: ``<study>/tune/<name>``
    is tried next. On object storage (``s3://…``) the checkpoint is downloaded once into the study
    folder's ``checkpoints/``.
    """
    if not trial_dir:
        return None
    if is_uri(trial_dir):
        return _fetched_checkpoint(trial_dir, study_folder)
    candidates = [Path(trial_dir)]
    if study_folder is not None:
        candidates.append(Path(study_folder) / "tune" / Path(trial_dir).name)
    for folder in candidates:
        found = sorted(p for p in folder.glob("checkpoint_*") if (p / "state.pt").is_file()) if folder.is_dir() else []
        if found:
            return found[-1]
    return None


def _fetched_checkpoint(trial_dir: str, study_folder: Path | None) -> Path | None:
    """The trial's newest checkpoint on object storage, copied into ``<study>/checkpoints/<trial>/``.

    The server is the one of the study's ``storage_path`` (its endpoint options are in the URI,
    its credentials in the environment), read from the folder's ``spec.yaml``."""
    if study_folder is None or not (Path(study_folder) / "spec.yaml").is_file():
        return None
    spec = yaml.safe_load((Path(study_folder) / "spec.yaml").read_text())
    trial = posixpath.basename(trial_dir.split("?")[0].rstrip("/"))
    local = Path(study_folder) / "checkpoints" / trial
    cached = sorted(p for p in local.glob("checkpoint_*") if (p / "state.pt").is_file())
    if cached:
        return cached[-1]
    try:
        storage = remote_tune_storage(connectable_uri(spec["storage_path"]), spec["name"])
        remote = storage.join(trial)
        found = [p for p in storage.glob("checkpoint_*", remote) if storage.exists(posixpath.join(p, "state.pt"))]
        if not found:
            return None
        target = local / posixpath.basename(found[-1])
        part = target.with_name(f".{target.name}.part")
        part.mkdir(parents=True, exist_ok=True)  # pyarrow creates no local destination folder
        pyarrow.fs.copy_files(found[-1], str(part), source_filesystem=storage.fs,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())
        part.rename(target)  # a half-copied checkpoint is never taken
        return target
    except (OSError, ValueError, KeyError, pyarrow.ArrowException):
        return None


def member_module(checkpoint: Path) -> TransmitAndClassify:
    """Rebuild a trial's trained codec and classifier from its checkpoint (CPU, eval mode)."""
    from trainables.training.trial import load_trained

    cfg, models = load_trained(checkpoint, device="cpu")
    return TransmitAndClassify(models.link, models.downstream, cfg.channel.snr_db, cfg.kn_achieved).eval()


def load_member(source, row, tags: dict[str, str]) -> tuple[TransmitAndClassify | None, str]:
    """A front member's model from its checkpoint, else from its MLflow model; ``(None, why)`` if neither."""
    checkpoint = find_checkpoint(tags.get(TAG_TRIAL_DIR), source.folder)
    if checkpoint is not None:
        return member_module(checkpoint), f"checkpoint {checkpoint}"
    if tags.get(TAG_MODEL) == "true":
        with _tracking_uri(source.tracking_uri):
            import mlflow.pytorch

            return mlflow.pytorch.load_model(model_uri(row["mlflow_run_id"]), map_location="cpu"), "MLflow model"
    return None, f"no checkpoint under {tags.get(TAG_TRIAL_DIR)!r} and no MLflow model"


def model_uri(run_id: str) -> str:
    return f"runs:/{run_id}/{MODEL_NAME}"


@contextmanager
def _tracking_uri(uri: str):
    """``mlflow.pytorch`` works through the process-wide tracking URI: set it for the block only."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def tag_ranks(client, ranked: pd.DataFrame, run_tags: dict[str, dict[str, str]]) -> int:
    """Set the rank tags on every ranked trial run whose tags differ; return how many changed."""
    changed = 0
    for _, row in ranked[ranked["pareto_rank"].notna()].iterrows():
        rank = int(row["pareto_rank"])
        want = {TAG_RANK: str(rank), TAG_FRONT: "true" if rank == 1 else "false"}
        have = run_tags.get(row["mlflow_run_id"], {})
        if any(have.get(k) != v for k, v in want.items()):
            client.log_batch(row["mlflow_run_id"], tags=[RunTag(k, v) for k, v in want.items()])
            changed += 1
    return changed


def _requirements() -> list[str]:
    """Pinned for the record; given explicitly, since inferring them loads the model in a subprocess."""
    out = []
    for name in ("torch", "semtune"):
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(name)
    return out


def log_front_models(source, ranked: pd.DataFrame, run_tags: dict[str, dict[str, str]]) -> list[str]:
    """Log :data:`MODEL_NAME` on each front member's run that lacks one; return one note per member."""
    import mlflow.pytorch

    client = source.client()
    notes = []
    for _, row in ranked[ranked["pareto_rank"].eq(1).fillna(False).astype(bool)].iterrows():
        run_id, trial = row["mlflow_run_id"], f"{row['condition']}/{row['trial_id']}"
        tags = run_tags.get(run_id, {})
        if tags.get(TAG_MODEL) == "true":
            notes.append(f"{trial}: model already logged ({model_uri(run_id)})")
            continue
        checkpoint = find_checkpoint(tags.get(TAG_TRIAL_DIR), source.folder)
        if checkpoint is None:
            notes.append(f"{trial}: no model logged: no checkpoint under {tags.get(TAG_TRIAL_DIR)!r} on this machine")
            continue
        module = member_module(checkpoint)
        logged = client.create_logged_model(  # explicit experiment: log_model alone would use the default one
            source.experiment_id, name=MODEL_NAME, source_run_id=run_id,
            params={k: str(row[k]) for k in ("condition", "method", "snr_db", "kn_achieved", "alpha1", "tau")},
            tags={TAG_TRIAL: str(row["trial_id"]), TAG_CONDITION: str(row["condition"])},
        )
        try:
            with _tracking_uri(source.tracking_uri):
                mlflow.pytorch.log_model(module, name=MODEL_NAME, model_id=logged.model_id, run_id=run_id,
                                         serialization_format="pickle", pip_requirements=_requirements(),
                                         step=int(row["epochs_run"]))  # links the final metrics to the model
        except (MlflowException, OSError, RuntimeError):
            client.delete_logged_model(logged.model_id)  # no half-logged model for the next report to trip on
            raise
        client.log_batch(run_id, tags=[RunTag(TAG_MODEL, "true"), RunTag(TAG_MODEL_URI, model_uri(run_id))])
        notes.append(f"{trial}: model logged as {model_uri(run_id)}")
    return notes


def log_report_artifacts(client, parent_run_id: str, out_dir: Path, files: dict[str, Path]) -> list[str]:
    """Log the report's files under ``report/`` of the parent run, keeping their sub-folders."""
    logged = []
    for path in sorted(set(files.values())):
        rel = Path(path).resolve().relative_to(Path(out_dir).resolve())
        folder = REPORT_ARTIFACTS if rel.parent == Path(".") else f"{REPORT_ARTIFACTS}/{rel.parent.as_posix()}"
        client.log_artifact(parent_run_id, str(path), artifact_path=folder)
        logged.append(f"{folder}/{rel.name}")
    return logged
