"""The real view ↔ complex symbols: which two reals of a sample form one complex symbol.

The first half of each sample's flattened reals are the real parts, the second half the imaginary
parts (as ``tests/trainables/test_channel.py`` pairs them): for a C×h'×w' latent with even C,
channels c and c + C/2 form complex channel c. Power normalisation and AWGN do not depend on
the pairing; fading does (both reals of a symbol see the same complex gain).
"""

from __future__ import annotations

import torch


def to_complex(s: torch.Tensor) -> torch.Tensor:
    """[B, ...] with 2k reals per sample → [B, k] complex64 symbols."""
    flat = s.flatten(1).float()
    k = flat.shape[1] // 2
    return torch.complex(flat[:, :k], flat[:, k:])


def to_real(z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_complex`: [B, k] complex → the shape and dtype of ``like``."""
    return torch.cat([z.real, z.imag], dim=1).view(like.shape).to(like.dtype)
