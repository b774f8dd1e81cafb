"""Record the learning-curve table the replay benchmark serves: every configuration of a grid study,
every arm (condition × method), trained to its full budget with no pruning, each epoch's scores kept.

    python -m bench.curves                                  # bench/curves.yaml -> bench/data/curves.parquet
    python -m bench.curves --spec S --out F --workers 2     # another grid; N worker processes

The trials are the real ones: the same ``TrialConfig`` a study's trainable builds
(:func:`orchestrator.tune.trainable.trial_config`), run by :func:`trainables.training.run_trial`,
without Ray, Optuna or MLflow. Finished configurations are appended to ``<out>.partial.jsonl`` as
they end, so an interrupted recording continues where it stopped. The schema is in bench/README.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import itertools
import json
import multiprocessing
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trainables.replay import PARAMS  # the searched hyperparameters a row may carry

CURVES_META_KEY = b"semtune.curves"  # Parquet schema metadata: how the table was made (JSON)
ROOT = Path(__file__).resolve().parent.parent


def grid_configs(spec) -> list[dict[str, Any]]:
    """Every Tune config the grid study asks for: arm × the product of its method's choices."""
    from orchestrator.spec import study_arms
    from orchestrator.tune.search import grid_of

    out = []
    for arm in study_arms(spec):
        grid = grid_of(spec.search_space, arm.method)
        for values in itertools.product(*grid.values()):
            out.append({**dict(zip(grid, values)), **arm.as_config()})
    return out


class _Timed:
    """A Reporter that keeps each epoch's metrics with the seconds since the previous report."""

    def __init__(self):
        self.rows: list[dict[str, float]] = []
        self._last = time.perf_counter()

    def report(self, metrics, checkpoint_dir):
        now = time.perf_counter()
        self.rows.append({**{k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                          "seconds": now - self._last})
        self._last = now

    def checkpoint_to_resume(self):
        return None


def _record_one(spec_path: str, config: dict[str, Any]) -> list[dict[str, Any]]:
    from orchestrator.spec import base_trial_doc, load_spec
    from orchestrator.tune.trainable import TrialContext, trial_config
    from trainables.training import run_trial

    spec = load_spec(spec_path)
    context = TrialContext(base_docs={m: base_trial_doc(spec, m) for m in spec.methods}, study=None)
    cfg = trial_config(context, config)
    reporter = _Timed()
    run_trial(cfg, reporter)
    keys = {k: config.get(k) for k in ("arm", "condition", "method", "channel_model", "snr_db", "kn", *PARAMS)}
    return [{**keys, **row} for row in reporter.rows]


def machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}


def record(spec_path: Path, out: Path, workers: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import orchestrator
    from orchestrator.spec import load_spec
    from orchestrator.spec.study import science_dump

    spec = load_spec(spec_path)
    configs = grid_configs(spec)
    partial = out.with_name(out.name + ".partial.jsonl")
    done: dict[str, list] = {}
    if partial.exists():
        for line in partial.read_text().splitlines():
            entry = json.loads(line)
            done[entry["key"]] = entry["rows"]
    todo = [c for c in configs if json.dumps(c, sort_keys=True) not in done]
    print(f"{len(configs)} configurations, {len(done)} recorded before, {len(todo)} to train "
          f"with {workers} worker(s)", file=sys.stderr)
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool, \
            open(partial, "a") as log:
        futures = {pool.submit(_record_one, str(spec_path), c): c for c in todo}
        for i, fut in enumerate(cf.as_completed(futures), 1):
            key = json.dumps(futures[fut], sort_keys=True)
            done[key] = fut.result()
            log.write(json.dumps({"key": key, "rows": done[key]}) + "\n")
            log.flush()
            if i % 10 == 0 or i == len(todo):
                print(f"  {i}/{len(todo)} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    rows = []
    for config_id, c in enumerate(configs):
        for row in done[json.dumps(c, sort_keys=True)]:
            rows.append({"config_id": config_id, **row})
    table = pa.Table.from_pylist(rows)
    meta = {"spec": science_dump(spec), "spec_file": str(spec_path.relative_to(ROOT) if spec_path.is_relative_to(ROOT)
                                                           else spec_path),
            "semtune_version": orchestrator.__version__, "machine": machine(),
            "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": "python -m bench.curves " + " ".join(sys.argv[1:]),
            "configurations": len(configs), "train_seconds": round(sum(r["seconds"] for r in rows), 1)}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), CURVES_META_KEY: json.dumps(meta).encode()})
    pq.write_table(table, out, compression="zstd")
    partial.unlink()
    print(f"wrote {out}: {len(configs)} configurations, {table.num_rows} epochs, "
          f"{out.stat().st_size / 1024:.0f} KiB", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.curves", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "bench" / "curves.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "data" / "curves.parquet")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    record(args.spec.resolve(), args.out.resolve(), args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
