"""The semantic encoder and decoder of the paper's Fig. 1.

Encoder: 5×5 head conv → 2 × [BasicBlock + 4×4 stride-2 conv] → channel-coding module.
Decoder: 5×5 head conv → 2 × [BasicBlock + 3×3 conv + PixelShuffle(2)] → 3×3 conv + Sigmoid.
BatchNorm + PReLU follow every convolution except the encoder's last (its output is
normalised for power instead) and the decoder's last (followed by the Sigmoid).
The paper names the channel-coding module ("mitigate channel corruption") but not its layers:
by default (``CodecConfig.channel_coding_conv``) it is one 3×3 conv + BN + PReLU at the hidden
width, then a 3×3 conv to the latent channels; without the extra conv it is only the latter,
the single "channel-coding conv" of method-spec's table. The decoder has no counterpart.
"""

from __future__ import annotations

from torch import nn

from trainables.codec.blocks import BasicBlock, conv_bn_prelu


class SemanticEncoder(nn.Module):
    def __init__(self, latent_channels: int, width: int = 256, channel_coding_conv: bool = True):
        super().__init__()
        self.head = conv_bn_prelu(3, width, 5)
        self.down = nn.Sequential(*[
            nn.Sequential(BasicBlock(width), conv_bn_prelu(width, width, 4, stride=2)) for _ in range(2)
        ])
        extra = [conv_bn_prelu(width, width, 3)] if channel_coding_conv else []
        self.channel_coding = nn.Sequential(*extra, nn.Conv2d(width, latent_channels, 3, padding=1))

    def forward(self, x):
        return self.channel_coding(self.down(self.head(x)))


class _UpModule(nn.Sequential):
    def __init__(self, width: int):
        super().__init__(
            BasicBlock(width),
            nn.Conv2d(width, 4 * width, 3, padding=1, bias=False),
            nn.PixelShuffle(2),
            nn.BatchNorm2d(width),
            nn.PReLU(width),
        )


class SemanticDecoder(nn.Module):
    def __init__(self, latent_channels: int, width: int = 256):
        super().__init__()
        self.head = conv_bn_prelu(latent_channels, width, 5)
        self.up = nn.Sequential(_UpModule(width), _UpModule(width))
        self.recode = nn.Sequential(nn.Conv2d(width, 3, 3, padding=1), nn.Sigmoid())

    def forward(self, y):
        return self.recode(self.up(self.head(y)))
