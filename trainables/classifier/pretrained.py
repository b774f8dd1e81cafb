"""The public pretrained CIFAR ResNets: where to find them, how to fetch them, how to load them strictly."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from trainables.classifier.downstream import DownstreamModel

_BASE = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"
# arch -> (upstream file name, sha256, names a local copy may carry)
PUBLIC_CHECKPOINTS = {
    "resnet56": ("resnet56-4bfd9763.th", "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367",
                 ("resnet56-cifar10-akamaster.th", "resnet56-4bfd9763.th")),
    "resnet20": ("resnet20-12fca82f.th", "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8",
                 ("resnet20-cifar10-akamaster.th", "resnet20-12fca82f.th")),
}
DEFAULT_MODEL_CACHE = "~/.cache/semtune/models"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def locate_public_checkpoint(arch: str, search_dirs: tuple[str, ...] = (), download: bool = True) -> Path:
    """Find the public checkpoint for ``arch`` locally, or download it (sha256-checked) into the cache."""
    if arch not in PUBLIC_CHECKPOINTS:
        raise ValueError(f"no public checkpoint for {arch!r}; known: {sorted(PUBLIC_CHECKPOINTS)}")
    upstream, digest, local_names = PUBLIC_CHECKPOINTS[arch]
    cache = Path(os.environ.get("SEMTUNE_MODEL_CACHE", DEFAULT_MODEL_CACHE)).expanduser()
    for d in (*search_dirs, cache):
        for name in local_names:
            candidate = Path(d).expanduser() / name
            if candidate.is_file():
                return candidate
    if not download:
        raise FileNotFoundError(f"{arch} checkpoint not found in {[*search_dirs, str(cache)]}")
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / upstream
    torch.hub.download_url_to_file(_BASE + upstream, str(target), progress=False)
    if sha256_of(target) != digest:
        target.unlink()
        raise RuntimeError(f"downloaded {upstream} does not match its published sha256")
    return target


def load_checkpoint(model: DownstreamModel, path: str | Path) -> DownstreamModel:
    """Load an akamaster-format checkpoint strictly (after stripping ``module.``).

    ``strict=False`` would silently load nothing and leave a 10 %-accuracy model, so a key
    mismatch raises here instead.
    """
    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model.net.load_state_dict(state, strict=True)
    return model
