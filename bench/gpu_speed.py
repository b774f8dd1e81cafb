"""Training images/s: semtune's ``train_epoch`` against the plain PyTorch loop most people would write.

``ours`` is what a trial runs: device-resident uint8 data, shuffles and flips on the device, bf16
autocast, channels_last, fused Adam, the frozen backbone without autograd state on x.
``plain`` is the textbook loop on separate fp32 copies of the same models: a ``DataLoader`` over the
uint8 arrays in host memory, one host→device copy per batch, fp32, contiguous layout, default Adam,
cuDNN autotuning off (PyTorch's default). Its step is ``throughput.make_plain`` without autocast.

Both are timed with ``throughput.timed`` (CUDA events on the GPU), over the same number of batches,
after a warm-up; MFU uses the FLOPs of one step (``FlopCounterMode``) and the bf16 matmul rate
measured in the same run (``throughput.matmul_peak``).
"""

from __future__ import annotations

import copy
import time
from types import SimpleNamespace

import torch
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

import throughput as tp
from trainables.data import ImageSet
from trainables.training.loop import train_epoch
from trainables.training.plan import stage_plans
from trainables.training.trial import build_models, make_optimizer


def plain_models(models, rt):
    """fp32, contiguous copies of ``models`` for the plain loop (same weights, own optimiser state)."""
    out = copy.deepcopy(models)
    for m in out.modules().values():
        m.to(rt.device, memory_format=torch.contiguous_format)
    return out


def run_ours(models, plan, opt, data: ImageSet, batch: int, rt, cfg, seed: int) -> dict:
    data_gen = torch.Generator(device=rt.device).manual_seed(seed)
    noise_gen = torch.Generator(device=rt.device).manual_seed(seed + 1)
    return train_epoch(models, plan, opt, data, batch, cfg.data.hflip, data_gen, noise_gen, rt, cfg.loss.tau,
                       cfg.loss.contrastive)


def run_plain(step_fns, stage: int, opt, loader: DataLoader, rt, seed: int) -> None:
    setup, step = step_fns
    setup(stage)
    noise_gen = torch.Generator(device=rt.device).manual_seed(seed + 1)
    for xb, yb in loader:  # the per-batch host→device copy is part of what is timed
        x = xb.to(rt.device, non_blocking=True).float().div_(255.0)
        step(stage, opt, x, yb.to(rt.device, non_blocking=True), noise_gen)


def measure(cfg, downstream, host: ImageSet, rt, batches: int, repeats: int, warmup: int, peak: dict) -> dict:
    """Both paths, both stages: images/s (mean over ``repeats``), their ratio and MFU."""
    B = cfg.batch_size
    models = build_models(cfg, downstream, rt)
    plain = plain_models(models, rt)
    step_fns = tp.make_plain(plain, cfg, SimpleNamespace(is_cuda=False))  # no autocast: fp32
    device_data = host.to(rt.device)
    warm = ImageSet(device_data.images[:warmup * B], device_data.labels[:warmup * B])
    pin = rt.is_cuda
    loader = DataLoader(TensorDataset(host.images, host.labels), batch_size=B, shuffle=True, drop_last=True,
                        pin_memory=pin, generator=torch.Generator().manual_seed(cfg.seed))
    warm_loader = DataLoader(TensorDataset(host.images[:warmup * B], host.labels[:warmup * B]), batch_size=B,
                             drop_last=True, pin_memory=pin)
    plans = {p.stage: p for p in stage_plans(cfg)}
    out: dict = {}
    for stage in (1, 2):
        plan = plans[stage]
        ours_opt = make_optimizer(models, plan)[0]
        plain_opt = torch.optim.Adam(tp.plain_params(plain, stage), lr=plan.hyper.lr)
        benchmark = torch.backends.cudnn.benchmark

        def ours():
            return run_ours(models, plan, ours_opt, device_data, B, rt, cfg, cfg.seed)

        def plain_loop():
            torch.backends.cudnn.benchmark = False
            try:
                run_plain(step_fns, stage, plain_opt, loader, rt, cfg.seed)
            finally:
                torch.backends.cudnn.benchmark = benchmark

        t0 = time.perf_counter()
        if warmup:
            run_ours(models, plan, ours_opt, warm, B, rt, cfg, cfg.seed)
            torch.backends.cudnn.benchmark = False
            run_plain(step_fns, stage, plain_opt, warm_loader, rt, cfg.seed)
            torch.backends.cudnn.benchmark = benchmark
        step_fns[0](stage)
        x = host.images[:B].to(rt.device).float().div(255.0)
        with FlopCounterMode(display=False) as counter:
            step_fns[1](stage, plain_opt, x, host.labels[:B].to(rt.device), torch.Generator(device=rt.device))
        flops = counter.get_total_flops() / B
        times = {"ours": [], "plain": []}
        for r in range(repeats):
            for name in (("ours", "plain") if r % 2 == 0 else ("plain", "ours")):
                times[name].append(tp.timed(ours if name == "ours" else plain_loop, rt.is_cuda))
        row = {"flops_per_image": flops, "seconds": time.perf_counter() - t0}
        for name, ts in times.items():
            ips = tp.summary([batches * B / t for t in ts])
            ips["mfu"] = ips["mean"] * flops / 1e9 / peak["best"]
            row[name] = ips
        row["speedup"] = row["ours"]["mean"] / row["plain"]["mean"]
        out[f"stage{stage}"] = row
    return out
