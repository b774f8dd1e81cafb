"""The downstream model as the method sees it: input normalisation, backbone F_b and classifier F_cls."""

from __future__ import annotations

import torch
from torch import nn

from trainables.classifier.resnet import DEPTHS, CifarResNet

# The normalisation the public akamaster checkpoints were trained with (ImageNet statistics).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DownstreamModel(nn.Module):
    """Takes [0,1] RGB images; normalises inside so that callers never have to remember to."""

    def __init__(self, arch: str = "resnet56", num_classes: int = 10,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
        super().__init__()
        if arch not in DEPTHS:
            raise ValueError(f"unknown classifier arch {arch!r}; choose one of {sorted(DEPTHS)}")
        self.arch = arch
        self.net = CifarResNet(DEPTHS[arch], num_classes)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    @property
    def feature_dim(self) -> int:
        return self.net.feature_dim

    @property
    def classifier(self) -> nn.Linear:
        return self.net.linear

    def backbone_parameters(self):
        return (p for name, p in self.net.named_parameters() if not name.startswith("linear."))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """F_b: the pooled feature vector of normalised ``x``."""
        return self.net.features((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.linear(self.features(x))
