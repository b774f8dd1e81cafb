"""What every channel shares: the power P, the SNR (fixed, or drawn per training batch) and the
call ``channel(s, generator)`` on the real view of the symbols (2k reals per sample)."""

from __future__ import annotations

import torch
from torch import nn


class Channel(nn.Module):
    """``snr_db`` is the average received SNR P·E|h|²/σ² = P/σ² (E|h|² = 1 for every fading model).

    While training with ``train_snr_range_db``, each batch draws its SNR uniformly from that range;
    evaluation always uses ``snr_db``. Every random variate comes from the generator the caller
    passes, so restoring that generator's state replays a batch bit for bit.
    """

    def __init__(self, snr_db: float, power: float = 1.0, train_snr_range_db: tuple[float, float] | None = None):
        super().__init__()
        self.snr_db = snr_db
        self.power = power
        self.train_snr_range_db = train_snr_range_db

    def draw_snr(self, generator: torch.Generator | None,
                 device: torch.device | str | None = None) -> float | torch.Tensor:
        """The SNR in dB for one batch; drawn on the generator's device (``device`` when there is none).

        On CPU the drawn SNR is a Python float (the arithmetic of the first CPU results, kept bit for
        bit). With a CUDA generator it stays a 0-d tensor on the GPU: reading it with ``.item()`` would
        wait for the GPU once per batch.
        """
        if self.training and self.train_snr_range_db is not None:
            lo, hi = self.train_snr_range_db
            where = generator.device if generator is not None else torch.device(device or "cpu")
            u = torch.rand((), generator=generator, device=where)
            if where.type == "cpu":
                return lo + (hi - lo) * u.item()
            return lo + (hi - lo) * u
        return self.snr_db
