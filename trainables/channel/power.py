"""Per-sample power normalisation, eq. 2: s = sqrt(k·P) · s̃ / ‖s̃‖."""

from __future__ import annotations

import torch


def normalize_power(z: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """Scale each sample's latent so that its k complex symbols have mean power ``power``.

    ``z`` holds 2k real values per sample (any shape after the batch dimension); pairing
    them into complex symbols does not change ‖s̃‖, so the real view is normalised directly.
    """
    flat = z.flatten(1)
    k = flat.shape[1] / 2
    norm = flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (flat * ((k * power) ** 0.5 / norm)).view_as(z)


def mean_symbol_power(s: torch.Tensor) -> torch.Tensor:
    """Mean |s_i|² over each sample's complex symbols (two real values per symbol)."""
    flat = s.flatten(1)
    return 2 * flat.pow(2).mean(dim=1)
