"""Training throughput of the method: semtune's own ``train_epoch`` against a plain PyTorch loop.

For stage 1 (codec + frozen ResNet backbone on x and x̂ + projection + contrastive loss, backward
through the frozen backbone into the decoder) and stage 2 (codec + classifier fine-tuning on
α2·L_rec + (1−α2)·CE), both paths run on the same model objects and the same batches:

- ``ours``:  ``trainables.training.loop.train_epoch`` with the plan from ``stage_plans`` and the
  optimizer from ``make_optimizer`` (what a real trial runs), over N batches of device-resident data;
- ``plain``: forward, loss, backward and Adam step written inline below (the reference).

Also measured in the same run: the matmul peak of the machine (large square matmuls, fp32 on
CPU, bf16 on CUDA) and the FLOPs of one training step (``FlopCounterMode``), giving
MFU = achieved FLOP/s ÷ measured matmul peak for every row. Warm-up first, then R repeats
(mean ± std); on CUDA timed with CUDA events after a synchronize.

    python bench/throughput.py                     # ResNet-56, codec width 64 (CPU), batch 128
    python bench/throughput.py --smoke-test --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from trainables.classifier.downstream import DownstreamModel
from trainables.classifier.pretrained import load_checkpoint, locate_public_checkpoint
from trainables.config import ClassifierConfig, CodecConfig, TrialConfig
from trainables.data import ImageSet
from trainables.data.formats import read_npz
from trainables.training.device import pick_runtime
from trainables.training.loop import train_epoch
from trainables.training.plan import stage_plans
from trainables.training.trial import build_models, make_optimizer

SHARED = Path(__file__).resolve().parents[2] / "shared"

# -----------------------------------------------------------------------------------------------
# Options: explicit flag > --smoke-test profile > per-device default
# -----------------------------------------------------------------------------------------------
DEFAULTS = {  # what an unset option becomes
    "cpu": dict(arch="resnet56", width=64, batch_size=128, batches=5, repeats=5, warmup_batches=2, peak_n=2048),
    "cuda": dict(arch="resnet56", width=256, batch_size=128, batches=50, repeats=10, warmup_batches=10, peak_n=8192),
    "smoke": dict(arch="resnet20", width=8, batch_size=16, batches=2, repeats=1, warmup_batches=1, peak_n=256),
}


def _fraction(text: str) -> float:
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"--kn must be a number or a fraction like 1/12 (got {text!r})") from None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--arch", choices=("resnet56", "resnet20"), default=None, help="downstream ResNet (default resnet56)")
    p.add_argument("--width", type=int, default=None, help="codec hidden width (default 64 on CPU, 256 on CUDA)")
    p.add_argument("--batch-size", type=int, default=None, help="default 128")
    p.add_argument("--kn", type=_fraction, default=1 / 12, help="requested bandwidth ratio k/n (default 1/12)")
    p.add_argument("--batches", type=int, default=None, help="timed batches per repeat (default 5 on CPU, 50 on CUDA)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5 on CPU, 10 on CUDA)")
    p.add_argument("--warmup-batches", type=int, default=None, help="untimed batches per path first (default 2 / 10)")
    p.add_argument("--peak-n", type=int, default=None, help="side of the square matmuls (default 2048 / 8192)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", type=Path, default=SHARED / "data" / "cifar10", help="folder holding test.npz")
    p.add_argument("--models-dir", type=Path, default=SHARED / "models", help="folder holding the akamaster checkpoints")
    p.add_argument("--smoke-test", action="store_true", help="tiny: resnet20, width 8, batch 16, 2 batches, 1 repeat")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    for name, low in (("batch_size", 2), ("batches", 1), ("repeats", 1), ("warmup_batches", 0), ("peak_n", 16),
                      ("width", 4), ("threads", 1)):
        value = getattr(args, name)
        if value is not None and value < low:
            p.error(f"--{name.replace('_', '-')} must be >= {low} (got {value})")
    return args


def resolve(args: argparse.Namespace, device: str) -> argparse.Namespace:
    profile = DEFAULTS["smoke" if args.smoke_test else device]
    for name, value in profile.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


# -----------------------------------------------------------------------------------------------
# Timing helpers
# -----------------------------------------------------------------------------------------------
def timed(fn, cuda: bool) -> float:
    """Seconds that ``fn()`` takes; CUDA events around it on the GPU (the queue drained first and last)."""
    if cuda:
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def summary(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "samples": values}


def matmul_peak(device: torch.device, n: int, repeats: int) -> dict:
    """GFLOP/s of back-to-back n×n matmuls: fp32 on CPU, bf16 on CUDA."""
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty_like(a)
    per_timing = 20 if cuda else 3

    def run():
        for _ in range(per_timing):
            torch.mm(a, b, out=out)

    run()  # warm-up
    rates = [2 * n**3 * per_timing / timed(run, cuda) / 1e9 for _ in range(max(repeats, 10))]
    return {**summary(rates), "best": max(rates), "dtype": str(dtype).removeprefix("torch."), "n": n}


# -----------------------------------------------------------------------------------------------
# The reference: a plain PyTorch loop over the same model objects
# -----------------------------------------------------------------------------------------------
def make_plain(models, cfg: TrialConfig, rt):
    """Return ``(setup, step)`` of a hand-written loop for each stage, sharing ``models`` with ``ours``."""
    link, proj, ds = models.link, models.projection, models.downstream
    a1, a2, tau = cfg.alpha1, cfg.loss.alpha2, cfg.loss.tau
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if rt.is_cuda else contextlib.nullcontext

    def setup(stage: int) -> None:
        # stage 1 trains codec + projection; stage 2 codec + F_cls; the backbone is frozen in eval mode
        link.train()
        proj.train(stage == 1)
        ds.eval()
        for p in ds.parameters():
            p.requires_grad_(False)
        for p in link.parameters():
            p.requires_grad_(True)
        for p in proj.parameters():
            p.requires_grad_(stage == 1)
        for p in ds.classifier.parameters():
            p.requires_grad_(stage == 2)

    def step(stage: int, opt, x, y, noise_gen) -> None:
        with amp():
            x_hat = link(x, noise_gen).x_hat
            rec = F.mse_loss(x_hat.float(), x)
            if stage == 1:  # eq. 7 as printed: the positive is not in the denominator
                with torch.no_grad():  # the frozen backbone on x; the projection of it is trained
                    f_x = ds.features(x)
                q, v = proj(f_x).float(), proj(ds.features(x_hat)).float()
                neg = (q @ q.T / tau).masked_fill(torch.eye(len(q), dtype=torch.bool, device=q.device), float("-inf"))
                sem = (torch.logsumexp(neg, dim=1) - (q * v).sum(1) / tau).mean()
                loss = a1 * rec + (1 - a1) * sem
            else:
                loss = a2 * rec + (1 - a2) * F.cross_entropy(ds(x_hat).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return setup, step


def plain_params(models, stage: int) -> list[torch.nn.Parameter]:
    extra = models.projection.parameters() if stage == 1 else models.downstream.classifier.parameters()
    return [*models.link.parameters(), *extra]


def plain_epoch(setup, step, stage, opt, data: ImageSet, batch_size, data_gen, noise_gen, rt) -> None:
    """Same shuffled order as ``iterate_batches`` (one ``randperm`` from the same generator), no flips."""
    setup(stage)
    order = torch.randperm(len(data), generator=data_gen).to(data.images.device)
    for start in range(0, len(data) - len(data) % batch_size, batch_size):
        idx = order[start:start + batch_size]
        x = data.images.index_select(0, idx).float().div_(255.0)
        if rt.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        step(stage, opt, x, data.labels.index_select(0, idx), noise_gen)


# -----------------------------------------------------------------------------------------------
# Setup: images, models
# -----------------------------------------------------------------------------------------------
def load_images(data_dir: Path, n: int, seed: int) -> tuple[ImageSet, str]:
    path = data_dir / "test.npz"
    if path.is_file():
        images, labels = read_npz(path, pick=lambda y: np.arange(min(n, len(y))))
        source = f"real images: the first {len(labels)} of {path}"
        if len(labels) < n:  # tile to the size asked for
            reps = -(-n // len(labels))
            images, labels = images.repeat(reps, 1, 1, 1)[:n], labels.repeat(reps)[:n]
            source += f", tiled to {n}"
        return ImageSet(images, labels), source
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=gen)
    return ImageSet(images, labels), f"random uint8 images ({path} not found)"


def load_downstream(arch: str, models_dir: Path, rt) -> tuple[DownstreamModel, str]:
    model = DownstreamModel(arch)
    try:
        path = locate_public_checkpoint(arch, (str(models_dir),), download=False)
    except FileNotFoundError:
        return rt.prepare(model).eval(), f"random init (no {arch} checkpoint in {models_dir})"
    load_checkpoint(model, path)
    return rt.prepare(model).eval(), f"pretrained {path}"


# -----------------------------------------------------------------------------------------------
# Main
# -----------------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    args = parse_args(argv)
    rt = pick_runtime(args.device, args.threads)
    args = resolve(args, rt.device.type)
    torch.manual_seed(args.seed)
    cfg = TrialConfig(codec=CodecConfig(width=args.width, kn=args.kn), classifier=ClassifierConfig(arch=args.arch),
                      batch_size=args.batch_size, device=rt.device.type, threads=args.threads, seed=args.seed)
    B, N = cfg.batch_size, args.batches
    data, data_note = load_images(args.data_dir, N * B, args.seed)
    data = data.to(rt.device)
    warm = ImageSet(data.images[:args.warmup_batches * B], data.labels[:args.warmup_batches * B])
    downstream, model_note = load_downstream(args.arch, args.models_dir, rt)
    models = build_models(cfg, downstream, rt)
    plans = {p.stage: p for p in stage_plans(cfg)}
    setup, step = make_plain(models, cfg, rt)
    numerics = "bf16 autocast, channels_last" if rt.is_cuda else "fp32"
    where = torch.cuda.get_device_name() if rt.is_cuda else f"cpu, {torch.get_num_threads()} threads"

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    peak = matmul_peak(rt.device, args.peak_n, args.repeats)
    results: dict = {
        "device": where, "numerics": numerics, "torch": torch.__version__, "arch": args.arch, "width": args.width,
        "kn": args.kn, "kn_achieved": cfg.kn_achieved, "batch_size": B, "batches": N, "repeats": args.repeats,
        "warmup_batches": args.warmup_batches, "data": data_note, "classifier": model_note,
        "peak_gflops": peak, "stages": {},
    }

    for stage in (1, 2):
        plan = plans[stage]
        ours_opt = make_optimizer(models, plan)[0]
        plain_opt = torch.optim.Adam(plain_params(models, stage), lr=plan.hyper.lr)

        def gens():  # the same batches and the same channel noise for both paths, every repeat
            return (torch.Generator().manual_seed(args.seed),
                    torch.Generator(device=rt.device).manual_seed(args.seed + 1))

        def run_ours(ds: ImageSet) -> dict:
            d, n = gens()
            return train_epoch(models, plan, ours_opt, ds, B, cfg.data.hflip, d, n, rt, cfg.loss.tau,
                               cfg.loss.contrastive)

        def run_plain(ds: ImageSet) -> None:
            d, n = gens()
            plain_epoch(setup, step, stage, plain_opt, ds, B, d, n, rt)

        # warm up (also creates the Adam states), then count the FLOPs of one plain step
        if args.warmup_batches:
            run_ours(warm)
            run_plain(warm)
        setup(stage)
        x = data.images[:B].float().div(255.0)
        x = x.contiguous(memory_format=torch.channels_last) if rt.is_cuda else x
        with FlopCounterMode(display=False) as counter:
            step(stage, plain_opt, x, data.labels[:B], gens()[1])
        flops_per_image = counter.get_total_flops() / B

        # timed repeats, alternating which path goes first to cancel slow drifts
        times: dict[str, list[float]] = {"ours": [], "plain": []}
        self_reported: list[float] = []
        for r in range(args.repeats):
            for name in (("ours", "plain") if r % 2 == 0 else ("plain", "ours")):
                if name == "ours":
                    box = {}
                    times[name].append(timed(lambda: box.update(run_ours(data)), rt.is_cuda))
                    self_reported.append(box["train_images_per_s"])
                else:
                    times[name].append(timed(lambda: run_plain(data), rt.is_cuda))
        row = {"flops_per_image": flops_per_image}
        for name, ts in times.items():
            ips = summary([N * B / t for t in ts])
            ips["gflops"] = ips["mean"] * flops_per_image / 1e9
            row[name] = ips
        row["ours"]["self_reported_images_per_s"] = summary(self_reported)
        paired = [p / o for o, p in zip(times["ours"], times["plain"])]  # ours/plain throughput per repeat
        row["ratio"] = {"of_means": row["ours"]["mean"] / row["plain"]["mean"], **summary(paired)}
        results["stages"][f"stage{stage}"] = row

    # the peak again at the end (a shared machine's load changes during the run); MFU uses the best of both
    late = matmul_peak(rt.device, args.peak_n, args.repeats)
    peak.update(best=max(peak["best"], late["best"]), start=peak["mean"], end=late["mean"],
                samples=peak["samples"] + late["samples"])
    peak.update({k: v for k, v in summary(peak["samples"]).items() if k != "samples"})
    for row in results["stages"].values():
        for name in ("ours", "plain"):
            row[name]["mfu"] = row[name]["gflops"] / peak["best"]
    results["loadavg_1min"] = {"start": load_before,
                               "end": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
                               "cpus": os.cpu_count()}
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return results


def report(res: dict) -> None:
    p = res["peak_gflops"]
    print(f"semtune training throughput | {res['device']} | {res['numerics']} | torch {res['torch']}")
    print(f"model: codec 'paper' width {res['width']}, k/n {res['kn_achieved']:.4g}, downstream {res['arch']} "
          f"({res['classifier']})")
    print(f"data: {res['data']}, device-resident")
    print(f"timing: batch {res['batch_size']}, {res['batches']} batches per repeat, {res['repeats']} repeats "
          f"(mean ± std) after {res['warmup_batches']} warm-up batches per path")
    print(f"matmul peak ({p['dtype']}, {p['n']}x{p['n']}, at start and end): {p['mean']:.1f} ± {p['std']:.1f} "
          f"GFLOP/s (start {p['start']:.1f}, end {p['end']:.1f}), best {p['best']:.1f} = MFU denominator")
    load = res["loadavg_1min"]
    print(f"1-min load average: {load['start']:.2f} at start, {load['end']:.2f} at end, on {load['cpus']} CPUs")
    if "cpu" in res["device"] and max(load["start"], load["end"]) > 1.25 * load["cpus"]:
        print("WARNING: other processes share these CPUs; the timings (and the ours/plain ratio) are contaminated")
    print()
    print(f"{'row':<30}{'images/s':>18}{'GFLOP/img':>11}{'GFLOP/s':>10}{'MFU':>8}{'ours/plain':>18}")
    for key, title in (("stage1", "stage 1 (contrastive)"), ("stage2", "stage 2 (fine-tune)")):
        row = res["stages"][key]
        for name, label in (("ours", "semtune train_epoch"), ("plain", "plain PyTorch loop")):
            r = row[name]
            ratio = f"{row['ratio']['of_means']:.3f} ({row['ratio']['std']:.3f})" if name == "ours" else ""
            print(f"{title + ' ' + name:<30}{r['mean']:>10.1f} ± {r['std']:<5.1f}{row['flops_per_image'] / 1e9:>11.3f}"
                  f"{r['gflops']:>10.1f}{r['mfu']:>8.1%}{ratio:>18}")
    print()
    for key in ("stage1", "stage2"):
        s = res["stages"][key]["ours"]["self_reported_images_per_s"]
        print(f"{key}: train_epoch's own train_images_per_s = {s['mean']:.1f} ± {s['std']:.1f}")
    print("ours/plain = ratio of mean throughputs (std of the per-repeat paired ratio); "
          "FLOPs = matmul/conv FLOPs of one step (forward + backward) from FlopCounterMode")


if __name__ == "__main__":
    main()
