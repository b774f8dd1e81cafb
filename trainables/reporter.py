"""The only way a trial talks to the outside: report per-epoch metrics with a checkpoint.

``run_trial`` takes any object with these two methods, so the same function runs under Ray Tune
(``orchestrator.tune.trainable.TuneReporter``), from the CLI (:class:`FolderReporter`) or in a
test (:class:`MemoryReporter`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Mapping, Protocol


class Reporter(Protocol):
    def report(self, metrics: Mapping[str, float], checkpoint_dir: Path) -> None:
        """Called once per epoch, ``metrics["epoch"]`` being the global epoch (the step)."""

    def checkpoint_to_resume(self) -> Path | None:
        """A checkpoint directory to continue from, or ``None`` to start fresh."""


class MemoryReporter:
    """Keeps metrics and the latest checkpoint in memory/disk for tests and notebooks."""

    def __init__(self, keep_checkpoint: Path | None = None, resume_from: Path | None = None):
        self.history: list[dict[str, float]] = []
        self.keep_checkpoint = keep_checkpoint
        self.resume_from = resume_from

    def report(self, metrics, checkpoint_dir):
        self.history.append(dict(metrics))
        if self.keep_checkpoint is not None:
            _replace_dir(checkpoint_dir, self.keep_checkpoint)

    def checkpoint_to_resume(self):
        return self.resume_from


class FolderReporter:
    """``semtune trial``'s output folder: ``metrics.jsonl`` (one line per epoch) and ``checkpoint/``."""

    def __init__(self, out_dir: Path, resume: bool):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir = self.out_dir / "checkpoint"
        self.metrics_path = self.out_dir / "metrics.jsonl"
        self.resume = resume and self.checkpoint_dir.is_dir()
        if not self.resume:
            self.metrics_path.unlink(missing_ok=True)

    def report(self, metrics, checkpoint_dir):
        _replace_dir(checkpoint_dir, self.checkpoint_dir)  # checkpoint first: a line implies its state
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(dict(metrics)) + "\n")

    def checkpoint_to_resume(self):
        if not self.resume:
            return None
        # Drop lines past the checkpoint (written before an interruption) so the log stays one line per epoch.
        from trainables.training.checkpoint import load_checkpoint

        epoch = load_checkpoint(self.checkpoint_dir).epoch
        if self.metrics_path.exists():
            lines = [ln for ln in self.metrics_path.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if json.loads(ln)["epoch"] <= epoch]
            self.metrics_path.write_text("".join(ln + "\n" for ln in kept))
        return self.checkpoint_dir


def _replace_dir(src: Path, dst: Path) -> None:
    """Copy ``src`` over ``dst`` atomically enough that a crash leaves the old or the new copy."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    old = dst.with_name(dst.name + ".old")
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    shutil.rmtree(old, ignore_errors=True)
