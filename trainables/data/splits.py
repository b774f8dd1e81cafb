"""The three disjoint image sets of a study, held as tensors (see ``DataConfig.split``).

- *training* images: the codec's, and a stage-0 classifier's;
- *tuning* images: scored every epoch; the search and the pruner see only these numbers;
- *final* images: scored once at the end, on no decision's path.

Which file rows each set takes is a pure function of the labels (:func:`rows_in`), seeded by
``split_seed`` (not the trial seed: every trial of a study is scored on the same images), so the
rows can be checked, hashed and tested without decoding a single image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainables.config import DataConfig
from trainables.data.formats import dirs_of, find_split_file, read_npz, read_parquet, read_torchvision


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
    tune: ImageSet
    final: ImageSet | None  # read only when the trial scores it


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


def _read(cfg: DataConfig, split: str, pick) -> tuple[torch.Tensor, torch.Tensor]:
    found = find_split_file(split, dirs_of(cfg), cfg.source)
    if found is not None:
        kind, path = found
        return (read_npz if kind == "npz" else read_parquet)(path, pick)
    if cfg.source in ("auto", "torchvision"):
        return read_torchvision(Path(cfg.root).expanduser(), train=split == "train", pick=pick)
    raise FileNotFoundError(f"no {split}.{cfg.source} in {[str(d) for d in dirs_of(cfg)]}")


def rows_in(cfg: DataConfig, file: str, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The sorted rows of ``file`` (``"train"`` or ``"test"``) that each set takes, by set name.

    A file's rows depend on its own labels only, so each file is read once. ``ValueError`` names
    the fields to change when a class has too few images.
    """
    halves, seed = cfg.split == "test_halves", cfg.split_seed
    sets, counts, fields = {
        ("train", True): (("train",), (cfg.train_per_class,), "data.train_per_class"),
        ("train", False): (("tune", "train"), (cfg.tune_per_class, cfg.train_per_class),
                           "data.tune_per_class + data.train_per_class"),
        ("test", True): (("tune", "final"), (cfg.tune_per_class, cfg.final_per_class),
                         "data.tune_per_class + data.final_per_class"),
        ("test", False): (("final",), (cfg.final_per_class,), "data.final_per_class"),
    }[(file, halves)]
    try:
        return dict(zip(sets, per_class_rows(labels, counts, seed)))
    except ValueError as err:
        raise ValueError(f"{file} split: {err} ({fields})") from None


def load_splits(cfg: DataConfig, with_final: bool) -> Splits:
    """Read (and decode) only the rows the sets take; the final images only ``with_final``."""
    sets: dict[str, ImageSet] = {}
    for file in ("train", "test"):
        if file == "test" and cfg.split != "test_halves" and not with_final:
            continue  # train_holdout tunes on training images: the test file holds only the final ones
        taken: dict[str, np.ndarray] = {}

        def pick(labels: np.ndarray, file=file, taken=taken) -> np.ndarray:
            taken.update((k, v) for k, v in rows_in(cfg, file, labels).items() if with_final or k != "final")
            return np.concatenate(list(taken.values()))

        images, labels = _read(cfg, file, pick)
        start = 0
        for name, rows in taken.items():
            sets[name] = ImageSet(images[start:start + len(rows)], labels[start:start + len(rows)])
            start += len(rows)
    _check_size(sets["train"], cfg.image_size)
    return Splits(train=sets["train"], tune=sets["tune"], final=sets.get("final"))


def _check_size(ds: ImageSet, expected: tuple[int, int]) -> None:
    got = tuple(ds.images.shape[-2:])
    if got != tuple(expected):
        raise ValueError(f"data.image_size is {expected} but the images are {got}")


def describe_split(cfg: DataConfig) -> str:
    """Which images every reported number comes from, in one sentence (reports and MLflow say it)."""
    rest = "the rest" if cfg.final_per_class is None else f"{cfg.final_per_class}/class"
    if cfg.split == "test_halves":
        return (f"accuracy, psnr and ssim are on the tuning images ({cfg.tune_per_class}/class of the test split, "
                f"seed {cfg.split_seed}); final_* on {rest} of the test split; the classifier and the codec "
                "never saw either")
    return (f"accuracy, psnr and ssim are on the tuning images ({cfg.tune_per_class}/class carved from the "
            f"training split, seed {cfg.split_seed}; the classifier trained without them); final_* on {rest} of "
            "the test split")
