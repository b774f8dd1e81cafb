"""The GPU check of issue 12: everything semtune does on a GPU, run once on a lent machine, in ≤ 8 minutes.

    bash bench/gpu_check.sh [--out DIR]     # on the GPU machine (see bench/README.md)
    bash bench/gpu_check.sh --dry-run       # anywhere: every part on CPU, tiny, synthetic data

Parts, in order, each sized to what is left of ``--budget-s`` (later parts are shortened or skipped,
and the JSON says which and why):

1. ``cuda tests``: ``pytest -m cuda tests/trainables`` (exact fp32 evaluation, CUDA generators, codec
   shapes, resume on the GPU); they skip without a GPU.
2. ``speed``: stage-1/2 images/s of ``train_epoch`` against the plain loop (``gpu_speed.py``), and
   MFU against the bf16 matmul rate measured in the same run. Goal: ≥ 3× the plain loop.
3. ``concurrent trials``: aggregate images/s of 1, 2, 4, 8 trial processes on the one GPU, with memory
   per trial (``gpu_workers.py``).
4. ``torch.compile``: stage 1/2 eager and compiled in one worker process.
5. ``trial``: the paper preset's method on the carried CIFAR-10 (``gpu_trial.py``).

Results: ``bench/results/gpu_check-<UTC time>.json`` (and ``--out``), with the device, versions,
date and machine; the table is printed last. Needs pydantic and pytest: when they are missing, the
wheels in ``.whl/`` are unpacked into a temporary folder first (pure unzip, no pip, no network).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT / ".gpucheck"
GPU = dict(budget_s=450, arch="resnet56", width=256, batch=128, batches=30, repeats=3, warmup=5, peak_n=8192,
           kn=1 / 12, procs=(1, 2, 4, 8), duration_s=8.0, tests_s=120, trial_min_s=150, compile_max_s=150,
           compile_backend="inductor", compile_need_s=90)
DRY = dict(budget_s=55, arch="resnet20", width=8, batch=8, batches=2, repeats=1, warmup=1, peak_n=128,
           kn=1 / 12, procs=(1, 2), duration_s=0.5, tests_s=60, trial_min_s=5, compile_max_s=30,
           compile_backend="eager", compile_need_s=10, threads=1)  # eager backend: dynamo's tracing, no codegen


def ensure_packages(root: Path = ROOT) -> str:
    """Make pydantic and pytest importable, from the carried ``.whl/`` if need be; one line if impossible."""
    def missing() -> list[str]:
        import importlib.util

        return [m for m in ("pydantic", "pytest") if importlib.util.find_spec(m) is None]

    if not missing():
        return "pydantic and pytest already installed"
    wheels = sorted((root / ".whl").glob("*.whl"))
    site = Path(tempfile.gettempdir()) / "semtune-gpucheck-site"
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            z.extractall(site)
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    if missing():
        sys.exit(f"error: {' and '.join(missing())} not importable and not in {root / '.whl'} "
                 f"({len(wheels)} wheels there); see bench/README.md 'gpu_check.sh'")
    return f"unpacked {len(wheels)} wheels from .whl/ into {site}"


class Budget:
    def __init__(self, seconds: float):
        self.seconds, self.t0 = seconds, time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.t0)


def environment(dry: bool, note: str) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    env = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "dry_run": dry,
           "machine": {"node": platform.node(), "platform": platform.platform(), "cpus": os.cpu_count(),
                       "python": platform.python_version()},
           "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
           "device": torch.cuda.get_device_name() if cuda else "cpu", "packages": note}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = {"memory_gib": props.total_memory / 2**30, "capability": f"{props.major}.{props.minor}",
                      "sms": props.multi_processor_count}
    for mod in ("torchvision", "torchmetrics", "numpy", "pyarrow", "pydantic"):
        try:
            env.setdefault("versions", {})[mod] = __import__(mod).__version__
        except Exception as err:  # a missing optional package is a fact to record, not a failure
            env.setdefault("versions", {})[mod] = f"unavailable ({type(err).__name__})"
    return env


def cuda_tests(timeout_s: float) -> dict:
    """``pytest -m cuda`` in a subprocess; counts from its JUnit XML."""
    import xml.etree.ElementTree as ET

    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "tests/trainables", "-m", "cuda", "-q", "-p", "no:cacheprovider",
               f"--junitxml={xml}", f"--basetemp={tmp}/t"]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"status": f"timed out after {timeout_s:.0f} s", "seconds": timeout_s}
        out = {"seconds": time.perf_counter() - t0, "exit_code": proc.returncode,
               "summary": (proc.stdout.strip().splitlines() or [""])[-1]}
        if xml.exists():
            suite = ET.parse(xml).getroot()
            suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
            total = int(suite.get("tests", 0))
            failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skipped = int(suite.get("skipped", 0))
            out.update(passed=total - failed - skipped, failed=failed, skipped=skipped,
                       failures=[f"{c.get('name')}: {(c[0].get('message') or '')[:300]}" for c in suite.iter("testcase")
                                 if len(c) and c[0].tag in ("failure", "error")])
        if proc.returncode not in (0, 5):
            out["output_tail"] = proc.stdout[-3000:] + proc.stderr[-1000:]
    return out


def images(n: int, dry: bool):
    """``n`` real test images spread over the classes (the carried Parquet), random ones in a dry run."""
    import numpy as np

    import throughput as tp
    from trainables.data import ImageSet
    from trainables.data.formats import read_parquet

    path = DATA / "cifar10" / "test.parquet"
    if dry or not path.is_file():
        return tp.load_images(Path("/nonexistent"), n, 0)[0], f"random uint8 images ({n})"
    imgs, labels = read_parquet(path, pick=lambda y: np.resize(np.arange(0, len(y), max(1, len(y) // n)), n))
    return ImageSet(imgs, labels), f"{n} images of {path}"


def speed(p: dict, dry: bool, rt) -> dict:
    import throughput as tp
    from gpu_speed import measure
    from trainables.config import ClassifierConfig, CodecConfig, TrialConfig

    cfg = TrialConfig(codec=CodecConfig(width=p["width"], kn=p["kn"]), classifier=ClassifierConfig(arch=p["arch"]),
                      batch_size=p["batch"], device=rt.device.type, data={"hflip": True})
    models_dir = DATA / "models"
    downstream, note = tp.load_downstream(p["arch"], models_dir, rt)
    host, data_note = images(p["batches"] * p["batch"], dry)
    peak = tp.matmul_peak(rt.device, p["peak_n"], 3 if dry else 10)
    out = measure(cfg, downstream, host, rt, p["batches"], p["repeats"], p["warmup"], peak)
    return {"peak_gflops": peak, "classifier": note, "data": data_note, "batch": p["batch"],
            "batches": p["batches"], "repeats": p["repeats"], "width": p["width"], "arch": p["arch"], **out}


def run_all(args, note: str) -> dict:
    p = dict(DRY if args.dry_run else GPU)
    if args.budget_s:
        p["budget_s"] = args.budget_s
    budget = Budget(p["budget_s"])
    sys.path.insert(0, str(HERE))
    import torch

    import gpu_trial
    import gpu_workers
    from trainables.training.device import pick_runtime

    rt = pick_runtime("auto", p.get("threads"))  # a dry run on 1 thread: shared CPUs make OpenMP spin
    res: dict = {"environment": environment(args.dry_run, note), "budget_s": p["budget_s"], "skipped": {},
                 "parts": {}}
    if rt.is_cuda == args.dry_run:
        res["skipped"]["note"] = "dry run on a CUDA machine" if rt.is_cuda else "no CUDA: nothing here is a GPU figure"

    def part(name, fn, need_s=0.0):
        if budget.left() < need_s:
            res["skipped"][name] = f"{budget.left():.0f} s left, {need_s:.0f} s needed"
            return None
        t0 = time.perf_counter()
        try:
            res["parts"][name] = fn()
        except Exception as err:  # one broken part must not lose the others' results
            res["parts"][name] = {"error": f"{type(err).__name__}: {err}"}
        res["parts"][name]["part_s"] = time.perf_counter() - t0
        print(f"[{time.monotonic() - budget.t0:6.1f} s] {name} done", flush=True)
        return res["parts"][name]

    part("cuda_tests", lambda: cuda_tests(min(p["tests_s"], budget.left() - p["trial_min_s"])))
    sp = part("speed", lambda: speed(p, args.dry_run, rt), need_s=10)
    base = {"arch": p["arch"], "width": p["width"], "kn": p["kn"], "batch": p["batch"], "batches": p["batches"],
            "threads": p.get("threads")}
    rows = []
    for k in p["procs"]:
        need = 20 + 2 * k + p["duration_s"] if rt.is_cuda else 2
        got = part(f"concurrent_{k}", lambda: gpu_workers.concurrent(k, base, p["duration_s"], 60 + 5 * k),
                   need_s=need + p["trial_min_s"])
        if got:
            rows.append({"processes": k, "ok": 0, **res["parts"].pop(f"concurrent_{k}")})
    res["parts"]["concurrent"] = {"duration_s": p["duration_s"], "rows": rows}
    spare = budget.left() - p["trial_min_s"] - 10
    part("compile", lambda: {"backend": p["compile_backend"], **gpu_workers.compiled(
        base, p["repeats"], min(p["compile_max_s"], spare), p["compile_backend"])},
         need_s=p["trial_min_s"] + p["compile_need_s"])
    ips = None
    if sp and "stage1" in sp:
        ips = (sp["stage1"]["ours"]["mean"], sp["stage2"]["ours"]["mean"])
    if args.dry_run:
        from gpu_check_data import write_synthetic

        tmp = Path(tempfile.mkdtemp(prefix="semtune-gpucheck-data-"))
        data_dir, models_dir, per_class = write_synthetic(tmp, 10, 2), tmp, 10
    else:
        data_dir, models_dir, per_class = DATA / "cifar10", DATA / "models", 5000
    part("trial", lambda: gpu_trial.run(data_dir, models_dir, budget.left() - 10, ips, args.dry_run, per_class),
         need_s=min(60, p["trial_min_s"]))
    if args.dry_run:
        shutil.rmtree(data_dir, ignore_errors=True)
    res["elapsed_s"] = time.monotonic() - budget.t0
    if torch.cuda.is_available():
        res["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return res


def table(res: dict) -> str:
    env, parts = res["environment"], res["parts"]
    lines = [f"semtune GPU check | {env['device']} | torch {env['torch']} (CUDA {env['cuda']}) | {env['date']}"
             + (" | DRY RUN (CPU, tiny, synthetic)" if env["dry_run"] else ""), ""]
    rows: list[tuple[str, str]] = []
    t = parts.get("cuda_tests")
    if t:
        rows.append(("cuda tests", t.get("status") or f"{t.get('passed', '?')} passed, {t.get('failed', '?')} failed, "
                     f"{t.get('skipped', '?')} skipped ({t['seconds']:.0f} s)"))
    sp = parts.get("speed", {})
    if "error" in sp:
        rows.append(("speed", sp["error"]))
    elif sp:
        pk = sp["peak_gflops"]
        rows.append(("matmul peak", f"{pk['best']:,.0f} GFLOP/s {pk['dtype']} ({pk['n']}x{pk['n']})"))
        for s in ("stage1", "stage2"):
            r = sp[s]
            met = "goal >= 3x met" if r["speedup"] >= 3 else "goal >= 3x NOT met"
            rows.append((f"{s} images/s", f"ours {r['ours']['mean']:,.0f} (MFU {r['ours']['mfu']:.1%}) | plain "
                         f"{r['plain']['mean']:,.0f} (MFU {r['plain']['mfu']:.1%}) | {r['speedup']:.2f}x, {met}"))
    for r in parts.get("concurrent", {}).get("rows", []):
        if "error" in r:
            rows.append((f"{r['processes']} trials at once", r["error"][:200]))
            continue
        agg = r["aggregate_images_per_s"]
        mem = (f" | {r['reserved_gib_per_trial']:.2f} GiB reserved, {r['device_used_gib_per_trial']:.2f} GiB device "
               "per trial") if "reserved_gib_per_trial" in r else ""
        rows.append((f"{r['processes']} trials at once", (f"{agg:,.0f} images/s aggregate (stage 1)" if agg else
                     f"failed: {r['workers'][0].get('error', '?')}") + f" | {r['ok']}/{r['processes']} ok" + mem))
    c = parts.get("compile")
    if c:
        if "error" in c:
            rows.append(("torch.compile", c["error"][:200]))
        else:
            for s in ("stage1", "stage2"):
                e, k = c[f"{s}_eager"], c[f"{s}_compiled"]
                rows.append((f"{s} compiled", f"{k['mean']:,.0f} vs eager {e['mean']:,.0f} images/s "
                             f"({k['mean'] / e['mean']:.2f}x; compile {k['warmup_s']:.0f} s, {c['backend']})"))
    tr = parts.get("trial")
    if tr:
        if tr.get("error"):
            rows.append(("trial", tr["error"][:200]))
        for m in tr.get("epochs", []):
            rows.append((f"trial epoch {m['epoch']} (stage {m['stage']})",
                         f"accuracy {m['accuracy']:.4f} | PSNR {m['psnr']:.2f} dB | {m['epoch_s']:.1f} s"
                         + (f" | final accuracy {m['final_accuracy']:.4f}" if m.get("final_accuracy") is not None else "")))
        if "projected_full_h" in tr:
            rows.append(("trial 200 + 100 epochs", f"projected {tr['projected_full_h']:.2f} h per trial"))
        if tr.get("stopped"):
            rows.append(("trial", tr["stopped"]))
    for name, why in res["skipped"].items():
        rows.append((f"skipped: {name}", why))
    rows.append(("total", f"{res['elapsed_s']:.0f} s of {res['budget_s']:.0f} s budget"))
    width = max(len(a) for a, _ in rows) + 2
    lines += [f"{a:<{width}}{b}" for a, b in rows]
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="every part on CPU, tiny sizes, synthetic data "
                    "(automatic without CUDA)")
    ap.add_argument("--budget-s", type=float, default=None, help="wall-clock budget (450 on GPU, 55 dry)")
    ap.add_argument("--out", type=Path, default=None, help="also copy the JSON (and the table) here")
    ap.add_argument("--json", type=Path, default=None, help="write the JSON exactly here instead")
    args = ap.parse_args(argv)
    note = ensure_packages()  # before torch: it imports typing_extensions, which pydantic may need newer
    if not args.dry_run:
        import torch

        args.dry_run = not torch.cuda.is_available()
        if args.dry_run:
            print("no CUDA device: running the dry run", flush=True)
    res = run_all(args, note)
    stamp = res["environment"]["date"].replace(":", "").replace("+0000", "Z")
    path = args.json or HERE / "results" / f"gpu_check-{'dry-' if args.dry_run else ''}{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = table(res)
    res["table"] = text
    path.write_text(json.dumps(res, indent=1, default=str))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / path.name).write_text(path.read_text())
        (args.out / "gpu_check.txt").write_text(text + "\n")
    print(f"results: {path}\n")
    print(text)
    return res


if __name__ == "__main__":
    main()
