"""One trial = one function: stage 0 → stage 1 → stage 2, evaluated and checkpointed every epoch.

Used unchanged by Ray Tune and by ``semtune trial``: the outside world is only the
:class:`~trainables.reporter.Reporter` it is given.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from trainables.channel import build_channel
from trainables.codec import build_link
from trainables.config import TrialConfig
from trainables.data import load_splits
from trainables.projection import ProjectionHead
from trainables.reporter import Reporter
from trainables.training.checkpoint import (
    TrialState, capture_rng, load_checkpoint, restore_rng, save_checkpoint,
)
from trainables.training.device import pick_runtime
from trainables.training.loop import Models, Progress, compile_models, evaluate, train_epoch, trainable_parameters
from trainables.training.plan import plan_at, stage_plans
from trainables.training.stage0 import prepare_downstream

EVAL_NOISE_SEED_OFFSET = 7919  # evaluation noise uses seed + this, apart from the training streams


def build_models(cfg: TrialConfig, downstream, rt) -> Models:
    channel = build_channel(cfg.channel)
    c = cfg.codec
    link = build_link(c.arch, c.width, c.kn, cfg.data.image_size, channel, channel_coding_conv=c.channel_coding_conv,
                      plain_widths=c.plain_widths, kn_tolerance=c.kn_tolerance)
    projection = ProjectionHead(downstream.feature_dim, cfg.loss.proj_dim)
    models = Models(link=rt.prepare(link), projection=projection.to(rt.device), downstream=downstream)
    if rt.compile:
        compile_models(models)
    return models


def make_optimizer(models: Models, plan):
    """Adam (fused into one kernel on CUDA; CPU keeps the default implementation and its numbers)."""
    params = trainable_parameters(models, plan)
    fused = bool(params) and params[0].is_cuda
    opt = torch.optim.Adam(params, lr=plan.hyper.lr, fused=fused or None)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=plan.hyper.lr_step_epochs, gamma=plan.hyper.lr_gamma)
    return opt, sched


def run_trial(cfg: TrialConfig, reporter: Reporter, progress: Progress | None = None) -> dict[str, float]:
    """Train and evaluate ``cfg``; report every epoch; return the last epoch's metrics."""
    rt = pick_runtime(cfg.device, cfg.threads)
    torch.manual_seed(cfg.seed)
    splits = load_splits(cfg.data, with_final=cfg.data.final_score)
    train, tune = splits.train.to(rt.device), splits.tune.to(rt.device)

    downstream = prepare_downstream(cfg.classifier, cfg.data, train, cfg.seed, rt)
    models = build_models(cfg, downstream, rt)
    plans = stage_plans(cfg)
    data_gen = torch.Generator(device=rt.device).manual_seed(cfg.seed)  # shuffles and flips on the device
    noise_gen = torch.Generator(device=rt.device).manual_seed(cfg.seed + 1)
    config_json = cfg.model_dump(mode="json")

    epoch, history, opt, sched, opt_stage = 0, [], None, None, 0
    resume = reporter.checkpoint_to_resume()
    if resume is not None:
        state = load_checkpoint(resume, map_location=rt.device)
        for name, module in models.modules().items():
            module.load_state_dict(state.modules[name])
        epoch, history = state.epoch, state.history
        if epoch < cfg.total_epochs and plan_at(plans, epoch + 1)[0].stage == state.stage:
            opt, sched = make_optimizer(models, plan_at(plans, epoch + 1)[0])
            opt.load_state_dict(state.optimizer)
            sched.load_state_dict(state.scheduler)
            opt_stage = state.stage
        restore_rng(state.rng, data_gen, noise_gen)

    metrics: dict[str, float] = dict(history[-1]) if history else {}
    while epoch < cfg.total_epochs:
        epoch += 1
        plan, stage_epoch = plan_at(plans, epoch)
        if opt_stage != plan.stage:
            opt, sched = make_optimizer(models, plan)
            opt_stage = plan.stage
        losses = train_epoch(models, plan, opt, train, cfg.batch_size, cfg.data.hflip, data_gen, noise_gen, rt,
                             cfg.loss.tau, cfg.loss.contrastive, progress,
                             f"epoch {epoch}/{cfg.total_epochs} (stage {plan.stage})")
        lr = opt.param_groups[0]["lr"]
        sched.step()
        scores = evaluate(models, tune, cfg.eval_batch_size, cfg.seed + EVAL_NOISE_SEED_OFFSET, rt)
        metrics = {
            "epoch": epoch, "stage": plan.stage, "stage_epoch": stage_epoch, "epochs_total": cfg.total_epochs,
            **scores, **losses, "lr": lr, "kn_achieved": cfg.kn_achieved, "alpha1": cfg.alpha1,
        }
        if epoch == cfg.total_epochs and splits.final is not None:
            final = evaluate(models, splits.final.to(rt.device), cfg.eval_batch_size,
                             cfg.seed + EVAL_NOISE_SEED_OFFSET, rt)
            metrics.update({f"final_{k}": v for k, v in final.items()})
        history.append(metrics)
        state = TrialState(
            epoch=epoch, stage=plan.stage,
            modules={name: m.state_dict() for name, m in models.modules().items()},
            optimizer=opt.state_dict(), scheduler=sched.state_dict(),
            rng=capture_rng(data_gen, noise_gen), history=history,
        )
        with tempfile.TemporaryDirectory(prefix="semtune-ckpt-") as tmp:
            reporter.report(metrics, save_checkpoint(Path(tmp), state, config_json))
    return metrics


def load_trained(checkpoint_dir: str | Path, device: str = "cpu") -> tuple[TrialConfig, Models]:
    """Rebuild a trial's config and trained models from one of its checkpoints (eval mode)."""
    from trainables.classifier.downstream import DownstreamModel
    from trainables.config import build_trial_config
    from trainables.training.checkpoint import read_checkpoint_config
    from trainables.training.device import Runtime

    cfg = build_trial_config(read_checkpoint_config(Path(checkpoint_dir)))
    rt = Runtime(torch.device(device))
    models = build_models(cfg, DownstreamModel(cfg.classifier.arch).to(rt.device), rt)
    state = load_checkpoint(Path(checkpoint_dir), map_location=rt.device)
    for name, module in models.modules().items():
        module.load_state_dict(state.modules[name])
        module.eval()
    return cfg, models
