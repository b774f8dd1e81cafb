"""Building blocks shared by the codec architectures."""

from __future__ import annotations

from torch import nn


def conv_bn_prelu(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Convolution followed by BatchNorm and PReLU (the paper's default after every conv)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=(kernel - stride + 1) // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.PReLU(cout),
    )


class BasicBlock(nn.Module):
    """ResNet BasicBlock (He et al. 2016) at constant width: two 3×3 convs and an identity skip."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.PReLU(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.PReLU(width)

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + x)
