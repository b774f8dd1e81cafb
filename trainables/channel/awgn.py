"""The complex AWGN channel, eq. 3: ŝ = s + ε with ε ~ CN(0, σ²I) and SNR = P/σ²."""

from __future__ import annotations

import torch
from torch import nn


def noise_variance(snr_db: float | torch.Tensor, power: float = 1.0):
    """σ² of the complex noise for a given SNR in dB and signal power P."""
    return power / (10.0 ** (torch.as_tensor(snr_db, dtype=torch.float32) / 10.0))


class AWGNChannel(nn.Module):
    """Adds complex Gaussian noise: each real component gets variance σ²/2.

    The SNR is fixed, or drawn uniformly per batch from ``train_snr_range_db`` while training
    (for SNR-robust models); evaluation always uses ``snr_db``. Noise is drawn from the
    generator the caller passes (on the signal's device), so a checkpointed run replays the same noise.

    On CPU the drawn SNR is a Python float (the arithmetic of the first CPU results, kept bit for
    bit). With a CUDA generator it stays a 0-d tensor on the GPU: reading it with ``.item()`` would
    wait for the GPU once per batch.
    """

    def __init__(self, snr_db: float, power: float = 1.0, train_snr_range_db: tuple[float, float] | None = None):
        super().__init__()
        self.snr_db = snr_db
        self.power = power
        self.train_snr_range_db = train_snr_range_db

    def draw_snr(self, generator: torch.Generator | None,
                 device: torch.device | str | None = None) -> float | torch.Tensor:
        """The SNR in dB for one batch; drawn on the generator's device (``device`` when there is none)."""
        if self.training and self.train_snr_range_db is not None:
            lo, hi = self.train_snr_range_db
            where = generator.device if generator is not None else torch.device(device or "cpu")
            u = torch.rand((), generator=generator, device=where)
            if where.type == "cpu":
                return lo + (hi - lo) * u.item()
            return lo + (hi - lo) * u
        return self.snr_db

    def forward(self, s: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        snr = self.draw_snr(generator, s.device)
        noise = torch.randn(s.shape, generator=generator, device=s.device, dtype=s.dtype)
        if isinstance(snr, torch.Tensor):  # on the GPU: no host round trip
            return s + noise * (noise_variance(snr, self.power) / 2).sqrt()
        sigma2 = float(noise_variance(snr, self.power))
        return s + noise * (sigma2 / 2) ** 0.5
