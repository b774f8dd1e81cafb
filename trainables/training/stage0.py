"""Stage 0: the downstream classifier prepared for the dataset at hand, cached for all trials.

The public checkpoints were trained on the official CIFAR-10; a local copy (e.g. the JPEG one)
is a shifted domain, so a study may fine-tune the classifier on the clean training split
first. That result depends only on the fields hashed below, so it is computed once per
machine (under a file lock) and reused by every trial that shares them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from filelock import FileLock

from trainables.classifier.downstream import DownstreamModel
from trainables.classifier.pretrained import load_checkpoint, locate_public_checkpoint, sha256_of
from trainables.config import ClassifierConfig, DataConfig
from trainables.data import ImageSet, iterate_batches
from trainables.data.availability import read_labels
from trainables.data.formats import source_files
from trainables.data.splits import rows_in
from trainables.training.device import Runtime


def resolve_checkpoint(cfg: ClassifierConfig) -> Path | None:
    if cfg.checkpoint is None:
        return None
    if cfg.checkpoint == "auto":
        return locate_public_checkpoint(cfg.arch, cfg.search_dirs)
    path = Path(cfg.checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"classifier.checkpoint {path} does not exist")
    return path


def stage0_key(cfg: ClassifierConfig, data: DataConfig, seed: int, checkpoint: Path | None) -> str:
    """Hash of everything that determines the prepared classifier, the images it trains on included."""
    ident = {
        "arch": cfg.arch,
        "checkpoint_sha256": sha256_of(checkpoint) if checkpoint else None,
        "epochs": cfg.finetune_epochs,
        "lr": cfg.finetune_lr,
        "training_set": training_set_digest(data),
        "seed": seed,
        "recipe": "sgd-momentum0.9-wd5e-4-cosine-hflip-bs128/v1",
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def training_set_digest(data: DataConfig) -> str:
    """The training images as a hash: the source files' bytes and the rows taken from them.

    A classifier fine-tuned on one copy of CIFAR-10 (say the lossy JPEG one) must not be reused
    for another copy, nor for another subset of the same file.
    """
    labels, _ = read_labels(data, "train")
    h = hashlib.sha256()
    for path in source_files(data, "train"):
        h.update(_file_sha256(str(path), *_stat(path)).encode())
    h.update(rows_in(data, "train", labels)["train"].astype("<i8").tobytes())
    h.update(json.dumps(list(data.image_size)).encode())
    return h.hexdigest()[:16]


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """A file's sha256, computed once per process for a given size and modification time."""
    return sha256_of(Path(path))


def finetune(model: DownstreamModel, train: ImageSet, epochs: int, lr: float, seed: int, rt: Runtime) -> None:
    """SGD (momentum 0.9, weight decay 5e-4, cosine schedule) with random flips, batch 128."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for x, y in iterate_batches(train, 128, generator=gen, shuffle=True, hflip=True):
            with rt.autocast():
                loss = F.cross_entropy(model(rt.images(x)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    model.eval()


def prepare_downstream(cfg: ClassifierConfig, data: DataConfig, train: ImageSet, seed: int,
                       rt: Runtime) -> DownstreamModel:
    """Load (and, if asked, fine-tune once and cache) the downstream model; returned in eval mode."""
    checkpoint = resolve_checkpoint(cfg)
    model = DownstreamModel(cfg.arch)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    model = rt.prepare(model)
    if cfg.finetune_epochs == 0:
        return model.eval()
    cache = Path(cfg.cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{cfg.arch}-{stage0_key(cfg, data, seed, checkpoint)}.pt"
    with FileLock(str(target) + ".lock"):
        if not target.exists():
            finetune(model, train, cfg.finetune_epochs, cfg.finetune_lr, seed, rt)
            tmp = target.with_suffix(f".tmp{os.getpid()}")
            torch.save(model.net.state_dict(), tmp)
            tmp.replace(target)
    model.net.load_state_dict(torch.load(target, map_location=rt.device, weights_only=True))
    return model.eval()


def prepare_stage0(cfg) -> str:
    """Stage 0 ahead of the trials (a study's preflight): the checkpoint found or downloaded, and the
    fine-tuned classifier computed into the cache that every trial with this config then reads.

    Takes a :class:`~trainables.config.TrialConfig`; returns what was prepared, in words.
    """
    from trainables.data import load_splits
    from trainables.training.device import pick_runtime

    checkpoint = resolve_checkpoint(cfg.classifier)
    source = str(checkpoint) if checkpoint else "random initialisation"
    if cfg.classifier.finetune_epochs == 0:
        return f"{cfg.classifier.arch} from {source}"
    rt = pick_runtime(cfg.device, cfg.threads)
    train = load_splits(cfg.data, with_final=False).train.to(rt.device)
    prepare_downstream(cfg.classifier, cfg.data, train, cfg.seed, rt)
    return f"{cfg.classifier.arch} from {source}, fine-tuned {cfg.classifier.finetune_epochs} epochs (cached)"
