"""The Ray Tune trainable: a Tune ``config`` → a validated TrialConfig → ``run_trial``.

Runs inside a Ray worker. MLflow logging happens here, where the trial runs (so it works
against an ``http://`` tracking server from any node); Tune gets the same metrics and the
checkpoint through :class:`TuneReporter`.
"""

from __future__ import annotations

import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import tune

import search_spaces
from orchestrator.tracking import (
    TAG_CONDITION, TAG_METHOD, TAG_REASON, TAG_STATUS, StudyRun, TrialRun, finish_run, flatten,
)
from trainables.config import TrialConfig, build_trial_config

SEARCHED_KEYS = ("alpha1", "alpha2", "tau", "proj_dim")


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a study shares: base configs per method and where to log."""

    base_docs: dict[str, dict[str, Any]]  # method -> TrialConfig document without condition/searched values
    study: StudyRun
    classifier_cache: str | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)


def trial_config(ctx: TrialContext, config: dict[str, Any]) -> TrialConfig:
    """Merge the Tune config (method, condition, searched values) into the method's base document."""
    method = config["method"]
    loss = {k: config[k] for k in ("alpha1", "alpha2", "tau", "proj_dim") if k in config}
    doc = search_spaces.merge(ctx.base_docs[method], {
        "codec": {"kn": config["kn"]}, "channel": {"snr_db": config["snr_db"]}, "loss": loss,
    })
    if ctx.classifier_cache:
        doc = search_spaces.merge(doc, {"classifier": {"cache_dir": ctx.classifier_cache}})
    return build_trial_config(doc)


def run_params(cfg: TrialConfig, config: dict[str, Any]) -> dict[str, Any]:
    """What a person filters runs by, first; then the whole config, flattened under ``cfg.``."""
    alpha1_choice = None
    if cfg.method in ("proposed", "deepsc"):
        alpha1_choice = "kn" if cfg.loss.alpha1 == "kn" else f"{cfg.alpha1:g}"
    head = {
        "condition": config["condition"], "method": cfg.method, "snr_db": cfg.channel.snr_db,
        "kn_requested": cfg.codec.kn, "kn_achieved": round(cfg.kn_achieved, 6),
        "alpha1": cfg.alpha1 if alpha1_choice else None, "alpha1_choice": alpha1_choice,
        "alpha2": cfg.loss.alpha2 if cfg.method != "deepjscc" else None,
        "tau": cfg.loss.tau if cfg.method == "proposed" else None,
        "proj_dim": cfg.loss.proj_dim if cfg.method == "proposed" else None,
        "epochs_total": cfg.total_epochs,
    }
    head = {k: v for k, v in head.items() if v is not None}
    return {**head, **dict(flatten("cfg", cfg.model_dump(mode="json")))}


class TuneReporter:
    """The trainables' Reporter for Ray Tune: MLflow first, then ``tune.report`` with the checkpoint."""

    def __init__(self, run: TrialRun):
        self.run = run
        self._restored: Path | None = None

    def report(self, metrics, checkpoint_dir):
        self.run.log_epoch(metrics)
        tune.report(dict(metrics), checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))
        if self._restored is not None:
            shutil.rmtree(self._restored, ignore_errors=True)
            self._restored = None

    def checkpoint_to_resume(self):
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        self._restored = Path(checkpoint.to_directory())
        return self._restored


def failure_reason(err: BaseException) -> str:
    """One line for the run's tag: the exception type and message (the traceback goes to an artifact)."""
    text = " ".join(str(err).split()) or "(no message)"
    return f"{type(err).__name__}: {text}"[:1000]


def semtune_trainable(config: dict[str, Any], context: TrialContext) -> None:
    """The function Tune runs for every trial of a study."""
    from trainables.training import run_trial

    trial_id = tune.get_context().get_trial_id()
    cfg = trial_config(context, config)
    run = TrialRun.open(
        context.study, trial_id, run_name=f"{config['condition']}/{cfg.method}/{trial_id}",
        params=run_params(cfg, config),
        tags={TAG_CONDITION: config["condition"], TAG_METHOD: cfg.method, **context.extra_tags},
    )
    run.set_tags(**{"semtune.node_id": ray.get_runtime_context().get_node_id()})  # where this attempt runs
    try:
        run_trial(cfg, TuneReporter(run))
    except Exception as err:
        run.client.log_text(run.run_id, traceback.format_exc(), "failure_traceback.txt")
        finish_run(run.client, run.run_id, "failed", {TAG_STATUS: "failed", TAG_REASON: failure_reason(err)})
        raise
    # The driver decides completed vs. pruned (a stopped trial never gets here); a trial
    # that returns has run its whole budget.
    finish_run(run.client, run.run_id, "completed", {TAG_STATUS: "completed"})
