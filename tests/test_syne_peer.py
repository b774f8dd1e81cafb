"""bench/syne_peer.py: Syne Tune's MOASHA replayed on a small learning-curve table through Syne Tune's simulator."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("syne_tune")

from bench.syne_peer import run_moasha  # noqa: E402

EPOCHS = 6
PROPOSED = "snr20_kn1-12/proposed"
DEEPJSCC = "snr20_kn1-12/deepjscc_ft"


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """60 proposed configurations (alpha1 × alpha2 × tau, proj_dim fixed) and 4 deepjscc_ft ones (alpha2 only),
    with rising noisy curves and 2–8 s epochs, in the long format ``python -m bench.curves`` writes."""
    rng = np.random.default_rng(0)
    grids = {PROPOSED: {"alpha1": [0.9, 0.97, 0.99, 0.997, 0.999], "alpha2": [0.8, 0.9, 0.97, 0.99],
                        "tau": [0.05, 0.2, 1.0], "proj_dim": [16]},
             DEEPJSCC: {"alpha2": [0.8, 0.9, 0.97, 0.99]}}
    rows, config_id = [], 0
    for arm, grid in grids.items():
        for values in itertools.product(*grid.values()):
            params = {"alpha1": None, "alpha2": None, "tau": None, "proj_dim": None, **dict(zip(grid, values))}
            acc_end, psnr_end, speed = rng.uniform(0.3, 0.8), rng.uniform(14, 24), rng.uniform(0.3, 1.5)
            for epoch in range(1, EPOCHS + 1):
                frac = 1 - np.exp(-speed * epoch)
                rows.append({"config_id": config_id, "arm": arm, "condition": arm.split("/")[0],
                             "method": arm.split("/")[1], **params, "epoch": epoch, "epochs_total": EPOCHS,
                             "accuracy": float(np.clip(0.1 + (acc_end - 0.1) * frac + rng.normal(0, 0.01), 0, 1)),
                             "psnr": float(8 + (psnr_end - 8) * frac + rng.normal(0, 0.2)),
                             "seconds": float(rng.uniform(2, 8))})
            config_id += 1
    path = tmp_path_factory.mktemp("curves") / "curves.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def finals(path, arm):
    df = pq.read_table(path).to_pandas()
    last = df[(df["arm"] == arm) & (df["epoch"] == EPOCHS)]
    return {(a, p) for a, p in zip(last["accuracy"], last["psnr"])}


def test_trial_budget_prunes_and_completes_real_rows(table):
    out = run_moasha(str(table), PROPOSED, seed=0, max_trials=30)
    assert out["trials"] == 30
    assert out["completed"], "the first trial to reach each rung always continues"
    assert {tuple(point) for point in out["completed"]} <= finals(table, PROPOSED)
    # every trial reports epoch 1, each completed one 5 more; the pruned ones stop before the end
    assert out["trials"] + (EPOCHS - 1) * len(out["completed"]) <= out["epochs"] < out["trials"] * EPOCHS
    again = run_moasha(str(table), PROPOSED, seed=0, max_trials=30)
    assert {k: again[k] for k in ("epochs", "trials", "completed")} == \
        {k: out[k] for k in ("epochs", "trials", "completed")}
    assert out["seconds"] < 20


def test_epoch_budget_and_single_parameter_arm(table):
    out = run_moasha(str(table), PROPOSED, seed=1, max_epochs=20, n_workers=2)
    assert 20 <= out["epochs"] <= 21  # results arriving in the same poll may overshoot by n_workers - 1
    assert out["trials"] <= out["epochs"] + 2  # trials just started when the budget ran out have no epoch yet
    out = run_moasha(str(table), DEEPJSCC, seed=0, max_trials=10)
    assert out["trials"] == 10 and {tuple(p) for p in out["completed"]} <= finals(table, DEEPJSCC)
