"""The Ray Tune trainable: a Tune ``config`` → a validated TrialConfig → ``run_trial``.

Runs inside a Ray worker. MLflow logging happens here, where the trial runs (so it works
against an ``http://`` tracking server from any node); Tune gets the same metrics and the
checkpoint through :class:`TuneReporter`.
"""

from __future__ import annotations

import math
import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from ray import tune

import search_spaces
from orchestrator.objectives import METRICS
from orchestrator.outcomes import BUDGET_KEY, COMPLETED, FAILURE_KEY, TRACEBACK_KEY, Outcome, for_driver
from orchestrator.tune.errors import failure_reason
from trainables.config import TrialConfig, build_trial_config

if TYPE_CHECKING:  # MLflow is imported only by studies that log to it (a worker's start-up time)
    from orchestrator.tracking.runs import StudyRun, TrialRun


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a study shares: base configs per method and where to log."""

    base_docs: dict[str, dict[str, Any]]  # method -> TrialConfig document without condition/searched values
    study: StudyRun | None  # None: the study runs without MLflow (``mlflow: false``)
    classifier_cache: str | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)
    replay: str | None = None  # a curve table that serves the trials instead of training (``replay:``)


def trial_config(ctx: TrialContext, config: dict[str, Any]) -> TrialConfig:
    """Merge the Tune config (method, condition, searched values) into the method's base document."""
    method = config["method"]
    loss = {k: config[k] for k in search_spaces.SEARCHABLE if k in config}
    doc = search_spaces.merge(ctx.base_docs[method], {
        "codec": {"kn": config["kn"]}, "loss": loss,
        "channel": {"snr_db": config["snr_db"], "model": config.get("channel_model", "awgn")},
    })
    if ctx.classifier_cache:
        doc = search_spaces.merge(doc, {"classifier": {"cache_dir": ctx.classifier_cache}})
    return build_trial_config(doc)


def run_params(cfg: TrialConfig, config: dict[str, Any]) -> dict[str, Any]:
    """What a person filters runs by, first (only the parameters the method uses); then the whole
    config, flattened under ``cfg.``."""
    from orchestrator.tracking.runs import flatten

    used = search_spaces.METHOD_PARAMETERS[cfg.method]
    searched = {"alpha1": cfg.alpha1, "alpha2": cfg.loss.alpha2, "tau": cfg.loss.tau, "proj_dim": cfg.loss.proj_dim}
    head = {
        "condition": config["condition"], "method": cfg.method, "channel": cfg.channel.model,
        "snr_db": cfg.channel.snr_db,
        "kn_requested": cfg.codec.kn, "kn_achieved": round(cfg.kn_achieved, 6),
        **{name: searched[name] for name in search_spaces.SEARCHABLE if name in used},
        BUDGET_KEY: cfg.total_epochs,
    }
    if "alpha1" in used:
        head["alpha1_choice"] = "kn" if cfg.loss.alpha1 == "kn" else f"{cfg.alpha1:g}"
    return {**head, **dict(flatten("cfg", cfg.model_dump(mode="json")))}


class TuneReporter:
    """The trainables' Reporter for Ray Tune: every metric to MLflow first, then what the driver reads of
    them (``for_driver``) to ``tune.report``, with the checkpoint."""

    def __init__(self, run: TrialRun):
        self.run = run
        self._restored: Path | None = None

    def report(self, metrics, checkpoint_dir):
        self.run.log_epoch(metrics)
        tune.report(for_driver(metrics), checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))
        if self._restored is not None:
            shutil.rmtree(self._restored, ignore_errors=True)
            self._restored = None

    def checkpoint_to_resume(self):
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        self._restored = Path(checkpoint.to_directory())
        return self._restored


class _NoRun:
    """The trial run of a study without MLflow: every call is a no-op."""

    def log_epoch(self, metrics) -> None:
        pass

    def set_tags(self, **tags) -> None:
        pass

    def fail(self, reason: str, traceback_text: str) -> None:
        pass

    def finish(self, outcome: Outcome) -> None:
        pass


def _open_run(context: TrialContext, trial_id: str, cfg: TrialConfig, config: dict[str, Any]):
    if context.study is None:
        return _NoRun()
    from orchestrator.tracking.runs import TrialRun
    from orchestrator.tracking.tags import TAG_NODE_ID

    run = TrialRun.open(context.study, trial_id, run_name=f"{config['condition']}/{cfg.method}/{trial_id}",
                        condition=config["condition"], method=cfg.method, params=run_params(cfg, config))
    run.set_tags(**{TAG_NODE_ID: ray.get_runtime_context().get_node_id()}, **context.extra_tags)  # this attempt
    return run


def _trial_function(context: TrialContext):
    """``(train(cfg, reporter), the deterministic failure it raises)``: the real trial, or the replay of
    one (a table lookup, for which torch and the training code are not even imported)."""
    if context.replay:
        from trainables.replay import replay_trial

        return (lambda cfg, reporter: replay_trial(cfg, context.replay, search_spaces.METHOD_PARAMETERS[cfg.method],
                                                   reporter)), ()
    from trainables.training import TrialDiverged, run_trial

    return run_trial, TrialDiverged


def semtune_trainable(config: dict[str, Any], context: TrialContext) -> None:
    """The function Tune runs for every trial of a study."""
    train, diverged = _trial_function(context)
    cfg = trial_config(context, config)
    run = _open_run(context, tune.get_context().get_trial_id(), cfg, config)
    try:
        train(cfg, TuneReporter(run))
    except diverged as err:  # deterministic: reported as failed, so that Tune does not retry it
        trace = traceback.format_exc()
        run.fail(failure_reason(err), trace)
        tune.report({**{m: math.nan for m in METRICS},  # Tune checks that every result has the metrics
                     FAILURE_KEY: failure_reason(err), TRACEBACK_KEY: trace})
        return
    except Exception as err:  # maybe transient (a lost node): raised, so Tune retries up to max_failures
        run.fail(failure_reason(err), traceback.format_exc())
        raise
    # The driver decides completed vs. pruned (a stopped trial never gets here); a trial
    # that returns has run its whole budget.
    run.finish(Outcome(COMPLETED))
