"""``semtune trial CONFIG.yaml``: one configuration, no Ray, a progress bar per epoch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from trainables.config import ConfigError, TrialConfig, build_trial_config, resolve_paths, set_dotted
from orchestrator.spec.yamlio import load_mapping, parse_override


def load_trial_config(path: str, overrides: list[str]) -> TrialConfig:
    """Read, override (``--set``), pin relative paths to the file's folder, validate."""
    doc = load_mapping(path)
    for text in overrides:
        key, value = parse_override(text)
        doc = set_dotted(doc, key, value)
    return build_trial_config(resolve_paths(doc, Path(path).resolve().parent))


def _tqdm_progress(batches, total, description):
    from tqdm import tqdm

    return tqdm(batches, total=total, desc=description, unit="batch", leave=True, file=sys.stderr)


def run_trial_command(config_path: str, overrides: list[str], out: str | None, resume: bool) -> int:
    cfg = load_trial_config(config_path, overrides)  # validate before importing torch

    from trainables.reporter import FolderReporter
    from trainables.training import TrialDiverged, run_trial

    out_dir = Path(out or f"semtune-trial-{cfg.digest()}")
    reporter = FolderReporter(out_dir, resume=resume)
    (out_dir / "config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=1))
    print(f"semtune trial: method={cfg.method} k/n={cfg.codec.kn:.4g} (achieved {cfg.kn_achieved:.4g}) "
          f"SNR={cfg.channel.snr_db:g} dB, {cfg.total_epochs} epochs -> {out_dir}", file=sys.stderr)
    try:
        final = run_trial(cfg, reporter, progress=_tqdm_progress)
    except TrialDiverged as err:
        (out_dir / "final.json").write_text(json.dumps({"status": "failed", "reason": str(err)}, indent=1))
        print(f"error: trial failed: {err}", file=sys.stderr)
        return 1
    (out_dir / "final.json").write_text(json.dumps({"status": "completed", **final}, indent=1))
    print(json.dumps({k: final[k] for k in ("epoch", "accuracy", "psnr", "ssim") if k in final}))
    return 0


__all__ = ["ConfigError", "load_trial_config", "run_trial_command"]
