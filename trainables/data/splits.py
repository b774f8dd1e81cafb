"""Train / validation / test splits, held as tensors, with seeded per-class subsets.

Studies tune on a validation split carved from the training set (seeded, stratified), never
on test; the test split is evaluated only on demand. Subsets take the first N images of each
class after a seeded shuffle (train, val) or in file order (test, so that a subset is the
same whatever the seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainables.config import DataConfig
from trainables.data.formats import find_split_file, read_npz, read_parquet, read_torchvision


@dataclass(frozen=True)
class ImageSet:
    images: torch.Tensor  # uint8 N×3×H×W
    labels: torch.Tensor  # int64 N

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> "ImageSet":
        return ImageSet(self.images.to(device), self.labels.to(device))


@dataclass(frozen=True)
class Splits:
    train: ImageSet
    val: ImageSet
    test: ImageSet | None


def per_class_rows(labels: np.ndarray, counts: tuple[int | None, ...], seed: int | None) -> tuple[np.ndarray, ...]:
    """Disjoint row sets: for each class, the first ``counts[0]`` rows, then the next ``counts[1]``…

    With a seed the rows of each class are shuffled first; ``None`` in ``counts`` means "all the rest".
    Raises ``ValueError`` if a class has fewer rows than asked.
    """
    rng = np.random.default_rng(seed) if seed is not None else None
    picked: list[list[np.ndarray]] = [[] for _ in counts]
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        if rng is not None:
            rows = rng.permutation(rows)
        start = 0
        for i, n in enumerate(counts):
            stop = len(rows) if n is None else start + n
            if stop > len(rows):
                raise ValueError(f"class {cls} has {len(rows)} images; {sum(c or 0 for c in counts)} asked per class")
            picked[i].append(rows[start:stop])
            start = stop
    return tuple(np.sort(np.concatenate(p)) for p in picked)


def dirs_of(cfg: DataConfig) -> list[Path]:
    """Where split files are looked for, in order: ``search_dirs``, then ``root``."""
    return [Path(d).expanduser() for d in (*cfg.search_dirs, cfg.root)]


def _read(cfg: DataConfig, split: str, pick) -> tuple[torch.Tensor, torch.Tensor]:
    found = find_split_file(split, dirs_of(cfg), cfg.source)
    if found is not None:
        kind, path = found
        return (read_npz if kind == "npz" else read_parquet)(path, pick)
    if cfg.source in ("auto", "torchvision"):
        return read_torchvision(Path(cfg.root).expanduser(), train=split == "train", pick=pick)
    raise FileNotFoundError(f"no {split}.{cfg.source} in {[str(d) for d in dirs_of(cfg)]}")


def load_splits(cfg: DataConfig, seed: int, with_test: bool) -> Splits:
    """Read (and decode) only the rows the config asks for, once."""
    chosen: dict[str, np.ndarray] = {}

    def pick_train_val(labels: np.ndarray) -> np.ndarray:
        val, train = per_class_rows(labels, (cfg.val_per_class, cfg.train_per_class), seed)
        chosen["val"], chosen["train"] = val, train
        return np.concatenate([val, train])

    images, labels = _read(cfg, "train", pick_train_val)
    n_val = len(chosen["val"])
    val = ImageSet(images[:n_val], labels[:n_val])
    train = ImageSet(images[n_val:], labels[n_val:])
    test = None
    if with_test:
        pick_test = (lambda y: per_class_rows(y, (cfg.test_per_class,), None)[0]) if cfg.test_per_class else None
        test = ImageSet(*_read(cfg, "test", pick_test))
    _check_size(train, cfg.image_size)
    return Splits(train=train, val=val, test=test)


def _check_size(ds: ImageSet, expected: tuple[int, int]) -> None:
    got = tuple(ds.images.shape[-2:])
    if got != tuple(expected):
        raise ValueError(f"data.image_size is {expected} but the images are {got}")
