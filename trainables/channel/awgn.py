"""The complex AWGN channel, eq. 3: ŝ = s + ε with ε ~ CN(0, σ²I) and SNR = P/σ².

Hand-written on purpose, not Sionna's ``AWGN`` block: that block draws from Sionna's process-wide
generator (``sionna.phy.config.torch_rng``), not the caller's, and draws the real and imaginary
parts in another order, so it would change the noise stream of every existing run and checkpoint.
It also keeps AWGN-only users off Sionna's import (seconds).
"""

from __future__ import annotations

import torch

from trainables.channel.base import Channel


def noise_variance(snr_db: float | torch.Tensor, power: float = 1.0):
    """σ² of the complex noise for a given SNR in dB and signal power P."""
    return power / (10.0 ** (torch.as_tensor(snr_db, dtype=torch.float32) / 10.0))


class AWGNChannel(Channel):
    """Adds complex Gaussian noise: each real component gets variance σ²/2.

    The pairing of reals into complex symbols does not matter here: the noise is i.i.d. per real.
    """

    def forward(self, s: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        snr = self.draw_snr(generator, s.device)
        noise = torch.randn(s.shape, generator=generator, device=s.device, dtype=s.dtype)
        if isinstance(snr, torch.Tensor):  # on the GPU: no host round trip
            return s + noise * (noise_variance(snr, self.power) / 2).sqrt()
        sigma2 = float(noise_variance(snr, self.power))
        return s + noise * (sigma2 / 2) ** 0.5
