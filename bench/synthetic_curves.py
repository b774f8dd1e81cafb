"""Made-up learning-curve tables in the shape ``python -m bench.curves`` writes.

For the replay tests (small, instant) and the scale benchmark (:mod:`bench.scale`: more conditions
and configurations than a recording on 2 cores can afford). Each configuration's curves rise
towards a final value that depends on its parameters, with crossings between configurations (a
good early epoch does not always mean a good end), so that pruning and sampling decisions matter.
Deterministic for a given seed.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.spec.conditions import Condition

GRID = {"alpha1": [0.9, 0.97, 0.99, 0.997], "alpha2": [0.8, 0.9, 0.97], "tau": [0.05, 0.2, 1.0], "proj_dim": [16, 64]}
USED = {"proposed": ("alpha1", "alpha2", "tau", "proj_dim"), "deepjscc_ft": ("alpha2",)}


def write_curve_table(path: Path, conditions=((20.0, 1 / 12), (20.0, 1 / 3)), methods=("proposed", "deepjscc_ft"),
                      epochs: int = 6, seed: int = 0, grid: dict[str, list] | None = None) -> Path:
    """``grid``: the values of each searched parameter (default :data:`GRID`)."""
    grid = GRID if grid is None else grid
    rng = np.random.default_rng(seed)
    rows, config_id = [], 0
    for snr, kn in conditions:
        condition = Condition(snr, kn).name
        for method in methods:
            names = USED[method]
            for values in itertools.product(*(grid[n] for n in names)):
                params = dict(zip(names, values))
                a1, a2 = params.get("alpha1", 0.95), params["alpha2"]
                psnr_end = 14 + 10 * kn + 6 * (a1 - 0.9) * 10 + 3 * (a2 - 0.8) * 5 + rng.normal(0, 0.5)
                acc_end = 0.7 - 2.5 * (a2 - 0.8) - 1.5 * (a1 - 0.9) + 0.05 * (params.get("tau", 0.2) < 0.5) \
                    + rng.normal(0, 0.03)
                speed = rng.uniform(0.3, 1.5)  # slow starters can end on top
                for epoch in range(1, epochs + 1):
                    frac = 1 - np.exp(-speed * epoch)
                    rows.append({
                        "config_id": config_id, "arm": f"{condition}/{method}", "condition": condition,
                        "method": method,
                        "channel_model": "awgn", "snr_db": snr, "kn": kn,
                        **{n: params.get(n) for n in grid},
                        "epoch": epoch, "stage": 1 if epoch <= epochs * 2 // 3 else 2, "epochs_total": epochs,
                        "accuracy": float(np.clip(0.1 + (acc_end - 0.1) * frac, 0, 1)),
                        "psnr": float(8 + (psnr_end - 8) * frac), "ssim": float(0.3 * frac),
                        "loss": float(1 / epoch), "seconds": 1.0,
                    })
                config_id += 1
    table = pa.Table.from_pylist(rows)
    meta = {  # what bench.curves writes, for a grid study of this shape
        "spec": {"dataset": {"tune_per_class": 5}, "methods": list(methods),
                 "trial": {"codec": {"width": 8}, "classifier": {"checkpoint": None, "allow_untrained": True}},
                 "conditions": {"snr_db": sorted({c[0] for c in conditions}),
                                "kn": list(dict.fromkeys(c[1] for c in conditions))},
                 "search_space": {n: {"choices": v} for n, v in grid.items()},
                 "budget": {"trials_per_condition": 10, "stage1_epochs": epochs * 2 // 3,
                            "stage2_epochs": epochs - epochs * 2 // 3}},
        "recorded": "synthetic", "machine": {}, "configurations": config_id,
    }
    pq.write_table(table.replace_schema_metadata({b"semtune.curves": json.dumps(meta).encode()}), path)
    return path
