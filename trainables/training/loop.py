"""One training epoch of either stage, and the evaluation that follows every epoch.

Both keep the GPU busy: no per-batch ``.item()`` or ``float()`` (the loss sums and the scores are
accumulated on the device and read once), timing by CUDA events. Training runs under the runtime's
autocast (bf16 on CUDA); evaluation always in exact fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from trainables.classifier.downstream import DownstreamModel
from trainables.codec import SemanticLink
from trainables.data import ImageSet, iterate_batches, num_batches
from trainables.losses import mix, reconstruction_loss, semantic_contrastive_loss, task_loss
from trainables.metrics import psnr_per_image, ssim_per_image
from trainables.projection import ProjectionHead
from trainables.training.device import Runtime
from trainables.training.plan import StagePlan

Progress = Callable[[Iterable, int, str], Iterable]  # (batches, total, description) -> batches


class TrialDiverged(FloatingPointError):
    """The loss became NaN or infinite; the trial is failed with this message as its reason."""


@dataclass
class Models:
    link: SemanticLink
    projection: ProjectionHead
    downstream: DownstreamModel

    def modules(self) -> dict[str, nn.Module]:
        return {"link": self.link, "projection": self.projection, "downstream": self.downstream}


def trainable_parameters(models: Models, plan: StagePlan) -> list[nn.Parameter]:
    params: list[nn.Parameter] = []
    if plan.train_link:
        params += list(models.link.parameters())
    if plan.train_projection:
        params += list(models.projection.parameters())
    if plan.train_classifier:
        params += list(models.downstream.classifier.parameters())
    if plan.train_backbone:
        params += list(models.downstream.backbone_parameters())
    return params


def set_modes(models: Models, plan: StagePlan) -> None:
    """Train mode only for what this stage trains; frozen parts keep their BatchNorm statistics."""
    models.link.train(plan.train_link)
    models.link.channel.train(True)  # the channel samples the training SNR even for a frozen codec
    models.projection.train(plan.train_projection)
    models.downstream.train(plan.train_backbone)
    trainable = {id(p) for p in trainable_parameters(models, plan)}
    for m in models.modules().values():
        for p in m.parameters():
            p.requires_grad_(id(p) in trainable)


def train_epoch(models: Models, plan: StagePlan, optimizer: torch.optim.Optimizer, train: ImageSet,
                batch_size: int, hflip: bool, data_gen: torch.Generator, noise_gen: torch.Generator,
                rt: Runtime, tau: float, contrastive: str, progress: Progress | None = None,
                description: str = "") -> dict[str, float]:
    """Run one epoch of ``plan``; return the mean of each loss term and the throughput."""
    set_modes(models, plan)
    # Only the terms this stage computes: a "loss_sem" of 0 in stage 2 would read as a perfect score.
    terms = ("loss", "loss_rec") + {"sem": ("loss_sem",), "task": ("loss_task",)}.get(plan.other, ())
    sums = {k: torch.zeros((), device=rt.device) for k in terms}
    n_batches = num_batches(len(train), batch_size, drop_last=True)
    batches = iterate_batches(train, batch_size, generator=data_gen, shuffle=True, hflip=hflip, drop_last=True)
    if progress is not None:
        batches = progress(batches, n_batches, description)
    clock, seen = rt.stopwatch(), 0
    for x, y in batches:
        x = rt.images(x)
        with rt.autocast():
            with torch.set_grad_enabled(plan.train_link):
                x_hat = models.link(x, noise_gen).x_hat
            rec = reconstruction_loss(x, x_hat)
            other = torch.zeros((), device=rt.device)
            if plan.other == "sem":
                with torch.no_grad():
                    f_x = models.downstream.features(x)
                anchors = models.projection(f_x)
                positives = models.projection(models.downstream.features(x_hat))
                other = semantic_contrastive_loss(anchors, positives, tau, contrastive)
            elif plan.other == "task":
                other = task_loss(models.downstream(x_hat), y, plan.ce_class_normalised)
            loss = mix(plan.rec_weight, rec, other)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sums["loss"] += loss.detach()
        sums["loss_rec"] += rec.detach()
        if plan.other != "none":
            sums[f"loss_{plan.other}"] += other.detach()
        seen += len(y)
    elapsed = clock.seconds()
    means = {k: float(v) / max(1, n_batches) for k, v in sums.items()}
    if not math.isfinite(means["loss"]):
        raise TrialDiverged(f"training loss is {means['loss']} in stage {plan.stage}")
    means["train_images_per_s"] = seen / elapsed if elapsed > 0 else float("nan")
    return means


@torch.inference_mode()
def evaluate(models: Models, ds: ImageSet, batch_size: int, noise_seed: int, rt: Runtime) -> dict[str, float]:
    """Accuracy of the classifier on x̂, PSNR and SSIM, over the whole split at the trial's SNR.

    The channel noise comes from a generator seeded the same way at every evaluation, so two
    epochs (or two trials) are compared on the same noise draws. Always exact fp32, also when
    training runs under bf16 autocast: the scores must not depend on the training numerics.
    The sums stay on the device in float64 (the same values as Python floats on CPU) and are
    read once at the end.
    """
    models.link.eval()
    models.downstream.eval()
    gen = torch.Generator(device=rt.device).manual_seed(noise_seed)
    correct = torch.zeros((), dtype=torch.int64, device=rt.device)
    psnr = torch.zeros((), dtype=torch.float64, device=rt.device)
    ssim = torch.zeros((), dtype=torch.float64, device=rt.device)
    with rt.exact():
        for x, y in iterate_batches(ds, batch_size):
            x = rt.images(x)
            x_hat = models.link(x, gen).x_hat.float()
            logits = models.downstream(x_hat.clamp(0, 1))
            correct += (logits.argmax(1) == y).sum()
            psnr += psnr_per_image(x, x_hat).sum().double()
            ssim += ssim_per_image(x, x_hat).sum().double()
    n = len(ds)
    return {"accuracy": int(correct) / n, "psnr": float(psnr) / n, "ssim": float(ssim) / n}


def compile_models(models: Models, backend: str = "inductor") -> None:
    """``torch.compile`` the forward passes in place (optional: compiling costs a minute per trial).

    Compiled are the encoder, the decoder, the backbone F_b and the projection; the channel (its
    generator-driven noise) runs eagerly between them. ``Module.compile`` keeps the state-dict keys,
    so checkpoints are the same with and without it.
    """
    for module in (models.link.encoder, models.link.decoder, models.projection):
        module.compile(backend=backend)
    models.downstream.features = torch.compile(models.downstream.features, backend=backend)
