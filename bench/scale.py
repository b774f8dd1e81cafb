"""What the orchestrator costs per trial as a study grows: replayed trials with MLflow on, and a large report.

    python -m bench.scale                                  # 1,000 trials; report on 10,000 -> bench/results/scale.json
    python -m bench.scale --trials 200 --report-trials 2000   # a quick look

The study is a real semtune study (Ray Tune, the arm router, the default sampler and MO-ASHA, the
embedded sqlite MLflow store, checkpoints, Tune's experiment snapshots) over 10 conditions whose
trials are served from a made-up curve table (:mod:`bench.synthetic_curves`, 720 configurations per
condition), so everything measured is the orchestrator's own cost:

- per-trial seconds, over the first and the last fifth of the trials (does a trial get dearer as the
  study grows?);
- the driver's resident memory (peak, and at each fifth);
- every Tune experiment snapshot: its seconds and bytes against the trials the study holds by then.
  Tune's ``TuneController.save_to_dir`` is wrapped to time it, in this process only.

Then ``semtune report`` runs on that study and on one of ``--report-trials`` trials: the study's
trial runs copied in its MLflow database with new run and trial ids (SQL, seconds; replaying 10,000
trials would take hours here). Its seconds and peak memory are measured in a child process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.replay import RESULTS, Strategy, machine, study_doc, table_meta
from bench.synthetic_curves import write_curve_table

CONDITIONS = tuple((snr, kn) for snr in (0.0, 5.0, 10.0, 15.0, 20.0) for kn in (1 / 12, 1 / 3))
GRID = {"alpha1": [0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.997], "alpha2": [0.7, 0.8, 0.85, 0.9, 0.95, 0.97],
        "tau": [0.05, 0.1, 0.2, 0.5, 1.0], "proj_dim": [16, 32, 64]}


def _status_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class SnapshotClock:
    """Times every Tune experiment snapshot of the study run in this process."""

    def __init__(self):
        self.rows: list[dict[str, float]] = []
        self._original = None

    def __enter__(self):
        from ray.tune.execution.tune_controller import TuneController

        self._original = original = TuneController.save_to_dir
        rows, start = self.rows, time.perf_counter()

        def timed(controller):
            t0 = time.perf_counter()
            original(controller)
            seconds = time.perf_counter() - t0
            staged = Path(controller._storage.experiment_driver_staging_path)
            rows.append({
                "at_s": round(t0 - start, 3), "seconds": round(seconds, 5),
                "trials": len(controller._trials),
                "finished": sum(t.status in ("TERMINATED", "ERROR") for t in controller._trials),
                "bytes": sum(f.stat().st_size for f in staged.iterdir() if f.is_file()),
                "files": {f.name.split("-")[0]: f.stat().st_size for f in staged.iterdir() if f.is_file()},
                "rss_mib": round(_status_kib("VmRSS") / 1024, 1),
            })

        TuneController.save_to_dir = timed
        return self

    def __exit__(self, *exc):
        from ray.tune.execution.tune_controller import TuneController

        TuneController.save_to_dir = self._original


@contextlib.contextmanager
def tune_own_snapshots():
    """Ray's own snapshot rule (one per checkpoint), for the reference: semtune's policy switched off."""
    from orchestrator.tune.snapshots import SnapshotPolicy

    saved = SnapshotPolicy.on_trial_add
    SnapshotPolicy.on_trial_add = lambda self, controller, trial: super(SnapshotPolicy, self).on_trial_add(
        controller, trial)
    try:
        yield
    finally:
        SnapshotPolicy.on_trial_add = saved


@contextlib.contextmanager
def per_trial_snapshots():
    """semtune's earlier rule, for a reference: every added trial forces a snapshot, however long it takes."""
    import os

    from orchestrator.tune.snapshots import SHARE_ENV

    saved = os.environ.get(SHARE_ENV)
    os.environ[SHARE_ENV] = "inf"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(SHARE_ENV)
        else:
            os.environ[SHARE_ENV] = saved


POLICIES = {"semtune": contextlib.nullcontext, "per-trial": per_trial_snapshots, "tune": tune_own_snapshots}


def run_study_measured(trials: int, workdir: Path, policy: str = "semtune") -> tuple[dict[str, Any], Path]:
    """The replayed study of ``trials`` trials under a snapshot ``policy`` (:data:`POLICIES`: semtune's,
    one per added trial, or Ray's own); (its measurements, the study folder)."""
    import yaml

    from orchestrator.spec import load_spec
    from orchestrator.study.runner import run_study

    table = write_curve_table(workdir / "scale-curves.parquet", conditions=CONDITIONS, methods=("proposed",),
                              grid=GRID)
    meta = table_meta(table)
    doc = study_doc(table, meta, Strategy(sampler={}, pruner={}), seed=0, trials=trials // len(CONDITIONS),
                    storage=workdir, name="scale")
    doc.pop("mlflow")  # MLflow on, the embedded sqlite store: what `semtune run` does by default
    # the spec's default sampler and pruner (an empty section is all defaults)
    path = workdir / "scale.yaml"
    path.write_text(yaml.safe_dump(doc))
    rss_start = _status_kib("VmRSS")
    with POLICIES[policy](), SnapshotClock() as clock, contextlib.redirect_stderr(io.StringIO()):  # no progress table
        t0 = time.perf_counter()
        outcome = run_study(load_spec(path))
        wall = time.perf_counter() - t0
    snaps = clock.rows
    done = np.array([s["finished"] for s in snaps])
    at = np.array([s["at_s"] for s in snaps])
    fifth = max(1, trials // 5)

    def seconds_per_trial(lo: int, hi: int) -> float | None:
        """Seconds between the snapshots that first saw ``lo`` and ``hi`` trials finished, per trial."""
        i, j = np.searchsorted(done, lo), np.searchsorted(done, hi)
        if j >= len(done) or done[j] <= done[i]:
            return None
        return round(float((at[j] - at[i]) / (done[j] - done[i])), 4)

    slope = np.polyfit([s["trials"] for s in snaps], [s["seconds"] for s in snaps], 1)[0] if len(snaps) > 2 else None
    measured = {
        "snapshot_policy": policy, "trials": trials,
        "conditions": len(CONDITIONS), "configurations_per_condition": int(np.prod([len(v) for v in GRID.values()])),
        "wall_s": round(wall, 1), "seconds_per_trial": round(wall / trials, 4),
        "seconds_per_trial_first_fifth": seconds_per_trial(0, fifth),
        "seconds_per_trial_last_fifth": seconds_per_trial(trials - fifth, trials),
        "driver_rss_mib": {"before_study": round(rss_start / 1024, 1), "peak": round(_status_kib("VmHWM") / 1024, 1),
                           "by_fifth": [next((s["rss_mib"] for s in snaps if s["finished"] >= k * fifth), None)
                                        for k in range(1, 6)]},
        "snapshots": {
            "count": len(snaps), "total_s": round(sum(s["seconds"] for s in snaps), 2),
            "share_of_wall": round(sum(s["seconds"] for s in snaps) / wall, 4),
            "seconds_per_trial_held": None if slope is None else float(f"{slope:.3g}"),
            # snapshot seconds per trial finished in each fifth of the study: flat if they do not grow
            "seconds_per_trial_by_fifth": [
                round(sum(s["seconds"] for s in snaps if (k - 1) * fifth <= s["finished"] < k * fifth) / fifth, 5)
                for k in range(1, 6)],
            "last": snaps[-1] if snaps else None,
            "by_fifth": [next(({k: s[k] for k in ("trials", "seconds", "bytes", "files")} for s in snaps
                               if s["finished"] >= k * fifth), None) for k in range(1, 6)],
        },
    }
    return measured, outcome.folder


def copy_trial_runs(db: Path, copies: int) -> int:
    """Copy every trial run of the study in ``db`` ``copies`` times, with new run ids and trial ids;
    return the number of trial runs then. Plain SQL on MLflow's tables: a benchmark fixture only."""
    from orchestrator.tracking.tags import TAG_KIND, TAG_TRIAL

    con = sqlite3.connect(db)
    trial_runs = [r[0] for r in con.execute(
        "SELECT run_uuid FROM tags WHERE key = ? AND value = 'trial'", (TAG_KIND,))]
    if not trial_runs:
        raise SystemExit(f"{db}: no trial runs (tag {TAG_KIND}=trial) to copy")
    con.execute("CREATE TEMP TABLE originals (run_uuid TEXT PRIMARY KEY)")
    con.executemany("INSERT INTO originals VALUES (?)", [(r,) for r in trial_runs])
    run_columns = [c[1] for c in con.execute("PRAGMA table_info(runs)")]
    for k in range(1, copies):
        new = f"run_uuid || '{k:03d}'"
        cols = ", ".join(run_columns)
        picked = ", ".join(new if c == "run_uuid" else c for c in run_columns)
        con.execute(f"INSERT INTO runs ({cols}) SELECT {picked} FROM runs WHERE run_uuid IN originals")
        for table in ("params", "metrics", "latest_metrics"):
            columns = [c[1] for c in con.execute(f"PRAGMA table_info({table})")]
            picked = ", ".join(new if c == "run_uuid" else c for c in columns)
            con.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {picked} FROM {table} "
                        f"WHERE run_uuid IN originals")
        value = f"CASE WHEN key = '{TAG_TRIAL}' THEN value || '_copy{k}' ELSE value END"
        con.execute(f"INSERT INTO tags (key, value, run_uuid) SELECT key, {value}, {new} FROM tags "
                    f"WHERE run_uuid IN originals")
    con.commit()
    total = con.execute("SELECT COUNT(*) FROM tags WHERE key = ? AND value = 'trial'", (TAG_KIND,)).fetchone()[0]
    con.close()
    return total


def measured_report(folder: Path, out: Path) -> dict[str, Any]:
    """``semtune report`` in a child process: its seconds and peak resident memory."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
             "print(rc, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    semtune = Path(sys.executable).with_name("semtune")
    line = subprocess.run([sys.executable, "-c", probe, str(semtune), "report", str(folder), "--out", str(out),
                           "--no-models"], capture_output=True, text=True, check=True).stdout.split()
    rc, seconds, peak_kib = int(line[0]), float(line[1]), int(line[2])
    if rc != 0:
        raise SystemExit(f"semtune report {folder} exited {rc}")
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(peak_kib / 1024, 1)}


def run(trials: int, report_trials: int, out: Path, policy: str = "semtune") -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="semtune-scale-") as tmp:
        workdir = Path(tmp)
        study, folder = run_study_measured(trials, workdir, policy)
        print(f"  {trials} replayed trials in {study['wall_s']:.0f} s", file=sys.stderr)
        reports = {str(trials): measured_report(folder, workdir / "report")}
        copies = max(1, -(-report_trials // trials))
        if copies > 1:
            runs = copy_trial_runs(folder / "mlflow.db", copies)
            reports[str(runs)] = measured_report(folder, workdir / "report-large")
    result = {
        "study": study, "report": reports, "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
        "command": "python -m bench.scale " + " ".join(sys.argv[1:]),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


def table_lines(result: dict) -> list[str]:
    s = result["study"]
    snap = s["snapshots"]
    lines = [
        f"{s['trials']} replayed trials, {s['conditions']} conditions, MLflow on, {s['snapshot_policy']} snapshots: "
        f"{s['wall_s']:.0f} s, "
        f"{s['seconds_per_trial']:.3f} s per trial (first fifth {s['seconds_per_trial_first_fifth']}, "
        f"last fifth {s['seconds_per_trial_last_fifth']})",
        f"driver memory: {s['driver_rss_mib']['before_study']:.0f} MiB before, "
        f"peak {s['driver_rss_mib']['peak']:.0f} MiB",
        f"Tune snapshots: {snap['count']}, {snap['total_s']:.1f} s in all ({100 * snap['share_of_wall']:.1f} % of the "
        f"wall time), last {snap['last']['seconds'] * 1000:.0f} ms / {snap['last']['bytes'] / 1e6:.2f} MB; "
        f"seconds per trial by fifth {snap['seconds_per_trial_by_fifth']}",
    ]
    for n, r in result["report"].items():
        lines.append(f"semtune report on {n} trials: {r['seconds']:.1f} s, peak {r['peak_rss_mib']:.0f} MiB")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=1000, help="replayed trials (over 10 conditions)")
    p.add_argument("--report-trials", type=int, default=10_000, help="trials of the large report")
    p.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    p.add_argument("--snapshots", choices=tuple(POLICIES), default="semtune",
                   help="semtune's snapshot policy; or, as references, one per added trial (semtune's earlier "
                        "rule) or Ray's own (one per checkpoint)")
    args = p.parse_args(argv)
    if args.trials < len(CONDITIONS):
        print(f"error: --trials: at least {len(CONDITIONS)} (one per condition), got {args.trials}", file=sys.stderr)
        return 2
    result = run(args.trials, args.report_trials, args.out, args.snapshots)
    print("\n".join(table_lines(result)))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
