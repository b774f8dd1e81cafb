"""A small synthetic CIFAR-10 look-alike that the tests make themselves.

Why: the tests that train and run real studies used to read CIFAR-10 and the pretrained
ResNets from ``../shared``, so on a clone without that folder they all skipped. With these
images (and a classifier trained from scratch in stage 0) they run the real stack anywhere;
only the few tests about the real dataset's or the public checkpoints' own facts still need
``../shared``.

The images are deterministic for a seed and *learnable*: each of the 10 classes has its own
colour and its own stripe pattern (orientation and frequency), and every image gets a random
phase (a shift), jittered colour, angle and frequency, a random background level and pixel
noise. The product's stage 0 trains a ResNet-20 from scratch on 400 of them for 4 epochs
(16 SGD steps) to about 0.57 validation accuracy, chance being 0.1 (``test_synthetic_data.py``).
Colour is the main cue on purpose: it survives random horizontal flips (which mirror the
stripe angle) and the blur of a narrow codec.

They are written in both on-disk layouts :mod:`trainables.data.formats` reads:

- ``{split}.npz``: ``images`` uint8 N×32×32×3 (RGB, HWC) and ``labels`` int64 N;
- ``{split}.parquet``: HuggingFace-style ``img`` struct{``bytes`` (PNG), ``path`` (null)}
  and ``label`` int64.

PNG is lossless, so both layouts decode to identical arrays. Rows are interleaved by class
(row ``i`` has label ``i % 10``), so every prefix is balanced.
"""

from __future__ import annotations

import colorsys
import io
from pathlib import Path

import numpy as np

NUM_CLASSES = 10
SIZE = 32
LAYOUTS = ("npz", "parquet")

# One well-separated colour per class (hues 36 degrees apart) ...
_COLOURS = np.array([colorsys.hsv_to_rgb(c / NUM_CLASSES, 0.85, 0.95) for c in range(NUM_CLASSES)])
# ... and one stripe pattern: angle (degrees) and cycles per image width.
_ANGLES = np.array([0, 90, 45, 135, 0, 90, 45, 135, 0, 90], dtype=float)
_CYCLES = np.array([1.0, 1.0, 1.5, 1.5, 2.5, 2.5, 2.0, 2.0, 3.0, 3.0])


def make_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 N×32×32×3 images whose look depends on ``labels`` (vectorised, no Python loop per image)."""
    n = len(labels)
    yy, xx = np.meshgrid(np.arange(SIZE, dtype=float), np.arange(SIZE, dtype=float), indexing="ij")
    theta = np.deg2rad(_ANGLES[labels] + rng.uniform(-8, 8, n))
    cycles = _CYCLES[labels] * rng.uniform(0.9, 1.1, n)
    phase = rng.uniform(0, 2 * np.pi, n)  # a random shift of the stripes
    proj = np.cos(theta)[:, None, None] * xx + np.sin(theta)[:, None, None] * yy
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * cycles[:, None, None] * proj / SIZE + phase[:, None, None])
    fg = np.clip(_COLOURS[labels] + rng.normal(0, 0.04, (n, 3)), 0, 1)
    bg = rng.uniform(0.05, 0.35, (n, 1)) * np.ones((1, 3))
    img = bg[:, None, None, :] + (fg - bg)[:, None, None, :] * stripes[..., None]
    img = img.astype(np.float32) + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(0.05)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def make_split(count_per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = np.tile(np.arange(NUM_CLASSES, dtype=np.int64), count_per_class)
    return make_images(labels, rng), labels


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _write_parquet(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    img = pa.StructArray.from_arrays(
        [pa.array([_png(im) for im in images], pa.binary()), pa.nulls(len(images), pa.string())],
        names=["bytes", "path"])
    table = pa.table({"img": img, "label": pa.array(labels, pa.int64())})
    table = table.replace_schema_metadata({"description": "synthetic CIFAR-10 look-alike for the tests (PNG bytes)"})
    pq.write_table(table, path)


def write_synthetic_cifar(folder: str | Path, train_per_class: int = 200, test_per_class: int = 50, seed: int = 0,
                          layouts: tuple[str, ...] = LAYOUTS) -> Path:
    """Write ``train``/``test`` splits into ``folder`` in each of ``layouts``; return ``folder``.

    The same seed gives the same bytes; the train and test splits draw from separate streams.
    """
    unknown = set(layouts) - set(LAYOUTS)
    if unknown:
        raise ValueError(f"unknown layouts {sorted(unknown)}; known: {LAYOUTS}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    for split, count, rng in (("train", train_per_class, train_rng), ("test", test_per_class, test_rng)):
        images, labels = make_split(count, rng)
        if "npz" in layouts:
            np.savez(folder / f"{split}.npz", images=images, labels=labels)
        if "parquet" in layouts:
            _write_parquet(folder / f"{split}.parquet", images, labels)
    return folder
