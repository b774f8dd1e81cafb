"""Fading with AWGN on complex symbols: y = h·s + n, n ~ CN(0, σ²), E|h|² = 1.

With CSI the receiver knows h exactly and applies the per-symbol LMMSE (Wiener) filter
ŝ = h*·y / (|h|² + σ²/P), the biased MMSE estimate, through Sionna's ``mimo.lmmse_matrix`` (G for a
1×1 channel with noise covariance σ²/P). Its error variance given h is σ²/(|h|² + σ²/P) ≤ P, so a
deep fade cannot blow up the decoder's input, unlike zero forcing y/h (error σ²/|h|², infinite
mean under Rayleigh fading; Sionna's ``lmmse_equalizer`` is that unbiased form, which is y/h in 1×1).
Without CSI the decoder receives y itself. Either way the decoder sees 2k reals, nothing else
(neither h nor the SNR).

Draw order from the caller's generator: the batch SNR (training with a range), the gains, the noise.
Sionna works in complex64, so the fading math runs in fp32 whatever the input dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainables.channel.awgn import noise_variance
from trainables.channel.base import Channel
from trainables.channel.sionna_bridge import generator_for, load_sionna
from trainables.channel.symbols import to_complex, to_real


@dataclass(frozen=True)
class Reception:
    y: torch.Tensor  # [B, k] complex received symbols h·s + n
    h: torch.Tensor  # [B, k] complex gain of each symbol
    sigma2: torch.Tensor  # 0-d noise variance per complex symbol
    block: int  # symbols per independent gain (h is constant over each run of ``block`` symbols)


class FadingChannel(Channel):
    """A channel whose subclass draws the gains; this class adds the noise and the receiver."""

    def __init__(self, snr_db: float, power: float = 1.0, train_snr_range_db: tuple[float, float] | None = None,
                 csi: bool = True):
        super().__init__(snr_db, power, train_snr_range_db)
        self.csi = csi

    def gains(self, batch: int, k: int, device: torch.device, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        """Complex gains [B, ceil(k / block)] and ``block``, the symbols that share one gain."""
        raise NotImplementedError

    def transmit(self, s: torch.Tensor, generator: torch.Generator | None = None) -> Reception:
        """The received symbols for the real view ``s``, with the gains and noise variance behind them."""
        snr = self.draw_snr(generator, s.device)
        gen = generator_for(s.device, generator)
        z = to_complex(s)
        batch, k = z.shape
        h, block = self.gains(batch, k, s.device, gen)
        h = h.repeat_interleave(block, dim=1)[:, :k] if block > 1 else h
        noise = load_sionna().utils.complex_normal(z.shape, device=s.device, generator=gen)
        sigma2 = noise_variance(snr, self.power).to(s.device)
        return Reception(y=h * z + noise * sigma2.sqrt(), h=h, sigma2=sigma2, block=block)

    def receive(self, r: Reception) -> torch.Tensor:
        """What the decoder gets, complex [B, k]: the LMMSE estimate with CSI, y without."""
        if not self.csi:
            return r.y
        h = r.h[:, ::r.block]  # one gain per block: the filter is computed once per block
        noise_cov = (r.sigma2 / self.power).to(torch.complex64).reshape(1, 1)
        g = load_sionna().mimo.lmmse_matrix(h[..., None, None], noise_cov)[..., 0, 0]
        if r.block > 1:
            g = g.repeat_interleave(r.block, dim=1)[:, :r.y.shape[1]]
        return g * r.y

    def forward(self, s: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return to_real(self.receive(self.transmit(s, generator)), s)
