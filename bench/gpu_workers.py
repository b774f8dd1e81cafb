"""Measurements that need a process of their own: trials sharing one GPU, and torch.compile.

Fractional-GPU trials (``resources: {gpu: 0.5}``) are separate processes on one device, each with its
own CUDA context and caching allocator; so is every worker here (``python bench/gpu_workers.py SPEC``).

- ``concurrent(k)``: k workers build a stage-1 trial each, warm up, then wait at a barrier (a file)
  and train for the same wall-clock span. Aggregate images/s = the sum of theirs; memory per trial
  = each worker's peak reserved by torch, and the device-wide used memory sampled meanwhile, ÷ k
  (this one includes the CUDA contexts).
- ``compiled()``: one worker measures stage 1 and 2 eager, then ``compile_models`` and again, so
  that the comparison is made on the same weights in the same process; compile time is reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _setup(spec: dict):
    import torch

    from trainables.classifier.downstream import DownstreamModel
    from trainables.config import ClassifierConfig, CodecConfig, TrialConfig
    from trainables.data import ImageSet
    from trainables.training.device import pick_runtime
    from trainables.training.trial import build_models

    rt = pick_runtime("auto", spec.get("threads"))
    cfg = TrialConfig(codec=CodecConfig(width=spec["width"], kn=spec["kn"]),
                      classifier=ClassifierConfig(arch=spec["arch"], checkpoint=None, allow_untrained=True),
                      batch_size=spec["batch"], device=rt.device.type, seed=spec.get("seed", 0))
    n = spec["batches"] * spec["batch"]
    gen = torch.Generator().manual_seed(cfg.seed)
    data = ImageSet(torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8),
                    torch.randint(0, 10, (n,), generator=gen)).to(rt.device)
    downstream = rt.prepare(DownstreamModel(spec["arch"])).eval()
    return torch, rt, cfg, data, build_models(cfg, downstream, rt)


def _epoch_fn(torch, rt, cfg, data, models, stage: int):
    from trainables.training.loop import train_epoch
    from trainables.training.plan import stage_plans
    from trainables.training.trial import make_optimizer

    plan = {p.stage: p for p in stage_plans(cfg)}[stage]
    opt = make_optimizer(models, plan)[0]

    def run(ds=data):
        d = torch.Generator(device=rt.device).manual_seed(cfg.seed)
        n = torch.Generator(device=rt.device).manual_seed(cfg.seed + 1)
        return train_epoch(models, plan, opt, ds, cfg.batch_size, cfg.data.hflip, d, n, rt, cfg.loss.tau,
                           cfg.loss.contrastive)
    return run


def worker(spec: dict) -> dict:
    torch, rt, cfg, data, models = _setup(spec)
    from throughput import summary, timed

    images = spec["batches"] * spec["batch"]
    if spec["mode"] == "concurrent":
        run = _epoch_fn(torch, rt, cfg, data, models, 1)
        run()  # warm-up: cuDNN autotuning, allocator growth
        Path(spec["ready"]).touch()
        deadline = time.monotonic() + spec["barrier_timeout_s"]
        while not Path(spec["go"]).exists():
            if time.monotonic() > deadline:
                raise TimeoutError("no go signal")
            time.sleep(0.02)
        clock, done, t0 = rt.stopwatch(), 0, time.perf_counter()
        while time.perf_counter() - t0 < spec["duration_s"]:
            run()  # each call ends with one host sync (its loss means), as in a trial
            done += images
        seconds = clock.seconds()
        out = {"images": done, "seconds": seconds, "images_per_s": done / seconds}
    else:  # compiled: eager first, then compiled, same process and weights
        from trainables.training.loop import compile_models

        out = {}
        for label in ("eager", "compiled"):
            if label == "compiled":
                compile_models(models, backend=spec.get("backend", "inductor"))
            for stage in (1, 2):
                run = _epoch_fn(torch, rt, cfg, data, models, stage)
                t0 = time.perf_counter()
                run()
                run()  # compiles train mode; the second call checks for recompiles
                warm_s = time.perf_counter() - t0
                rates = [images / timed(run, rt.is_cuda) for _ in range(spec["repeats"])]
                out[f"stage{stage}_{label}"] = {**summary(rates), "warmup_s": warm_s}
    if rt.is_cuda:
        out["max_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["max_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    return out


# -- the parent's side ---------------------------------------------------------------------------------
def _spawn(spec: dict, tmp: Path, i: int) -> tuple[subprocess.Popen, Path]:
    path = tmp / f"spec{i}.json"
    path.write_text(json.dumps(spec))
    log = open(tmp / f"worker{i}.log", "w")
    proc = subprocess.Popen([sys.executable, str(Path(__file__)), str(path)], stdout=log, stderr=subprocess.STDOUT)
    return proc, tmp / f"worker{i}.log"


def _collect(procs, tmp: Path, timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    results = []
    for i, (proc, log) in enumerate(procs):
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out = tmp / f"spec{i}.json.out"
        if proc.returncode == 0 and out.exists():
            results.append(json.loads(out.read_text()))
        else:
            tail = log.read_text()[-400:].strip().splitlines()[-1:] if log.exists() else []
            results.append({"error": f"exit {proc.returncode}: {' '.join(tail)}"})
    return results


def concurrent(k: int, base: dict, duration_s: float, timeout_s: float) -> dict:
    """``k`` trial processes at once on the one device; aggregate images/s and memory per trial."""
    used = _device_used_gib()
    with tempfile.TemporaryDirectory(prefix="semtune-gpucheck-") as tmp:
        tmp = Path(tmp)
        go = tmp / "go"
        specs = [{**base, "mode": "concurrent", "seed": i, "ready": str(tmp / f"ready{i}"), "go": str(go),
                  "duration_s": duration_s, "barrier_timeout_s": timeout_s} for i in range(k)]
        procs = [_spawn(s, tmp, i) for i, s in enumerate(specs)]
        t0, deadline = time.perf_counter(), time.monotonic() + timeout_s
        while not all(Path(s["ready"]).exists() for s in specs):
            if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p, _ in procs):
                break
            time.sleep(0.05)
        startup_s = time.perf_counter() - t0
        go.touch()
        peak = used
        while any(p.poll() is None for p, _ in procs) and time.monotonic() < deadline:
            peak = max(peak, _device_used_gib())
            time.sleep(0.25)
        results = _collect(procs, tmp, max(1.0, deadline - time.monotonic()))
    ok = [r for r in results if "error" not in r]
    row = {"processes": k, "ok": len(ok), "startup_s": startup_s, "workers": results,
           "aggregate_images_per_s": sum(r["images_per_s"] for r in ok) if ok else None}
    if ok and "max_reserved_gib" in ok[0]:
        row["reserved_gib_per_trial"] = max(r["max_reserved_gib"] for r in ok)
        row["device_used_gib_per_trial"] = (peak - used) / k
    return row


def compiled(base: dict, repeats: int, timeout_s: float, backend: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="semtune-gpucheck-") as tmp:
        tmp = Path(tmp)
        proc = _spawn({**base, "mode": "compiled", "repeats": repeats, "backend": backend}, tmp, 0)
        return _collect([proc], tmp, timeout_s)[0]


def _device_used_gib() -> float:
    import torch

    if not torch.cuda.is_available():
        return 0.0
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**30


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    spec_path = Path(sys.argv[1])
    result = worker(json.loads(spec_path.read_text()))
    Path(str(spec_path) + ".out").write_text(json.dumps(result))
