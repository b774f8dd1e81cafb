"""The whole wireless link: encoder → power normalisation → channel → decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trainables.channel import Channel, normalize_power


@dataclass(frozen=True)
class LinkOutput:
    x_hat: torch.Tensor  # reconstruction in [0, 1]
    symbols: torch.Tensor  # transmitted, power-normalised latent (2k reals per sample)


class SemanticLink(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module, channel: Channel):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.channel = channel

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> LinkOutput:
        s = normalize_power(self.encoder(x), self.channel.power)
        s_hat = self.channel(s, generator)
        return LinkOutput(x_hat=self.decoder(s_hat), symbols=s)
