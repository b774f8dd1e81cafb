"""How much of the front each search strategy finds, for how many epochs: replayed studies on one table.

    python -m bench.replay                      # every strategy, 10 seeds -> bench/results/replay.json
    python -m bench.replay --seeds 3 --trials 12 --strategies moasha+nsga2,random   # a quick look

Every strategy runs as a real semtune study (``run_study``: Ray Tune, the arm router, Optuna, the
schedulers, PRUNED bookkeeping) whose trials are served from ``bench/data/curves.parquet``
(``replay:``, :mod:`trainables.replay`) with MLflow off (``mlflow: false``), so all of them face the
same ground truth. The reference is the full grid without pruning (the paper's approach): every
configuration of an arm at its last epoch, read from the table, since that is what the grid would
train. Syne Tune's MOASHA runs on the same table through Syne Tune's own simulator
(:mod:`bench.syne_peer`).

Per study and arm: the hypervolume of the completed trials' front (reference point: the spec's
``report`` section) over the grid's, and the epochs it ran over the grid's; a seed's numbers are the
mean over arms; each strategy reports the median and interquartile range over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "bench" / "data" / "curves.parquet"
RESULTS = ROOT / "bench" / "results"

# semtune's default rungs: the first at stage 2's first epoch (PrunerSpec.first_rung), eta 3.
MOASHA = {"name": "moasha", "reduction_factor": 3}
# What a Ray Tune user builds by hand: ASHA (its default grace period of 1) on a weighted sum
# (accuracy in [0, 1], PSNR in dB).
ASHA_WEIGHTED = {"name": "successive_halving", "grace_epochs": 1, "reduction_factor": 3,
                 "scalarization": {"accuracy": 1.0, "psnr": 0.02}}


@dataclass(frozen=True)
class Strategy:
    """A sampler and a pruner; ``trial_share`` scales the trial budget (1 = ``--trials``)."""

    sampler: dict
    pruner: dict
    trial_share: float = 1.0


# Without pruning a trial costs its whole budget, so unpruned random search gets 0.9 of the trials:
# about the epochs MO-ASHA spends on the full number with its rung one epoch into stage 2 (5.4 of
# the recorded table's 6 epochs per trial; measured in the results, not assumed).
STRATEGIES: dict[str, Strategy] = {
    "moasha+nsga2": Strategy({"name": "nsga2", "population_size": 8}, MOASHA),
    "moasha+tpe": Strategy({"name": "tpe"}, MOASHA),  # semtune's default: Optuna's 10 start-up trials
    "moasha+gp": Strategy({"name": "gp", "n_startup_trials": 8}, MOASHA),
    "moasha+random": Strategy({"name": "random"}, MOASHA),
    "asha-weighted+random": Strategy({"name": "random"}, ASHA_WEIGHTED),
    "random": Strategy({"name": "random"}, {"name": "none"}, trial_share=0.9),
}
# Opt-in (named in --strategies): semtune's earlier default, MO-ASHA with rungs from the first epoch
# (epochs 1 and 3 of the table's 4 + 2, inside stage 1), and unpruned random search given about the
# epochs that costs (2.6 of 6 per trial).
MOASHA_FROM_EPOCH1 = {"name": "moasha", "grace_epochs": 1, "reduction_factor": 3}
OPT_IN: dict[str, Strategy] = {
    "moasha-epoch1+tpe": Strategy({"name": "tpe"}, MOASHA_FROM_EPOCH1),
    "moasha-epoch1+random": Strategy({"name": "random"}, MOASHA_FROM_EPOCH1),
    "random-0.45": Strategy({"name": "random"}, {"name": "none"}, trial_share=0.45),
}
KNOWN = {**STRATEGIES, **OPT_IN}
SYNE = "syne-tune-moasha"  # Syne Tune's MOASHA (random sampling), its own simulated backend
GRID = "grid"  # every configuration to the end, no pruning: the reference


def reference_point() -> tuple[float, float]:
    """The hypervolume reference point of a study's report (chance accuracy, 10 dB), as every study has it."""
    from orchestrator.spec.sections import ReportSpec

    return ReportSpec().reference_accuracy, ReportSpec().reference_psnr


def table_meta(table: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from bench.curves import CURVES_META_KEY

    return json.loads(pq.read_schema(table).metadata[CURVES_META_KEY])


def proposed_rows(table: Path) -> list[dict[str, Any]]:
    """The table's rows of the proposed method (what every per-arm figure below is computed from)."""
    import pyarrow.parquet as pq

    return [r for r in pq.read_table(table).to_pylist() if r["method"] == "proposed"]


def grid_reference(rows: list[dict], reference: tuple[float, float]) -> dict[str, dict[str, float]]:
    """Per arm of the proposed method: the full grid's hypervolume, epochs and configurations."""
    from orchestrator.pareto import hypervolume

    out = {}
    for arm in sorted({r["arm"] for r in rows}):
        mine = [r for r in rows if r["arm"] == arm]
        final = [(r["accuracy"], r["psnr"]) for r in mine if r["epoch"] == r["epochs_total"]]
        hv = hypervolume(final, reference)
        out[arm] = {"hv": hv, "epochs": len(mine), "configurations": len(final),
                    "best_single_hv_fraction": round(max(hypervolume([f], reference) for f in final) / hv, 4)}
    return out


def table_noise(rows: list[dict], meta: dict) -> dict[str, dict[str, float]]:
    """Per arm of the proposed method: how far its configurations' final accuracies spread, against the
    binomial standard error of one accuracy measured on the table's tuning images. When the two are
    close, which configurations make the grid's front is largely chance, and no search can aim at it."""
    dataset = meta["spec"]["dataset"]
    if dataset.get("name", "cifar10") != "cifar10" or "tune_per_class" not in dataset:
        return {}
    images = dataset["tune_per_class"] * 10  # CIFAR-10's ten classes
    final = [r for r in rows if r["epoch"] == r["epochs_total"]]
    out = {}
    for arm in sorted({r["arm"] for r in final}):
        acc = np.array([r["accuracy"] for r in final if r["arm"] == arm])
        p = float(acc.mean())
        out[arm] = {"tuning_images": images, "accuracy_mean": round(p, 4),
                    "accuracy_sd_across_configurations": round(float(acc.std(ddof=1)), 4),
                    "accuracy_standard_error": round(math.sqrt(p * (1 - p) / images), 4)}
    return out


def front_foresight(rows: list[dict]) -> dict[str, dict[int, list[float]]]:
    """Per arm of the proposed method and epoch: for each member of the grid's final front, the share of
    configurations that rank at or ahead of it (Pareto rank) after that epoch. A pruner that keeps the
    top 1/η at an epoch can only keep a front member whose share there is below 1/η."""
    from orchestrator.pareto import nondominated_mask, pareto_ranks

    out = {}
    for arm in sorted({r["arm"] for r in rows}):
        scores = {(r["config_id"], r["epoch"]): (r["accuracy"], r["psnr"]) for r in rows if r["arm"] == arm}
        configs = sorted({c for c, _ in scores})
        last = max(e for _, e in scores)
        final = np.array([scores[(c, last)] for c in configs])
        front = np.flatnonzero(nondominated_mask(final))
        out[arm] = {}
        for epoch in range(1, last + 1):
            ranks = pareto_ranks(np.array([scores[(c, epoch)] for c in configs]))
            out[arm][epoch] = [round(float(np.mean(ranks <= ranks[i])), 3) for i in front]
    return out


def study_doc(table: Path, meta: dict, strategy: Strategy, seed: int, trials: int, storage: Path, name: str) -> dict:
    """The recorded grid study, replayed: its conditions, space and budget, this strategy and seed."""
    spec = meta["spec"]
    return {
        "name": name, "methods": ["proposed"], "replay": str(table), "mlflow": False, "seed": seed,
        "dataset": {k: v for k, v in spec["dataset"].items() if k not in ("root", "search_dirs")},
        "trial": {**spec["trial"], "classifier": {**spec["trial"]["classifier"], "checkpoint": None,
                                                  "allow_untrained": True, "search_dirs": []}},
        "conditions": spec["conditions"], "search_space": spec["search_space"],
        "sampler": strategy.sampler, "pruner": strategy.pruner,
        "budget": {"trials_per_condition": max(2, round(trials * strategy.trial_share)), "max_concurrent": 4,
                   "stage1_epochs": spec["budget"]["stage1_epochs"], "stage2_epochs": spec["budget"]["stage2_epochs"]},
        "resources": {"cpu": 0.5}, "storage_path": str(storage),
    }


def arm_results(folder: Path, epochs_total: int, reference: tuple[float, float]) -> dict[str, dict[str, Any]]:
    """Per arm, from the study's Optuna storage (what the search itself knows): the completed trials'
    hypervolume, the epochs its trials ran (completed: the budget; pruned: the epoch they stopped
    at; failed duplicates: none), and the trace (epochs so far, hypervolume so far) in finishing order."""
    import optuna

    from orchestrator.pareto import hypervolume
    from orchestrator.study.folder import StudyFolder

    state = optuna.trial.TrialState
    storage = optuna.storages.RDBStorage(StudyFolder(folder).optuna_url)
    out = {}
    for summary in optuna.get_all_study_summaries(storage):
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)
        finished = sorted((t for t in trials if t.state in (state.COMPLETE, state.PRUNED)),
                          key=lambda t: t.datetime_complete)
        epochs, points, trace = 0, [], []
        for t in finished:
            if t.state == state.COMPLETE:
                epochs += epochs_total
                points.append(tuple(t.values))
            else:
                epochs += int(t.user_attrs.get("pruned_at_epoch", 0))
            trace.append((epochs, hypervolume(points, reference) if points else 0.0))
        arm = summary.study_name.split("/", 1)[1]
        out[arm] = {"hv": trace[-1][1] if trace else 0.0, "epochs": epochs, "trace": trace, "trials": len(finished)}
    return out


def run_strategy(name: str, strategy: Strategy, seed: int, trials: int, table: Path, meta: dict,
                 workdir: Path) -> dict[str, dict[str, Any]]:
    """One replayed study of ``strategy``; its per-arm results."""
    import contextlib
    import io

    import yaml

    from orchestrator.spec import load_spec
    from orchestrator.study.runner import run_study

    doc = study_doc(table, meta, strategy, seed, trials, workdir, f"{name.replace('+', '-')}-s{seed}")
    path = workdir / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    with contextlib.redirect_stderr(io.StringIO()):  # the progress table of 60 studies helps no one
        outcome = run_study(load_spec(path))
    epochs_total = doc["budget"]["stage1_epochs"] + doc["budget"]["stage2_epochs"]
    results = arm_results(outcome.folder, epochs_total, reference_point())
    shutil.rmtree(outcome.folder, ignore_errors=True)
    return results


def default_rungs(meta: dict) -> dict[str, float]:
    """The grace period and η of semtune's default MO-ASHA on the table's budget, for the outside peer."""
    from orchestrator.spec.sections import PrunerSpec

    budget = meta["spec"]["budget"]
    stage1, epochs = budget["stage1_epochs"], budget["stage1_epochs"] + budget["stage2_epochs"]
    pruner = PrunerSpec(**MOASHA)
    return {"grace_epochs": pruner.first_rung(stage1, epochs), "reduction_factor": pruner.reduction_factor}


def run_syne(seed: int, trials: int, table: Path, meta: dict, grid: dict,
             reference: tuple[float, float]) -> dict[str, dict]:
    """Syne Tune's MOASHA with the rungs of semtune's default, so the two differ only in their code."""
    from bench.syne_peer import run_moasha
    from orchestrator.pareto import hypervolume

    out = {}
    for arm in grid:
        r = run_moasha(str(table), arm, seed=seed, max_trials=trials, **default_rungs(meta))
        out[arm] = {"hv": hypervolume(r["completed"], reference) if r["completed"] else 0.0, "epochs": r["epochs"],
                    "trace": [], "trials": r["trials"]}
    return out


def fractions(results: dict[str, dict], grid: dict[str, dict]) -> tuple[float, float]:
    """(hv fraction, epoch fraction) of one study: the mean over arms of each over the grid's."""
    hv = np.mean([results[a]["hv"] / grid[a]["hv"] for a in grid])
    ep = np.mean([results[a]["epochs"] / grid[a]["epochs"] for a in grid])
    return float(hv), float(ep)


def hv_curve(runs: list[dict[str, dict]], grid: dict[str, dict], at: np.ndarray) -> list[float]:
    """Median over seeds of the hypervolume fraction reached by each epoch fraction in ``at``."""
    per_seed = []
    for results in runs:
        arms = []
        for arm, ref in grid.items():
            trace = results[arm]["trace"]
            e = np.array([0.0] + [t[0] / ref["epochs"] for t in trace])
            h = np.array([0.0] + [t[1] / ref["hv"] for t in trace])
            idx = np.searchsorted(e, at, side="right") - 1
            arms.append(h[idx])
        per_seed.append(np.mean(arms, axis=0))
    return np.median(per_seed, axis=0).round(4).tolist()


def cut_at(curve: list[float], at: np.ndarray, reached: float) -> list[float | None]:
    """The curve up to the largest epoch fraction a seed reached; nothing is claimed beyond it."""
    return [y if x <= reached else None for x, y in zip(at, curve)]


def default_strategy() -> str:
    """The strategy that a study gets when it names no sampler and no pruner."""
    from orchestrator.spec.sections import PrunerSpec, SamplerSpec

    sampler, pruner = SamplerSpec().name, PrunerSpec().name
    return next(n for n, s in STRATEGIES.items() if s.sampler["name"] == sampler and s.pruner["name"] == pruner)


def machine() -> dict[str, Any]:
    from bench.curves import machine as described

    return {**described(), "load_average_at_start": os.getloadavg()[0]}


def _start_ray() -> None:
    """A Ray of this process's own (``address="local"``: never a cluster left running on the machine),
    and one torch thread: the GP sampler's many small tensor operations, in two processes of two
    threads each on 2 cores, made its studies 1.8x slower (4 seeds: 340 s of studies, 190 s with one)."""
    import ray
    import torch

    torch.set_num_threads(1)
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="ERROR")


def _one_study(name: str, seed: int, trials: int, table: Path, meta: dict, grid: dict, workdir: Path):
    """``(name, seed, per-arm results, seconds)`` of one study (or one Syne Tune run)."""
    t0 = time.perf_counter()
    if name == SYNE:
        results = run_syne(seed, trials, table, meta, grid, reference_point())
    else:
        results = run_strategy(name, KNOWN[name], seed, trials, table, meta, workdir)
    return name, seed, results, time.perf_counter() - t0


def run_studies(names: list[str], seeds: int, trials: int, table: Path, meta: dict, grid: dict,
                jobs: int) -> tuple[dict[str, list[dict]], dict[str, float]]:
    """Every (strategy, seed) study, in ``jobs`` processes with a Ray each: a replayed study keeps one
    core busy with Tune's driver loop, so two of them share a 2-core machine well. Per strategy: its
    results by seed, and the seconds its studies took (summed, whichever process ran them)."""
    import concurrent.futures
    import multiprocessing

    tasks = [(name, seed) for name in names for seed in range(seeds)]
    raw: dict[str, list] = {name: [None] * seeds for name in names}
    seconds = dict.fromkeys(names, 0.0)
    with tempfile.TemporaryDirectory(prefix="semtune-replay-") as tmp:
        args = (trials, table, meta, grid, Path(tmp))
        if jobs == 1:
            _start_ray()
            done = (_one_study(name, seed, *args) for name, seed in tasks)
        else:
            pool = concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                                          initializer=_start_ray)
            done = concurrent.futures.as_completed([pool.submit(_one_study, n, s, *args) for n, s in tasks])
            done = (f.result() for f in done)
        for name, seed, results, took in done:
            raw[name][seed] = results
            seconds[name] += took
            if all(r is not None for r in raw[name]):
                print(f"  {name}: {seeds} seeds, {seconds[name]:.0f} s of studies", file=sys.stderr)
        if jobs > 1:
            pool.shutdown()
    return raw, {name: round(s, 1) for name, s in seconds.items()}


def run(seeds: int, trials: int, names: list[str], table: Path, out: Path, figure: Path | None,
        jobs: int = 1) -> dict:
    import ray

    meta = table_meta(table)
    reference = reference_point()
    rows = proposed_rows(table)
    grid = grid_reference(rows, reference)
    started = time.perf_counter()
    raw, seconds = run_studies(names, seeds, trials, table, meta, grid, jobs)
    if ray.is_initialized():
        ray.shutdown()
    strategies = {GRID: {"median_hv_fraction": 1.0, "iqr_hv_fraction": [1.0, 1.0], "median_epoch_fraction": 1.0}}
    curves = {}
    at = np.linspace(0, 0.5, 26)
    for name, runs in raw.items():
        hv, ep = np.array([fractions(r, grid) for r in runs]).T
        strategies[name] = {
            "median_hv_fraction": round(float(np.median(hv)), 4),
            "iqr_hv_fraction": [round(float(q), 4) for q in np.percentile(hv, [25, 75])],
            "median_epoch_fraction": round(float(np.median(ep)), 4),
            "per_seed": {"hv_fraction": hv.round(4).tolist(), "epoch_fraction": ep.round(4).tolist()},
            "seconds": seconds[name],
        }
        if name != SYNE:
            curves[name] = cut_at(hv_curve(runs, grid, at), at, float(ep.max()))
    result = {
        "reference": GRID, "seeds": seeds, "strategies": strategies, "default": default_strategy(),
        "trials_per_arm": trials, "grid": grid, "table_noise": table_noise(rows, meta),
        "front_foresight": front_foresight(rows),
        "hv_vs_epochs": {"epoch_fraction": at.round(3).tolist(), **curves},
        "table": {"file": str(table.relative_to(ROOT) if table.is_relative_to(ROOT) else table),
                  "recorded": meta["recorded"], "machine": meta["machine"],
                  "configurations": meta["configurations"]},
        "machine": machine(), "jobs": jobs, "seconds": round(time.perf_counter() - started, 1),
        "command": "python -m bench.replay " + " ".join(sys.argv[1:]),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    if figure is not None:
        plot(result, figure)
    return result


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = result["hv_vs_epochs"]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, ys in curves.items():
        if name != "epoch_fraction":
            ys = [np.nan if y is None else y for y in ys]
            ax.step(curves["epoch_fraction"], ys, where="post", label=name, lw=2 if name == result["default"] else 1)
    ax.set_xlim(0, 0.4)
    ax.set_ylim(0, 1.02)
    ax.axhline(0.95, color="grey", ls=":", lw=1)
    ax.axvline(0.33, color="grey", ls=":", lw=1)
    ax.set_xlabel("epochs consumed / full grid's epochs")
    ax.set_ylabel("hypervolume / full grid's (median over seeds)")
    arms = result["grid"]
    ax.set_title(f"Replayed search: {len(arms)} arms of {max(a['configurations'] for a in arms.values())} recorded "
                 f"configurations, {result['seeds']} seeds, {result['trials_per_arm']} trials per arm", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table_lines(result: dict) -> list[str]:
    lines = [f"{'strategy':24} {'hv fraction (median)':>21} {'IQR':>15} {'epoch fraction':>15} {'seconds':>8}"]
    for name, s in result["strategies"].items():
        mark = " (default)" if name == result["default"] else ""
        lines.append(f"{name + mark:24} {s['median_hv_fraction']:21.3f} "
                     f"{'[%.3f, %.3f]' % tuple(s['iqr_hv_fraction']):>15} {s['median_epoch_fraction']:15.3f} "
                     f"{s.get('seconds', 0):8.0f}")
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--trials", type=int, default=36, help="trials per arm of the pruned strategies")
    p.add_argument("--strategies", default=",".join([*STRATEGIES, SYNE]),
                   help=f"comma-separated; also opt-in: {', '.join(OPT_IN)}")
    p.add_argument("--table", type=Path, default=TABLE)
    p.add_argument("--out", type=Path, default=RESULTS / "replay.json")
    p.add_argument("--figure", type=Path, default=RESULTS / "replay_hv.png")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="studies run at once, each process with its own Ray (default: 2, or 1 on one core)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n for n in args.strategies.split(",") if n]
    unknown = [n for n in names if n not in KNOWN and n != SYNE]
    if unknown:
        print(f"error: --strategies: unknown {unknown}; known: {', '.join([*KNOWN, SYNE])}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"error: --jobs: at least 1, got {args.jobs}", file=sys.stderr)
        return 2
    result = run(args.seeds, args.trials, names, args.table.resolve(), args.out, args.figure, args.jobs)
    print("\n".join(table_lines(result)))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
