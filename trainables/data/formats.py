"""Reading CIFAR-10-like splits from the three on-disk layouts we support.

- ``npz``: arrays ``images`` (uint8 N×H×W×3) and ``labels`` (int64 N), like ``test.npz``.
- ``parquet``: the HuggingFace layout, column ``img`` (struct with encoded ``bytes``) and ``label``.
  Only the rows asked for are decoded, all at once, in a thread pool (Pillow releases the GIL).
- ``torchvision``: ``torchvision.datasets.CIFAR10`` with ``download=True`` (the users' path).

Every reader returns ``(images uint8 N×3×H×W, labels int64 N)`` as torch tensors.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch

RowPicker = Callable[[np.ndarray], np.ndarray]  # labels -> indices of the rows to keep


def _to_tensors(images_hwc: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.ascontiguousarray(images_hwc.transpose(0, 3, 1, 2)))
    return images, torch.from_numpy(labels.astype(np.int64))


def read_npz(path: Path, pick: RowPicker | None = None):
    with np.load(path) as z:
        labels = z["labels"].astype(np.int64)
        rows = pick(labels) if pick else np.arange(len(labels))
        return _to_tensors(z["images"][rows], labels[rows])


def _decode(blob: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as im:
        return np.asarray(im.convert("RGB"))


def read_parquet(path: Path, pick: RowPicker | None = None):
    import pyarrow.parquet as pq

    labels = pq.read_table(path, columns=["label"]).column("label").to_numpy().astype(np.int64)
    rows = pick(labels) if pick else np.arange(len(labels))
    table = pq.read_table(path, columns=["img"]).take(rows)
    blobs = table.column("img").combine_chunks().field("bytes").to_pylist()
    with ThreadPoolExecutor() as pool:
        images = np.stack(list(pool.map(_decode, blobs, chunksize=256)))
    return _to_tensors(images, labels[rows])


def read_torchvision(root: Path, train: bool, pick: RowPicker | None = None):
    from torchvision.datasets import CIFAR10

    ds = CIFAR10(str(root), train=train, download=True)
    labels = np.asarray(ds.targets, dtype=np.int64)
    rows = pick(labels) if pick else np.arange(len(labels))
    return _to_tensors(ds.data[rows], labels[rows])


def dirs_of(cfg) -> list[Path]:
    """Where split files are looked for, in order: ``search_dirs``, then ``root``."""
    return [Path(d).expanduser() for d in (*cfg.search_dirs, cfg.root)]


def find_split_file(split: str, dirs: list[Path], source: str) -> tuple[str, Path] | None:
    """The first ``{split}.npz`` / ``{split}.parquet`` in ``dirs`` allowed by ``source``."""
    kinds = {"auto": ("npz", "parquet"), "npz": ("npz",), "parquet": ("parquet",)}.get(source, ())
    for d in dirs:
        for kind in kinds:
            p = d / f"{split}.{kind}"
            if p.is_file():
                return kind, p
    return None


def source_files(cfg, split: str) -> list[Path]:
    """The files that ``split`` is read from under ``cfg`` (a ``DataConfig``), for checksums."""
    found = find_split_file(split, dirs_of(cfg), cfg.source)
    if found is not None:
        return [found[1]]
    batches = Path(cfg.root).expanduser() / "cifar-10-batches-py"  # torchvision's layout
    return [batches / n for n in ([f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"])]
