"""A trial served from a recorded learning-curve table instead of trained: the search benchmark's trainable.

``python -m bench.curves`` trains every configuration of a grid to its full budget once and keeps
each epoch's scores in a Parquet table. :func:`replay_trial` answers a trial with that
configuration's rows, epoch by epoch, through the same :class:`~trainables.reporter.Reporter` and
with a checkpoint per epoch like :func:`~trainables.training.run_trial`, so a study of replayed
trials runs the real orchestrator (Tune, the samplers, the schedulers, pruning, resume) on known
ground truth in seconds. Nothing here knows Ray, Optuna or MLflow.
"""

from __future__ import annotations

import json
import math
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from trainables.config import TrialConfig

PARAMS = ("alpha1", "alpha2", "tau", "proj_dim")  # the searched hyperparameters a table row may carry
_STATE_FILE = "replay.json"


class NotInTable(LookupError):
    """The trial's configuration was never recorded (the study's space must be the table's grid)."""


def _key_value(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, str):
        return v
    return round(float(v), 9)  # 1/12 computed twice is the same float; 9 digits absorb Parquet round trips


def configuration_key(method: str, channel: str, snr_db: float, kn: float, params: dict[str, Any]) -> tuple:
    return (method, channel, _key_value(snr_db), _key_value(kn), *(_key_value(params.get(p)) for p in PARAMS))


def trial_key(cfg: TrialConfig, used: tuple[str, ...]) -> tuple:
    """The table key of a trial: its arm and the values of the parameters its method uses."""
    values = {"alpha1": cfg.loss.alpha1, "alpha2": cfg.loss.alpha2, "tau": cfg.loss.tau, "proj_dim": cfg.loss.proj_dim}
    return configuration_key(cfg.method, cfg.channel.model, cfg.channel.snr_db, cfg.codec.kn,
                             {p: values[p] for p in used})


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> dict[tuple, list[dict[str, float]]]:
    import pyarrow.parquet as pq

    curves: dict[tuple, list[dict[str, float]]] = {}
    for row in pq.read_table(path).to_pylist():
        key = configuration_key(row["method"], row.get("channel_model", "awgn"), row["snr_db"], row["kn"], row)
        curves.setdefault(key, []).append(row)
    for rows in curves.values():
        rows.sort(key=lambda r: r["epoch"])
    return curves


def load_curves(path: str | Path) -> dict[tuple, list[dict[str, float]]]:
    """The table as {configuration key: its rows by epoch}, read once per process and file version."""
    p = Path(path)
    return _load(str(p), p.stat().st_mtime_ns)


def replay_trial(cfg: TrialConfig, table: str | Path, used: tuple[str, ...], reporter) -> dict[str, float]:
    """Report the recorded epochs of ``cfg``'s configuration; resume after the reporter's checkpoint.

    ``used``: the searched parameters of ``cfg.method`` (``search_spaces.METHOD_PARAMETERS``); the
    others are not part of the configuration. The budget is the table's: a study must ask for the
    same epochs as the recording (checked, so a mismatch fails the trial with the reason).
    """
    key = trial_key(cfg, used)
    rows = load_curves(table).get(key)
    if rows is None:
        values = ", ".join(f"{p}={key[4 + PARAMS.index(p)]}" for p in used)
        raise NotInTable(f"{table} has no curve for {cfg.method} at {cfg.channel.model} {cfg.channel.snr_db:g} dB, "
                         f"k/n {cfg.codec.kn:.4g}" + (f" with {values}" if values else ""))
    if len(rows) != cfg.total_epochs:
        raise NotInTable(f"{table} recorded {len(rows)} epochs of this configuration; the study asks for "
                         f"{cfg.total_epochs} (budget.stage1_epochs + stage2_epochs must match the recording)")
    start = 0
    resume = reporter.checkpoint_to_resume()
    if resume is not None:
        start = int(json.loads((Path(resume) / _STATE_FILE).read_text())["epoch"])
    metrics: dict[str, float] = {}
    for row in rows[start:]:
        metrics = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and k not in PARAMS and k not in ("config_id", "snr_db", "kn")}
        with tempfile.TemporaryDirectory(prefix="semtune-replay-") as tmp:
            (Path(tmp) / _STATE_FILE).write_text(json.dumps({"epoch": int(row["epoch"])}))
            reporter.report(metrics, Path(tmp))
    return metrics
