"""CIFAR ResNets (He et al. 2016) with option-A shortcuts, key-compatible with akamaster's checkpoints.

Attribute names (``conv1``, ``bn1``, ``layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}``, ``linear``) match
the public ``pytorch_resnet_cifar10`` state dicts so that they load with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEPTHS = {"resnet20": 3, "resnet56": 9}  # BasicBlocks per stage: depth = 6n + 2


class _ShortcutA(nn.Module):
    """Parameter-free shortcut: subsample by 2 and zero-pad the new channels (option A)."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = _ShortcutA(cout // 4) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32×32 inputs; ``features`` is the backbone F_b, ``linear`` the classifier F_cls."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        widths, cin, layers = (16, 32, 64), 16, []
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks = [_Block(cin, w, stride)] + [_Block(w, w, 1) for _ in range(blocks_per_stage - 1)]
            layers.append(nn.Sequential(*blocks))
            cin = w
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    @property
    def feature_dim(self) -> int:
        return self.linear.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))
