"""Batches straight from device-resident tensors: on-device shuffling and flips, no workers.

(The airbench habit: the whole split lives on the GPU when training there, so an epoch is a
``randperm`` and a gather, not per-image Python.)
"""

from __future__ import annotations

import torch

from trainables.data.splits import ImageSet


def iterate_batches(ds: ImageSet, batch_size: int, *, generator: torch.Generator | None = None,
                    shuffle: bool = False, hflip: bool = False, drop_last: bool = False):
    """Yield ``(x float32 in [0,1], y int64)``; shuffling and flips draw from ``generator``."""
    n = len(ds)
    device = ds.images.device
    order = torch.randperm(n, generator=generator, device=generator.device if generator else "cpu").to(device) \
        if shuffle else torch.arange(n, device=device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        x = ds.images.index_select(0, idx).float().div_(255.0)
        if hflip:
            flip = torch.rand(len(idx), generator=generator, device=generator.device if generator else "cpu") < 0.5
            flip = flip.to(device)
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        yield x, ds.labels.index_select(0, idx)


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)
