"""Rayleigh block fading: h ~ CN(0, 1), constant over ``coherence_symbols`` consecutive symbols.

The gains are drawn with Sionna's ``utils.complex_normal``, given our generator. Sionna's
``channel.RayleighBlockFading`` makes the same two draws (real, then imaginary parts of std √½) but
from Sionna's process-wide generator; bridging it as ``tdl`` does would only add a cached block per
device and 7-d reshapes for the same draws (they agree to float32 rounding), so the sampler
is called directly.
"""

from __future__ import annotations

import math

import torch

from trainables.channel.fading import FadingChannel
from trainables.channel.sionna_bridge import load_sionna


class RayleighChannel(FadingChannel):
    """``coherence_symbols=None``: one gain per image (quasi-static fading, as in DeepJSCC)."""

    def __init__(self, snr_db: float, power: float = 1.0, train_snr_range_db: tuple[float, float] | None = None,
                 csi: bool = True, coherence_symbols: int | None = None):
        super().__init__(snr_db, power, train_snr_range_db, csi)
        self.coherence_symbols = coherence_symbols

    def gains(self, batch: int, k: int, device: torch.device, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        block = min(self.coherence_symbols or k, k)
        h = load_sionna().utils.complex_normal([batch, math.ceil(k / block)], device=device, generator=generator)
        return h, block
