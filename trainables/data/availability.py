"""Is the dataset there, and big enough? Found or downloaded once, before any trial reads it.

A study calls :func:`ensure_dataset` on its driver: the split files are looked up (or
CIFAR-10 downloaded through torchvision into ``root``, once for every trial of that machine),
only the labels are read, and the per-class subsets the config asks for are checked. A problem
comes back as one line naming what was tried and what to do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainables.config import DataConfig
from trainables.data.formats import dirs_of, find_split_file
from trainables.data.splits import rows_in


class DatasetUnavailable(RuntimeError):
    """The dataset cannot be found, downloaded or split as asked; the message is one line."""


def read_labels(cfg: DataConfig, split: str) -> tuple[np.ndarray, str]:
    """The labels of ``split`` (no image decoded) and where they were found, in words."""
    found = find_split_file(split, dirs_of(cfg), cfg.source)
    if found is not None:
        kind, path = found
        if kind == "npz":
            with np.load(path) as z:
                return z["labels"].astype(np.int64), str(path)
        import pyarrow.parquet as pq

        return pq.read_table(path, columns=["label"]).column("label").to_numpy().astype(np.int64), str(path)
    looked = ", ".join(str(d) for d in dirs_of(cfg))
    if cfg.source not in ("auto", "torchvision"):
        raise DatasetUnavailable(f"no {split}.{cfg.source} in {looked}")
    from torchvision.datasets import CIFAR10

    root = Path(cfg.root).expanduser()
    try:
        ds = CIFAR10(str(root), train=split == "train", download=True)
    except Exception as err:  # URLError, a checksum mismatch, a full disk: all mean "not available"
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise DatasetUnavailable(
            f"no {split}.npz or {split}.parquet in {looked or 'no search_dirs'}, and downloading CIFAR-10 into "
            f"{root} failed ({type(err).__name__}: {reason}); put the files in one of search_dirs, or allow "
            "the download") from None
    return np.asarray(ds.targets, dtype=np.int64), f"torchvision CIFAR-10 in {root}"


def ensure_dataset(cfg: DataConfig, with_final: bool = False) -> str:
    """Where the data was found; raises :class:`DatasetUnavailable` if it cannot be had or split."""
    found = []
    for file in ("train", "test"):
        if file == "test" and cfg.split != "test_halves" and not with_final:
            continue
        labels, where = read_labels(cfg, file)
        try:
            rows_in(cfg, file, labels)
        except ValueError as err:
            raise DatasetUnavailable(f"{where}: {err}") from None
        found.append(where)
    return found[0]
