"""The projection head P_ψ: backbone features → the unit hypersphere of the semantic space."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class ProjectionHead(nn.Module):
    """Two fully connected layers (hidden width = input width), then L2 normalisation."""

    def __init__(self, in_dim: int, out_dim: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))

    def forward(self, features):
        return F.normalize(self.net(features.float()), dim=1)
