"""A made-up but realistic trials table, to test the writers and preview a report without a study.

Numbers loosely follow the paper's curves (accuracy and PSNR rise with k/n, DeepJSCC collapses
in accuracy at small k/n, 5 dB costs a few points); nothing here is a result.
``python tests/report_fixtures.py OUT_DIR`` writes the preview report.
"""

from __future__ import annotations

import math
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from trainables.bandwidth import latent_channels

from orchestrator.reporting.schema import ReportMeta, conform

CONDITIONS = ((20.0, 1 / 48), (20.0, 1 / 12), (20.0, 1 / 2.5), (5.0, 1 / 12))
# (accuracy at k/n=1/48, at 1/2.5), (PSNR at 1/48, at 1/2.5), SNR 20 dB
_CURVES = {
    "proposed": ((0.876, 0.940), (24.0, 38.7)),
    "deepjscc": ((0.320, 0.940), (25.5, 39.3)),
    "deepjscc_ft": ((0.800, 0.940), (25.0, 38.5)),
    "deepsc": ((0.866, 0.910), (23.0, 36.9)),
}
_FAILURES = ("CUDA out of memory while allocating the stage-2 optimizer", "loss became NaN in stage 1")


def condition_name(snr_db: float, kn: float) -> str:
    return f"snr{snr_db:g}_kn1-{1 / kn:g}"


def synthetic_trials(seed: int = 0, trials_per_method: int = 5) -> pd.DataFrame:
    """One row per trial in the schema of :mod:`.schema`, all four statuses represented."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
    rows = []
    for snr, kn in CONDITIONS:
        achieved = latent_channels(kn, 32, 32).kn_achieved
        t = math.log(kn * 48) / math.log(48 / 2.5)  # 0 at k/n = 1/48, 1 at 1/2.5
        for method, ((a0, a1), (p0, p1)) in _CURVES.items():
            for i in range(trials_per_method):
                rows.append(
                    _trial(rng, len(rows), t0, snr, kn, achieved, method, i, a0 + (a1 - a0) * t, p0 + (p1 - p0) * t)
                )
    df = pd.DataFrame(rows)
    first = df.index[(df["condition"] == condition_name(20.0, 1 / 12)) & (df["method"] == "proposed")]
    df.loc[first[1], ["accuracy", "psnr"]] = df.loc[first[0], ["accuracy", "psnr"]].to_numpy()  # a tie, both completed
    return conform(df)


def _trial(rng, index, t0, snr, kn, achieved, method, i, acc, psnr) -> dict:
    staged = method in ("proposed", "deepjscc_ft", "deepsc")
    alpha1 = alpha1_choice = alpha2 = tau = proj_dim = None
    if method == "proposed":
        alpha1_choice = "kn" if i % 3 == 0 else f"{rng.choice([0.1, 0.3, 0.5, 0.7]):g}"
        alpha1 = achieved if alpha1_choice == "kn" else float(alpha1_choice)
        tau, proj_dim = float(rng.choice([0.07, 0.1, 0.2, 0.5])), int(rng.choice([16, 32, 64]))
    if staged:
        alpha2 = float(rng.choice([0.0, 0.1, 0.3]))
    trade = (alpha1 if alpha1 is not None else 0.3) - 0.3  # more L_rec weight: sharper, less accurate
    acc = acc - 0.05 * trade - (0.05 if snr < 10 else 0.0) + rng.normal(0, 0.006)
    psnr = psnr + 4.0 * trade - (6.0 if snr < 10 else 0.0) + rng.normal(0, 0.4)
    total = 30 if staged else 20
    status = (
        "completed"
        if i < 2
        else str(rng.choice(["completed", "pruned", "failed", "running"], p=[0.45, 0.4, 0.1, 0.05]))
    )
    run, pruned_at, reason = total, None, None
    if status == "pruned":
        run = pruned_at = int(rng.choice([5, 10, 15]))
        acc, psnr = acc - 0.15 * (1 - run / total), psnr - 5.0 * (1 - run / total)
    elif status in ("failed", "running"):
        run = int(rng.integers(1, total))
        acc = psnr = float("nan")
        reason = str(rng.choice(_FAILURES)) if status == "failed" else None
    start = t0 + pd.Timedelta(minutes=7 * index + int(rng.integers(0, 5)))
    run_id = rng.bytes(16).hex()
    url = f"http://127.0.0.1:5000/#/experiments/1/runs/{run_id}" if snr >= 10 else ""
    return {
        "trial_id": f"7f3a9c21_{index:05d}",
        "condition": condition_name(snr, kn),
        "method": method,
        "snr_db": snr,
        "kn_requested": kn,
        "kn_achieved": achieved,
        "alpha1": alpha1,
        "alpha1_choice": alpha1_choice,
        "alpha2": alpha2,
        "tau": tau,
        "proj_dim": proj_dim,
        "accuracy": float(np.clip(acc, 0, 1)) if math.isfinite(acc) else acc,
        "psnr": psnr,
        "ssim": float(np.clip(0.5 + (psnr - 24) / 30, 0, 1)) if math.isfinite(psnr) else None,
        "epochs_run": run,
        "epochs_total": total,
        "status": status,
        "pruned_at_epoch": pruned_at,
        "failure_reason": reason,
        "mlflow_run_id": run_id,
        "mlflow_run_url": url,
        "start_time": start,
        "end_time": None if status == "running" else start + pd.Timedelta(seconds=40 * run),
        "final_accuracy": None,
        "final_psnr": None,
    }


def demo_meta() -> ReportMeta:
    return ReportMeta(
        study_name="synthetic-demo",
        spec_hash="sha256:0000000000000000000000000000000000000000000000000000000000000000",
        tracking_uri="http://127.0.0.1:5000",
        experiment_id="1",
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python tests/report_fixtures.py OUT_DIR", file=sys.stderr)
        return 2
    from orchestrator.reporting import write_report

    for name, path in write_report(synthetic_trials(), demo_meta(), Path(args[0]), pick="accuracy>=0.85").items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
