"""A real trial of the ``paper`` preset's method, shortened to the minutes that are left.

The trial section of ``search_spaces/presets/paper.yaml`` (codec width 256, ResNet-56 from the
akamaster checkpoint, batch 128, Adam with its learning rates, eq. 7) on the full CIFAR-10 copy
(45,000 training and 5,000 validation images, the test split once at the end), at its first
condition (SNR 20 dB) and k/n 1/12, through ``run_trial`` itself. Only the epochs are fewer: as many
as fit, two thirds of the time for stage 1 and one third for stage 2 (the preset's 200 : 100).
A reporter stops the trial when the next epoch would overrun the budget, and says so.

The projection of the full schedule uses the last epoch of each stage (the first pays for cuDNN
autotuning): 200 × stage-1 seconds + 100 × stage-2 seconds, evaluation and checkpoints included.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "search_spaces" / "presets" / "paper.yaml"
FULL_EPOCHS = (200, 100)


class OutOfTime(Exception):
    pass


class BudgetReporter:
    """Keeps each epoch's scores and wall time; stops the trial before an epoch that would not fit."""

    def __init__(self, deadline: float):
        self.deadline, self.history, self.t0 = deadline, [], time.monotonic()
        self.stopped = None

    def report(self, metrics, checkpoint_dir) -> None:
        now = time.monotonic()
        self.history.append({**dict(metrics), "epoch_s": now - self.t0})
        self.t0 = now
        if metrics["epoch"] < metrics["epochs_total"] and now + self.history[-1]["epoch_s"] > self.deadline:
            self.stopped = f"stopped after epoch {metrics['epoch']} of {metrics['epochs_total']}: out of time"
            raise OutOfTime

    def checkpoint_to_resume(self):
        return None


def paper_config(data_dir: Path, models_dir: Path, epochs: tuple[int, int], dry_run: bool):
    """The preset's trial section at SNR 20 dB, k/n 1/12; tiny (random ResNet-20, width 8) in a dry run."""
    from trainables.config import build_trial_config

    preset = yaml.safe_load(PRESET.read_text())
    doc = dict(preset["trial"])
    doc["method"] = preset["methods"][0]
    ds = preset["dataset"]
    doc["data"] = {"name": ds["name"], "source": "parquet", "search_dirs": [str(data_dir)],
                   "tune_per_class": ds["tune_per_class"], "final_score": ds["final_score"]}
    doc["channel"] = {"snr_db": preset["conditions"]["snr_db"][0]}
    doc["codec"] = {**doc["codec"], "kn": 1 / 12}
    doc["classifier"] = {**doc["classifier"], "search_dirs": [str(models_dir)]}
    doc["stage1"] = {**doc["stage1"], "epochs": epochs[0]}
    doc["stage2"] = {**doc["stage2"], "epochs": epochs[1]}
    if dry_run:
        doc["data"].update(tune_per_class=1, final_per_class=1)
        doc["codec"]["width"] = 8
        doc["classifier"] = {"arch": "resnet20", "checkpoint": None, "allow_untrained": True}
        doc["batch_size"] = 8
    return build_trial_config(doc)


def plan_epochs(seconds: float, stage_s: tuple[float, float], most: int = 20) -> tuple[int, int]:
    """Epochs of (stage 1, stage 2) that fit ``seconds``, 2/3 : 1/3, at least one each."""
    e1 = int(seconds * 2 / 3 // max(stage_s[0], 1e-9))
    e2 = int(seconds / 3 // max(stage_s[1], 1e-9))
    return max(1, min(most, e1)), max(1, min(most, e2))


def run(data_dir: Path, models_dir: Path, seconds: float, ips: tuple[float, float] | None, dry_run: bool,
        train_per_class: int = 5000) -> dict:
    """Train for about ``seconds``; ``ips``: stage-1/2 images/s measured before, to size the epochs."""
    from trainables.training import run_trial

    t_start = time.monotonic()
    n_train = 10 * train_per_class  # data.split test_halves: every training image
    overhead = 8.0  # evaluation of 5,000 images + the checkpoint, per epoch (GPU)
    load_s = 20.0  # decoding 60,000 JPEGs
    if ips and not dry_run:
        stage_s = (n_train / ips[0] + overhead, n_train / ips[1] + overhead)
        epochs = plan_epochs(seconds - load_s, stage_s)
    else:
        epochs = (1, 1)
    cfg = paper_config(data_dir, models_dir, epochs, dry_run)
    reporter = BudgetReporter(t_start + seconds)
    error = None
    try:
        run_trial(cfg, reporter)
    except OutOfTime:
        pass
    except Exception as err:  # the check reports it; the other parts stay valid
        error = f"{type(err).__name__}: {err}"
    h = reporter.history
    out = {"config": {"method": cfg.method, "codec_width": cfg.codec.width, "classifier": cfg.classifier.arch,
                      "kn_achieved": cfg.kn_achieved, "snr_db": cfg.channel.snr_db, "batch_size": cfg.batch_size,
                      "train_images": n_train, "tune_per_class": cfg.data.tune_per_class},
           "epochs_planned": list(epochs), "stopped": reporter.stopped, "error": error,
           "seconds": time.monotonic() - t_start,
           "epochs": [{k: m.get(k) for k in ("epoch", "stage", "accuracy", "psnr", "ssim", "loss", "epoch_s",
                                             "train_images_per_s", "final_accuracy", "final_psnr")} for m in h]}
    last = {s: [m for m in h if m["stage"] == s][-1:] for s in (1, 2)}
    if last[1] and last[2]:
        s1, s2 = last[1][0]["epoch_s"], last[2][0]["epoch_s"]
        out["projected_full_s"] = FULL_EPOCHS[0] * s1 + FULL_EPOCHS[1] * s2
        out["projected_full_h"] = out["projected_full_s"] / 3600
    return out
